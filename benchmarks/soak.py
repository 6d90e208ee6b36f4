"""Soak: the node on looped videos for a long time, with a live alert consumer.

Checks what a short benchmark can't: memory stays flat, no frame backlog builds up, and no
alert is lost between the node and the hub. Not a CI test (default 30 minutes).

Set-up: the hub (``edge.hub.service.Hub``, real ZeroMQ on 127.0.0.1, its own SQLite store)
runs in a child process so the node's memory is measured alone; the node runs here with the
real durable sender (``edge.link.zmq_sender.ZmqSender``) and a camera-paced source that plays the
videos round and round at the camera rate, keeping only the newest frame. Every few seconds
it samples RSS, the capture->done latency, frames captured/processed/dropped, outbox
backlog and alerts sent vs received by the hub. Alerts use a zero cool-down so they flow
all the time (one per track).

    python benchmarks/soak.py [--minutes 30] [--video A.mp4 --video B.mp4] [--interval 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine_note, video_or_sample, write_json  # noqa: E402

from edge.config import load_config  # noqa: E402
from edge.lab.bench.measure import pct, status_mb  # noqa: E402
from edge.lab.bench.run import BENCH_OVERRIDES  # noqa: E402
from edge.lab.bench.sources import PacedVideoSource, shared_data_file, video_info  # noqa: E402
from edge.lab.bench.watchlists import auto_watchlist  # noqa: E402
from edge.link.zmq_sender import ZmqSender  # noqa: E402
from edge.node.app import build_node  # noqa: E402
from edge.watchlist.index import Watchlist  # noqa: E402

SOAK_VIDEOS = ["walking_arcade_1080p.mp4", "intel_face_demographics_walking.gif",
               "hamilton_talking_360p.mp4", "intel_head_pose_female_and_male.gif"]


# ---------------------------------------------------------------------------- hub child
def hub_child(state: str) -> int:
    """Run a hub (no web server) and report how many alerts its store holds, once a second."""
    # only the hub child loads the hub, so the node's process measures the node alone
    from edge.hub.config import load_hub_config
    from edge.hub.service import Hub

    cfg = load_hub_config(None, {"zmq.bind": "tcp://127.0.0.1:0",
                                 "store.path": str(Path(state) / "hub.sqlite"),
                                 "store.officers_file": str(Path(state) / "officers.json"),
                                 "metrics.port": 0})
    hub = Hub(cfg).start()
    print(f"ENDPOINT {hub.endpoint}", flush=True)
    try:
        while True:
            line = sys.stdin.readline()  # the parent asks; EOF = stop
            if not line:
                break
            assert hub.store is not None
            print(f"COUNT {hub.store.count_alerts()} {status_mb('VmRSS')}", flush=True)
    finally:
        hub.stop()
    return 0


class HubProcess:
    def __init__(self, state: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--hub-child", str(state)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("ENDPOINT "):
            raise RuntimeError(f"hub child did not start: {line!r}")
        self.endpoint = line.split(" ", 1)[1]
        self._lock = threading.Lock()

    def count(self) -> tuple[int, float]:
        """Alerts in the hub's store, and the hub's RSS in MB."""
        with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write("?\n")
            self.proc.stdin.flush()
            _, n, rss = self.proc.stdout.readline().split()
            return int(n), float(rss)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------- soak
def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def soak(videos: list[str], minutes: float, interval: float, out: Path) -> dict[str, Any]:
    cfg = load_config(overrides={**BENCH_OVERRIDES, "alerts": {"console": False, "cooldown_s": 0.0}})
    print(f"[soak] enrolling the watchlist from {Path(videos[0]).name}", flush=True)
    bw = auto_watchlist(cfg, videos[0], 5, 100)
    wl = Watchlist.from_blobs(bw.blobs)
    fps = video_info(videos[0])["fps"] or 25.0
    tmp = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    os.chmod(tmp, 0o700)
    hub = HubProcess(tmp / "hub")
    sink = ZmqSender(tmp / "node" / "outbox.sqlite", hub.endpoint, cfg.node.node_id,
                     camera=cfg.node.camera).start()
    consumer = f"hub child process on {hub.endpoint} via the durable outbox (SQLite) + ZeroMQ"
    node = build_node(cfg, wl, sink=sink)
    total = int(minutes * 60 * fps) + 1
    src = PacedVideoSource(videos, node.ring, total, fps, cfg.source.max_width)
    samples: list[dict[str, Any]] = []
    window: list[float] = []
    t0 = time.time()
    state = {"next": t0 + interval}

    def sample(now: float) -> None:
        recv, hub_rss = hub.count()
        st = node.stats
        samples.append({
            "t_s": round(now - t0, 1),
            "rss_mb": status_mb("VmRSS"),
            "hub_rss_mb": hub_rss,
            "frames_captured": src.captured,
            "frames_processed": st.frames,
            "frames_dropped": src.stats.dropped_stale,
            "frames_waiting": 1 if src._latest is not None else 0,  # noqa: SLF001
            "latency_p95_ms": pct(window).get("p95"),
            "alerts_sent": st.alerts,
            "alerts_received": recv,
            "outbox_pending": sink.pending(),
            "tracks": node.tracker.active(),
            "zeroize_lat_list": len(st.zeroize_latency_s),
            "gc_objects": len(gc.get_objects()),
            "fds": _fds(),
        })
        window.clear()
        s = samples[-1]
        print(f"[soak] {s['t_s']:7.0f}s rss {s['rss_mb']:.0f} MB  processed {s['frames_processed']}/"
              f"{s['frames_captured']}  p95 {s['latency_p95_ms']} ms  alerts {s['alerts_sent']} sent / "
              f"{s['alerts_received']} at hub, outbox {s['outbox_pending']}", flush=True)

    def on_frame(frame: Any, alerts: list[Any]) -> None:
        now = time.time()
        window.append(now - frame.captured_at)
        if now >= state["next"]:
            state["next"] = now + interval
            sample(now)

    print(f"[soak] {minutes:g} min at {fps:g} fps over {len(videos)} video(s); consumer: {consumer}",
          flush=True)
    try:
        node.run(src, on_frame=on_frame)
        sample(time.time())
        # give the sender time to deliver what is still in the outbox, then count again
        deadline = time.time() + 30
        while sink.pending() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        sample(time.time())
    finally:
        sink.close()
        hub.close()
    final = samples[-1]
    warm = [s for s in samples if s["t_s"] >= min(60.0, minutes * 60 / 4)] or samples
    t = np.array([s["t_s"] for s in warm])
    rss = np.array([s["rss_mb"] for s in warm])
    slope = float(np.polyfit(t, rss, 1)[0]) * 3600 if len(t) > 2 else 0.0
    lat = [s["latency_p95_ms"] for s in samples if s["latency_p95_ms"] is not None]
    half = len(lat) // 2
    res = {
        "machine": machine_note(),
        "videos": [Path(v).name for v in videos],
        "minutes": minutes,
        "camera_fps": fps,
        "consumer": consumer,
        "watchlist": bw.description,
        "samples": samples,
        "rss_start_mb": warm[0]["rss_mb"],
        "rss_end_mb": warm[-1]["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "rss_slope_mb_per_hour": round(slope, 2),
        # RSS saw-tooths with the frame size of each video; thirds compare like with like
        "rss_median_first_third_mb": float(np.median(rss[: max(1, len(rss) // 3)])),
        "rss_median_last_third_mb": float(np.median(rss[-max(1, len(rss) // 3):])),
        "gc_objects_start_end": [warm[0]["gc_objects"], warm[-1]["gc_objects"]],
        "fds_start_end": [warm[0]["fds"], warm[-1]["fds"]],
        "max_frames_waiting": max(s["frames_waiting"] for s in samples),
        "processed_fraction": round(final["frames_processed"] / max(final["frames_captured"], 1), 3),
        "latency_p95_ms_first_half_median": float(np.median(lat[:half])) if half else None,
        "latency_p95_ms_second_half_median": float(np.median(lat[half:])) if lat else None,
        "alerts_sent": final["alerts_sent"],
        "alerts_received": final["alerts_received"],
        "alerts_lost": final["alerts_sent"] - final["alerts_received"],
        "outbox_pending_max": max(s["outbox_pending"] for s in samples),
        "buffers_clear_after_run": node.bufs.is_clear(),
    }
    _plot(res, out)
    return res


def _plot(res: dict[str, Any], out: Path) -> None:
    # imported here, after the run: the node's memory is sampled in this process
    from matplotlib.figure import Figure

    s = res["samples"]
    t = [x["t_s"] / 60 for x in s]
    fig = Figure(figsize=(8, 7))
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(t, [x["rss_mb"] for x in s], label="node RSS")
    axes[0].plot(t, [x["hub_rss_mb"] for x in s], label="hub RSS")
    axes[0].set_ylabel("MB")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"Soak: {res['minutes']:g} min; node RSS median first/last third "
                      f"{res['rss_median_first_third_mb']:.0f}/{res['rss_median_last_third_mb']:.0f} MB")
    axes[1].plot(t, [x["latency_p95_ms"] or 0 for x in s], label="capture->done p95 (per interval)")
    axes[1].set_ylabel("ms")
    axes[1].legend(fontsize=8)
    axes[2].plot(t, [x["alerts_sent"] for x in s], label="alerts sent by node")
    axes[2].plot(t, [x["alerts_received"] for x in s], "--", label="alerts in hub store")
    axes[2].plot(t, [x["outbox_pending"] for x in s], label="outbox pending")
    axes[2].set_xlabel("minutes")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "soak.png", dpi=110)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--hub-child":
        return hub_child(sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--video", action="append", default=[],
                    help="video to loop (repeat for several); default: the videos in ../shared/data")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    videos = list(args.video)
    if not videos:
        for name in SOAK_VIDEOS:
            p = shared_data_file(Path("shared") / "data" / "videos" / name)
            if p is not None:
                videos.append(str(p))
    if not videos:
        videos = [video_or_sample(None, args.out)]
    res = soak(videos, args.minutes, args.interval, args.out)
    path = write_json("soak", res, args.out)
    brief = {k: v for k, v in res.items() if k != "samples"}
    print(json.dumps(brief, indent=1))
    print(f"[soak] wrote {path} and {args.out / 'soak.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
