"""Several live-paced cameras in ONE node process (``edge.node.site.Site``), in a benchmark child.

Each camera is a copy of the same video captured at its frame rate whatever the node does
(:class:`~edge.lab.bench.sources.PacedVideoSource`, newest frame kept), so the figures are
those of N real cameras sharing one process and one pair of models: the share of captured
frames the node processed, its capture->alert latency and who it found, per camera; CPU
and peak memory for the process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge.config import load_config
from edge.lab.bench.jobs import ChildJob, alert_summary, progress_bar
from edge.lab.bench.measure import WARMUP_FRAMES, Meter, pct
from edge.lab.bench.node_child import NODE_STAGES, CountingSink
from edge.lab.bench.sources import PacedVideoSource, video_info
from edge.link.schema import Alert
from edge.node.app import build_site
from edge.node.camera import CameraSpec
from edge.node.sources import Frame, FrameSource
from edge.watchlist.index import Watchlist


@dataclass
class _CameraRecord:
    """One camera's per-frame record during the run (timings and subject ids only)."""

    latency: list[float] = field(default_factory=list)  # capture -> frame done
    alerts: list[tuple[str, float | None, int]] = field(default_factory=list)  # subject, c2a, seq
    c2a_seen: int = 0  # capture->alert latencies already attributed to an alert
    stages_at_warmup: dict[str, float] | None = None
    frames_at_warmup: int = 0


def camera_names(n: int) -> list[str]:
    return [f"cam{i + 1}" for i in range(n)]


def run_site_child(job: ChildJob) -> dict[str, Any]:
    """``job.cameras`` copies of ``job.video``, each paced at its frame rate, through one Site."""
    cfg = load_config(job.config, overrides=job.overrides)
    wl = Watchlist.from_blobs(job.blobs)
    sink = CountingSink()
    n = max(1, job.cameras)
    specs = [CameraSpec(name, f"bench camera {i + 1}", job.video, cfg.match.threshold)
             for i, name in enumerate(camera_names(n))]
    site = build_site(cfg, wl, specs, sinks=[sink])
    info = video_info(job.video)
    paced = {s.name: PacedVideoSource(job.video, site.nodes[s.name].ring, job.frames, info["fps"],
                                      cfg.source.max_width) for s in specs}
    given: dict[str, FrameSource] = dict(paced)
    site.open_sources(given=given)
    recs = {s.name: _CameraRecord() for s in specs}
    bar = progress_bar(job, job.frames * n)

    def on_frame(name: str, frame: Frame, new_alerts: list[Alert]) -> None:
        rec = recs[name]
        st = site.nodes[name].stats
        rec.latency.append(time.time() - frame.captured_at)
        seq = len(rec.latency) - 1
        if seq + 1 == WARMUP_FRAMES:  # stage means exclude each camera's warm-up frames
            rec.stages_at_warmup = dict(st.stage_s)
            rec.frames_at_warmup = st.frames
        c2a = st.capture_to_alert_s
        for k, a in enumerate(new_alerts):
            i = rec.c2a_seen + k
            rec.alerts.append((a.subject_id, c2a[i] if i < len(c2a) else None, seq))
        rec.c2a_seen = len(c2a)
        bar.update(1)

    with Meter() as m:
        site.run(on_frame=on_frame)
    bar.close()
    cams: dict[str, dict[str, Any]] = {}
    total_frames = 0
    stage_sum = dict.fromkeys(NODE_STAGES, 0.0)
    for s in specs:
        node, rec, src = site.nodes[s.name], recs[s.name], paced[s.name]
        st = node.stats
        # the node's count: frames it ran plus the ones between detections it never needed
        # to see (carried); stale frames the camera replaced before they were taken are not
        processed = st.frames
        total_frames += processed
        w = min(WARMUP_FRAMES, max(0, len(rec.latency) - 1))
        base = rec.stages_at_warmup or dict.fromkeys(NODE_STAGES, 0.0)
        steady = max(st.frames - rec.frames_at_warmup, 1)
        for k in NODE_STAGES:
            stage_sum[k] += st.stage_s[k]
        detected = st.frames - st.frames_carried
        cams[s.name] = {
            "captured": src.captured,
            "frames": processed,
            "frames_handed_to_node": len(rec.latency),
            "processed_fraction": round(processed / max(src.captured, 1), 4),
            "fps": round(processed / max(m.wall, 1e-9), 2),
            "frames_carried": st.frames_carried,
            "frames_detected": detected,
            "frames_failed": st.frames_failed,
            "dropped_stale": src.stats.dropped_stale,
            "source_bad_frames": src.stats.bad_frames,
            "source_bad_reasons": dict(src.stats.reasons),
            "capture_thread_max_lag_ms": round(src.behind_s * 1e3, 1),
            "frame_latency_ms": pct(rec.latency[w:]),
            "capture_to_alert_ms": pct([lat for _, lat, seq in rec.alerts if lat is not None and seq >= w]),
            # per processed frame (carried frames included), after warm-up
            "stages_ms": {k: round((st.stage_s[k] - base.get(k, 0.0)) / steady * 1e3, 3)
                          for k in NODE_STAGES},
            "detect_ms_per_detected_frame": round(st.stage_s["detect"] / max(detected, 1) * 1e3, 3),
            "faces_per_frame": round(st.faces_seen / max(detected, 1), 2),
            "embedded_per_frame": round(st.faces_embedded / max(processed, 1), 3),
            **alert_summary([sid for sid, _, _ in rec.alerts], job),
        }
    busy = sum(stage_sum.values())
    out: dict[str, Any] = {
        "mode": job.mode,
        "label": job.label,
        "cameras": n,
        "camera_fps": info["fps"],
        "detector_interval": cfg.detector.interval,
        "frames_per_camera": job.frames,
        "frames": total_frames,
        "per_camera": cams,
        "processed_fps_total": round(total_frames / max(m.wall, 1e-9), 2),
        "workers": getattr(site, "workers", 1),
        # stage time of all workers together / wall time (> 1 with several workers; a stage's
        # time includes waiting for a model another worker is running)
        "worker_busy_fraction": round(busy / max(m.wall, 1e-9), 3),
        "stages_ms_per_frame": {k: round(v / max(total_frames, 1) * 1e3, 3) for k, v in stage_sum.items()},
        "alerts_sent": sink.sent,
        "stopped_reason": site.stopped_reason,
        "buffers_clear_after_run": site.bufs.is_clear(),
        "embedder_providers": list(getattr(next(iter(site.nodes.values())).embedder, "providers", [])),
        **m.as_dict(total_frames),
    }
    return out
