"""Alert path latency: node -> hub -> tablet browser (p50/p95/p99), written to out/bench/.

Two measurements, both on 127.0.0.1 with the hub in its own process (``edge hub``) and a real
headless Chromium signed in to the tablet app (Debian ``chromium`` at /usr/bin/chromium):

1. **synthetic**: ``--alerts`` synthetic alerts (generated pictures, nobody's face) sent through
   the real durable sender (``edge.link.zmq_sender.ZmqSender``: SQLite outbox, fsync, ZeroMQ) at
   ``--rate`` per second. ``captured_at`` is stamped just before ``send()``, so this is the
   transport + hub + browser share of the latency.
2. **real node** (skipped with ``--no-real-node`` or when the models are not installed): the
   node itself (``edge run``) on a camera-paced clip made from insightface's sample group photo,
   in which the enrolled person walks in and out of view ``--appearances`` times (one track,
   one alert each; ``alerts.cooldown_s = 0``). ``captured_at`` is when the node read the
   frame, so this is the full capture -> card-rendered latency the goal is stated for (the clip is
   read as a file, every frame processed as fast as it decodes, not paced like a camera).

Per alert: ``to_hub`` = hub store ``received_at`` - ``captured_at``; ``to_card`` = the card's
``data-rendered-at`` (two animation frames after insertion, i.e. painted) - ``captured_at``;
``to_images`` = both images loaded. Goals: p95 <= 250 ms to the hub and <= 1 s to
the rendered card.

    python benchmarks/latency_hub.py                       # ~1 min
    python benchmarks/latency_hub.py --alerts 500 --rate 20 --no-real-node
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
PASSWORD = "benchmark password 1"
EDGE = [sys.executable, "-m", "edge.cli"]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pct(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    a = np.asarray(values) * 1000.0
    return {"n": len(values), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1), "mean_ms": round(float(a.mean()), 1)}


class HubProcess:
    """``edge hub`` in its own process, so its work doesn't share our GIL."""

    def __init__(self, tmp: Path) -> None:
        from edge.hub.officers import add_officer

        self.zport, self.hport = free_port(), free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = tmp / "hub.toml"
        cfg.write_text(
            f'[zmq]\nbind = "tcp://127.0.0.1:{self.zport}"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.hport}\n'
            f'[store]\npath = "{tmp / "hub.sqlite"}"\nofficers_file = "{tmp / "off.json"}"\n'
            "[metrics]\nport = 0\n"
        )
        add_officer(tmp / "off.json", "bench", PASSWORD)
        self.endpoint = f"tcp://127.0.0.1:{self.zport}"
        self.url = f"http://127.0.0.1:{self.hport}"
        self.proc = subprocess.Popen([*EDGE, "hub", "--config", str(cfg)],
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("hub did not start")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.http.post("/login", data={"officer": "bench", "password": PASSWORD})

    def received_at(self) -> dict[str, dict[str, Any]]:
        r = self.http.get("/api/alerts", params={"limit": 500})
        return {a["alert_id"]: a for a in r.json()["alerts"]}

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Tablet:
    """A signed-in headless Chromium page at tablet size."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1024, "height": 768})
        self.page.goto(url + "/")
        self.page.fill("#officer", "bench")
        self.page.fill("#password", PASSWORD)
        self.page.click("#signin")
        self.page.wait_for_selector("#hub-state.pill-ok", timeout=15000)

    def cards(self) -> dict[str, dict[str, float | None]]:
        rows = self.page.evaluate(
            """Array.from(document.querySelectorAll('article[data-alert-id]')).map(e => ({
                id: e.dataset.alertId, via: e.dataset.via,
                rendered: e.dataset.renderedAt ? Number(e.dataset.renderedAt) : null,
                images: e.dataset.imagesAt ? Number(e.dataset.imagesAt) : null}))"""
        )
        return {r["id"]: r for r in rows if r["via"] == "live"}

    def wait_cards(self, ids: set[str], timeout: float) -> dict[str, dict[str, float | None]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.cards()
            done = {i for i in ids if got.get(i, {}).get("rendered") and got[i].get("images")}
            if done >= ids or time.monotonic() > deadline:
                return got
            self.page.wait_for_timeout(100)

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


def latencies(sent: dict[str, float], hub: dict[str, dict[str, Any]],
              cards: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    to_hub = [hub[i]["received_at"] - t for i, t in sent.items() if i in hub]
    to_card = [cards[i]["rendered"] / 1000.0 - t for i, t in sent.items()
               if cards.get(i, {}).get("rendered")]
    to_img = [cards[i]["images"] / 1000.0 - t for i, t in sent.items()
              if cards.get(i, {}).get("images")]
    # split of to_hub: capture -> match decision on the node, decision -> stored at the hub
    on_node = [hub[i]["decided_at"] - t for i, t in sent.items() if i in hub]
    transport = [hub[i]["received_at"] - hub[i]["decided_at"] for i in sent if i in hub]
    return {"alerts": len(sent), "stored_at_hub": len(to_hub), "cards_rendered": len(to_card),
            "to_hub": pct(to_hub), "to_card": pct(to_card), "to_images": pct(to_img),
            "capture_to_decision": pct(on_node), "decision_to_hub": pct(transport)}


def synthetic(tmp: Path, n: int, rate: float) -> dict[str, Any]:
    from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
    from edge.link.zmq_sender import ZmqSender

    hub = HubProcess(tmp / "hub-syn")
    tab = Tablet(hub.url)
    probe, ref = synthetic_jpeg(1, 160), synthetic_jpeg(2, 224)
    sent: dict[str, float] = {}
    sender = ZmqSender(tmp / "node-syn" / "outbox.sqlite", hub.endpoint, "bench-node", None,
                       None, camera="bench cam").start()
    try:
        time.sleep(1.5)  # connected, first heartbeat seen
        for i in range(n):
            t_next = time.time() + 1.0 / rate
            a = synthetic_alert("bench-node", "bench cam", i)
            a.captured_at = a.decided_at = time.time()
            sender.send(a, probe, ref)
            sent[a.alert_id] = a.captured_at
            time.sleep(max(0.0, t_next - time.time()))
        deadline = time.monotonic() + 30
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        cards = tab.wait_cards(set(sent), 30)
        return {"rate_per_s": rate, **latencies(sent, hub.received_at(), cards)}
    finally:
        sender.close(1)
        tab.close()
        hub.close()


def real_node(tmp: Path, appearances: int) -> dict[str, Any]:
    import cv2

    from edge.face.photos import FaceEngine
    from edge.node.demo import _enrolment_photo, sample_images_dir
    from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
    from edge.watchlist.vault import create_key_file

    engine = FaceEngine.from_config()
    group = cv2.imread(str(sample_images_dir() / "t1.jpg"))
    people = sorted(engine.faces(group), key=lambda f: float(f.bbox[0]))
    enrol_img = _enrolment_photo(group, people[1].bbox)
    enrol = engine.faces(enrol_img)[0]
    ref = cv2.imencode(".jpg", enrol_img)[1].tobytes()
    key_path = tmp / "wl.key"
    key = create_key_file(key_path)
    Watchlist(WatchlistMeta(deployment_id="bench", window_start=0.0, window_end=0.0),
              {"P2": Subject("P2", "Person Two", "benchmark")}, [Entry("P2/1", "P2", "p2.jpg")],
              enrol.embedding[None], references={"P2/1": ref}).save(tmp / "wl", key)
    # The person is in view for 8 frames, then out of view for 16 (> max_missed_frames): a new
    # track, so a new alert, each appearance. Read as a file: every frame is processed, as
    # fast as it decodes (a live source on a file would drop most frames: it is not paced).
    frame = cv2.resize(group[:, :1200], (900, 664))
    empty = np.full_like(frame, 90)
    clip = tmp / "clip.mp4"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 12.5, (900, 664))
    for _ in range(appearances):
        for _ in range(8):
            vw.write(frame)
        for _ in range(16):
            vw.write(empty)
    vw.release()

    hub = HubProcess(tmp / "hub-real")
    tab = Tablet(hub.url)
    (tmp / "node.toml").write_text(
        '[node]\nnode_id = "bench-node"\ncamera = "bench cam"\n'
        f'[alerts]\nendpoint = "{hub.endpoint}"\ncooldown_s = 0\nconsole = false\n'
    )
    node = None
    try:
        node = subprocess.Popen(
            [*EDGE, "run", "--source", str(clip), "--watchlist", str(tmp / "wl"), "--key-file",
             str(key_path), "--config", str(tmp / "node.toml")],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        _, err = node.communicate(timeout=120 + appearances * 10)
        if node.returncode != 0:
            raise SystemExit(f"edge run failed: {err[-2000:]}")
        hub_alerts = hub.received_at()
        sent = {i: a["captured_at"] for i, a in hub_alerts.items()}
        cards = tab.wait_cards(set(sent), 30)
        return {"appearances": appearances, "source": "file (not camera-paced)",
                **latencies(sent, hub_alerts, cards)}
    finally:
        if node is not None and node.poll() is None:
            node.kill()
        tab.close()
        hub.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5.0, help="synthetic alerts per second")
    ap.add_argument("--appearances", type=int, default=20)
    ap.add_argument("--no-real-node", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "latency_hub.json")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs {CHROMIUM} (apt-get install chromium)")
    result: dict[str, Any] = {
        "benchmark": "latency_hub", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "goals": {"to_hub_p95_ms": 250, "to_card_p95_ms": 1000},
    }
    tmp = Path(tempfile.mkdtemp(prefix="edge-latency-"))
    try:
        print(f"synthetic: {args.alerts} alerts at {args.rate}/s ...", flush=True)
        result["synthetic"] = synthetic(tmp, args.alerts, args.rate)
        if not args.no_real_node:
            try:
                from edge.face import model_files as models

                models.resolve("yunet_2023mar")
                models.resolve("sface_2021dec")
            except Exception as exc:  # noqa: BLE001
                result["real_node"] = {"skipped": f"models not installed: {exc}"}
            else:
                print(f"real node: edge run, {args.appearances} appearances ...", flush=True)
                result["real_node"] = real_node(tmp, args.appearances)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for part in ("synthetic", "real_node"):
        r = result.get(part)
        if not r or "skipped" in r:
            continue
        print(f"{part}: {r['cards_rendered']}/{r['alerts']} cards; "
              f"to hub p50/p95/p99 {r['to_hub'].get('p50_ms')}/{r['to_hub'].get('p95_ms')}/"
              f"{r['to_hub'].get('p99_ms')} ms; to card {r['to_card'].get('p50_ms')}/"
              f"{r['to_card'].get('p95_ms')}/{r['to_card'].get('p99_ms')} ms")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
