"""The node's counters and timings: the only view of its work that may leave the process.

Counts, stage seconds and latencies only; never anything derived from a face. They feed the
deletion ledger in the audit log, the heartbeat counts, Prometheus and the benchmarks.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.node.sinks import AuditSink

STAGES = ("detect", "track", "align", "embed", "search", "alert", "zeroize")

# upper bounds (s) of the latency histograms: decision->zeroed is sub-millisecond to one frame
# interval (40 ms at 25 fps), capture->alert tens of ms to seconds on a loaded CPU
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class LatencyHistogram:
    """Cumulative bucket counts since start (never trimmed, unlike the recent lists), in the
    shape a Prometheus histogram wants; plain Python so the pipeline needs no exporter."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self._counts = [0] * len(bounds)  # per bucket, not cumulative
        self._inf = 0
        self._sum = 0.0
        self._lock = threading.Lock()  # observed on a worker thread, read at scrape time

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)  # first bound >= value (le is inclusive)
        with self._lock:
            if i < len(self.bounds):
                self._counts[i] += 1
            else:
                self._inf += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[float, int]], int, float]:
        """(cumulative counts per upper bound, total count, sum of values)."""
        with self._lock:
            counts, inf, total = list(self._counts), self._inf, self._sum
        out, acc = [], 0
        for bound, n in zip(self.bounds, counts, strict=True):
            acc += n
            out.append((bound, acc))
        return out, acc + inf, total


@dataclass
class NodeStats:
    """Counts and timings only: safe to log, export as metrics and write to the ledger."""

    frames: int = 0
    frames_carried: int = 0  # frames between detections (tracks carried by their motion)
    frames_failed: int = 0
    frames_rate_limited: int = 0  # skipped to keep the camera under its max_fps
    faces_seen: int = 0  # detections over all frames
    faces_embedded: int = 0
    faces_outside_zone: int = 0  # detections outside the camera's zone (never embedded)
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
    # every value ever recorded in the two lists above, bucketed (Prometheus histograms)
    zeroize_hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    capture_to_alert_hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    KEEP = 10_000

    def record(self, series: list[float], value: float) -> None:
        series.append(value)
        if series is self.zeroize_latency_s:
            self.zeroize_hist.observe(value)
        elif series is self.capture_to_alert_s:
            self.capture_to_alert_hist.observe(value)
        if len(series) > 2 * self.KEEP:
            del series[: -self.KEEP]

    def snapshot(self) -> dict[str, Any]:
        lat = np.array(self.zeroize_latency_s or [0.0])
        return {
            "frames": self.frames,
            "frames_carried": self.frames_carried,
            "frames_failed": self.frames_failed,
            "frames_rate_limited": self.frames_rate_limited,
            "faces_seen": self.faces_seen,
            "faces_embedded": self.faces_embedded,
            "faces_outside_zone": self.faces_outside_zone,
            "faces_gated": dict(self.faces_gated),
            "gate_overrides": self.gate_overrides,
            "faces_discarded": self.faces_discarded,
            "alerts": self.alerts,
            "alerts_suppressed": self.alerts_suppressed,
            "zeroize_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
            "zeroize_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
            "zeroize_max_ms": round(float(lat.max()) * 1e3, 3),
        }


class Ledger:
    """The deletion ledger: every ``interval_s`` one audit record of what was seen and discarded.

    Counts for the interval and the decision-to-zeroed latency only, so an auditor can check
    that faces were deleted without the log ever holding anything about them.
    """

    COUNTS = ("frames", "faces_seen", "faces_embedded", "faces_discarded", "alerts")

    def __init__(self, audit: AuditSink | None, stats: NodeStats, interval_s: float,
                 zeroize_enabled: bool, camera: str = "") -> None:
        self.audit = audit
        self.camera = camera
        self.stats = stats
        self.interval_s = interval_s
        self.zeroize_enabled = zeroize_enabled
        self._prev = stats.snapshot()
        self._at = time.monotonic()
        self._lock = threading.Lock()  # a site's worker and its main thread both call this

    def maybe_append(self, force: bool = False) -> None:
        if self.audit is None:
            return
        with self._lock:
            self._append(force)

    def _append(self, force: bool) -> None:
        assert self.audit is not None
        if not force and time.monotonic() - self._at < self.interval_s:
            return
        snap = self.stats.snapshot()
        delta = {k: snap[k] - self._prev[k] for k in self.COUNTS}
        window = np.array(self.stats.zeroize_latency_s[-NodeStats.KEEP:] or [0.0])
        self.audit.append("ledger", {
            **({"camera": self.camera} if self.camera else {}),
            "interval_s": round(time.monotonic() - self._at, 3),
            **delta,
            "zeroize_p50_ms": round(float(np.percentile(window, 50)) * 1e3, 3),
            "zeroize_p99_ms": round(float(np.percentile(window, 99)) * 1e3, 3),
            "zeroize_enabled": self.zeroize_enabled,
        })
        self._prev = snap
        self._at = time.monotonic()
