"""The node's counters and timings: the only view of its work that may leave the process.

Counts, stage seconds and latencies only; never anything derived from a face. They feed the
deletion ledger in the audit log, the heartbeat counts, Prometheus and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STAGES = ("detect", "track", "align", "embed", "search", "alert", "zeroize")


@dataclass
class NodeStats:
    """Counts and timings only: safe to log, export as metrics and write to the ledger."""

    frames: int = 0
    frames_failed: int = 0
    faces_seen: int = 0  # detections over all frames
    faces_embedded: int = 0
    faces_gated: dict[str, int] = field(default_factory=dict)  # embedding attempts skipped, by reason
    gate_overrides: int = 0  # gated faces embedded anyway: their track was gated too long
    faces_discarded: int = 0  # detections that produced no alert (all their data zeroed)
    alerts: int = 0
    alerts_suppressed: int = 0  # matched again within the cool-down
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # recent latencies for percentiles, trimmed to the last KEEP once over twice that: a node
    # running for days holds at most ~0.6 MB of them (unbounded, +3.5 MB an hour at 25 fps)
    zeroize_latency_s: list[float] = field(default_factory=list)  # decision -> zeroed
    capture_to_alert_s: list[float] = field(default_factory=list)
    KEEP = 10_000

    def record(self, series: list[float], value: float) -> None:
        series.append(value)
        if len(series) > 2 * self.KEEP:
            del series[: -self.KEEP]

    def snapshot(self) -> dict:
        lat = np.array(self.zeroize_latency_s or [0.0])
        return {
            "frames": self.frames,
            "frames_failed": self.frames_failed,
            "faces_seen": self.faces_seen,
            "faces_embedded": self.faces_embedded,
            "faces_gated": dict(self.faces_gated),
            "gate_overrides": self.gate_overrides,
            "faces_discarded": self.faces_discarded,
            "alerts": self.alerts,
            "alerts_suppressed": self.alerts_suppressed,
            "zeroize_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
            "zeroize_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
            "zeroize_max_ms": round(float(lat.max()) * 1e3, 3),
        }
