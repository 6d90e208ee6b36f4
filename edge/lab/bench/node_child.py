"""The real node on a video, in a benchmark child: as fast as frames decode, or camera-paced."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.config import load_config
from edge.lab.bench.jobs import ChildJob, alert_summary, progress_bar
from edge.lab.bench.measure import WARMUP_FRAMES, Meter, pct
from edge.lab.bench.sources import LoopingVideoSource, PacedVideoSource, video_info
from edge.link.schema import Alert
from edge.node.app import build_node
from edge.node.sources import Frame, FrameSource
from edge.watchlist.index import Watchlist

NODE_STAGES = ("detect", "track", "align", "embed", "search", "alert", "zeroize")


class CountingSink:
    """Alert sink that keeps counts only (the JPEG is dropped at once)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        self.sent += 1


@dataclass
class _Previous:
    """The node's counters as they were after the previous frame (per-frame deltas)."""

    stages: dict[str, float]
    t: float
    faces: int = 0
    embedded: int = 0
    index: int = -1
    c2a: int = 0  # capture->alert latencies already attributed to an alert


def run_node_child(job: ChildJob) -> dict[str, Any]:
    """The real node (``edge.node.pipeline.Node``) on the video: throughput or live-paced."""
    cfg = load_config(job.config, overrides=job.overrides)
    wl = Watchlist.from_blobs(job.blobs)
    sink = CountingSink()
    node = build_node(cfg, wl, sink=sink)
    info = video_info(job.video)
    paced: PacedVideoSource | None = None
    src: FrameSource
    if job.mode == "live":
        src = paced = PacedVideoSource(job.video, node.ring, job.frames, info["fps"], cfg.source.max_width)
    else:
        src = LoopingVideoSource(job.video, node.ring, job.frames, cfg.source.max_width,
                                 inline_decode=job.inline_decode)
    rec: dict[str, list[float]] = {k: [] for k in ("period", "latency", "faces", "embedded", "index",
                                                    "decision_to_zeroed", *NODE_STAGES)}
    alerts: list[dict[str, Any]] = []
    st = node.stats
    prev = _Previous(stages=dict(st.stage_s), t=time.perf_counter())
    bar = progress_bar(job, job.frames)

    def on_frame(frame: Frame, new_alerts: list[Alert]) -> None:
        now = time.perf_counter()
        rec["period"].append(now - prev.t)
        rec["latency"].append(time.time() - frame.captured_at)
        prev.t = now
        for s in NODE_STAGES:
            rec[s].append(st.stage_s[s] - prev.stages[s])
        prev.stages = dict(st.stage_s)
        # decision -> zeroed: the alert stage starts at the decision, zeroize ends the frame
        rec["decision_to_zeroed"].append(rec["alert"][-1] + rec["zeroize"][-1])
        rec["faces"].append(st.faces_seen - prev.faces)
        rec["embedded"].append(st.faces_embedded - prev.embedded)
        rec["index"].append(frame.index)
        prev.faces, prev.embedded = st.faces_seen, st.faces_embedded
        c2a = st.capture_to_alert_s
        for k, a in enumerate(new_alerts):
            lat = c2a[prev.c2a + k] if prev.c2a + k < len(c2a) else None
            alerts.append({"subject_id": a.subject_id, "score": a.score, "track_id": a.track_id,
                           "frame_index": a.frame_index, "frame_seq": len(rec["period"]) - 1,
                           "capture_to_alert_s": lat})
        prev.c2a = len(c2a)
        bar.update(max(0, frame.index - prev.index))
        prev.index = frame.index

    with Meter() as m:
        node.run(src, on_frame=on_frame)
    bar.close()
    processed = len(rec["period"])
    w = min(WARMUP_FRAMES, max(0, processed - 1))
    steady = rec["period"][w:]
    out: dict[str, Any] = {
        "mode": job.mode,
        "label": job.label,
        "frames": processed,
        "warmup_frames_excluded": w,
        "fps": round(len(steady) / max(sum(steady), 1e-9), 2),
        "fps_all_frames": round(processed / max(m.wall, 1e-9), 2),
        "stages_ms": {s: round(float(np.mean(rec[s][w:] or [0.0])) * 1e3, 3) for s in NODE_STAGES},
        "faces_per_frame": round(st.faces_seen / max(processed, 1), 2),
        "embedded_per_frame": round(st.faces_embedded / max(processed, 1), 3),
        "faces_gated": dict(st.faces_gated),
        "gate_overrides": st.gate_overrides,
        "frame_latency_ms": pct(rec["latency"][w:]),
        "capture_to_alert_ms": pct([a["capture_to_alert_s"] for a in alerts
                                    if a["capture_to_alert_s"] is not None and a["frame_seq"] >= w]),
        "zeroize_ms": pct(st.zeroize_latency_s[w:]),
        "decision_to_zeroed_ms": pct(rec["decision_to_zeroed"][w:]),
        "zeroize_enabled": node.bufs.zeroize_enabled,
        "buffers_clear_after_run": node.bufs.is_clear(),
        "memory_locked_bytes": node.bufs.lock_report.locked_bytes + node.ring.lock_report.locked_bytes,
        "memory_lock_failures": sorted(set(node.bufs.lock_report.failures + node.ring.lock_report.failures)),
        "detector_input": list(node.detector.input_size or ()),
        "embedder_providers": list(getattr(node.embedder, "providers", [])),
        "frames_failed": st.frames_failed,
        "source": {"frames": src.stats.frames, "dropped_stale": src.stats.dropped_stale,
                   "bad_frames": src.stats.bad_frames},
        "alerts_sent": sink.sent,
        **alert_summary([a["subject_id"] for a in alerts], job),
        "alert_list": alerts,
        "per_frame": {k: [round(float(v), 6) for v in vals] for k, vals in rec.items()},
        **m.as_dict(processed),
    }
    out["stages_ms"]["other"] = round(
        float(np.mean(steady or [0.0])) * 1e3 - sum(out["stages_ms"].values()), 3)
    if paced is not None:
        out["camera_fps"] = info["fps"]
        out["captured"] = paced.captured
        out["processed_fraction"] = round(processed / max(paced.captured, 1), 3)
        out["capture_thread_max_lag_ms"] = round(paced.behind_s * 1e3, 1)
    return out
