"""Prometheus view of a node's cameras: counts, latencies and health, never face data.

Pipeline counters carry a ``camera`` label (one series per camera); camera health follows
Prometheus conventions: ``_total`` counters, ``_seconds`` ages, an ``up`` gauge; latencies
are ``_seconds`` histograms (cumulative since start, from ``NodeStats``' bucket counts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from edge.link.schema import CameraHealth
from edge.node.stats import LatencyHistogram, NodeStats

COUNTERS = ("frames", "frames_carried", "frames_failed", "frames_rate_limited", "faces_seen",
            "faces_embedded", "faces_outside_zone", "faces_discarded", "gate_overrides", "alerts",
            "alerts_suppressed")

# (metric name, help, the NodeStats histogram it reads)
HISTOGRAMS: tuple[tuple[str, str, Callable[[NodeStats], LatencyHistogram]], ...] = (
    ("edge_node_zeroize_seconds", "Match decision to face buffers zeroed",
     lambda st: st.zeroize_hist),
    ("edge_node_capture_to_alert_seconds", "Frame capture to alert handed to the sinks",
     lambda st: st.capture_to_alert_hist),
)


class PipelineCollector(Collector):
    """Reads every camera's ``NodeStats`` at scrape time (beside the link's delivery metrics)."""

    def __init__(self, stats: Callable[[], dict[str, NodeStats]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        cams = self.stats()
        snaps = {name: st.snapshot() for name, st in cams.items()}
        for key in COUNTERS:
            fam = CounterMetricFamily(f"edge_node_{key}", f"Pipeline {key.replace('_', ' ')}",
                                      labels=["camera"])
            for name, snap in snaps.items():
                fam.add_metric([name], snap[key])
            yield fam
        gated = CounterMetricFamily("edge_node_faces_gated",
                                    "Embedding attempts skipped by a quality gate",
                                    labels=["camera", "reason"])
        for name, snap in snaps.items():
            for reason, count in snap["faces_gated"].items():
                gated.add_metric([name, reason], count)
        yield gated
        for metric, help_text, hist_of in HISTOGRAMS:
            hist = HistogramMetricFamily(metric, help_text, labels=["camera"])
            for name, st in cams.items():
                cumulative, count, total = hist_of(st).snapshot()
                buckets = [(repr(bound), float(n)) for bound, n in cumulative]
                hist.add_metric([name], buckets + [("+Inf", float(count))], total)
            yield hist


class CameraCollector(Collector):
    """Camera health at scrape time: up, frames/s, last frame age, reconnects, frames."""

    def __init__(self, health: Callable[[], Sequence[CameraHealth]]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        cams = list(self.health())
        up = GaugeMetricFamily("edge_camera_up", "1 while the camera delivers frames",
                               labels=["camera"])
        state = GaugeMetricFamily("edge_camera_state", "1 for the camera's current state",
                                  labels=["camera", "state"])
        fps = GaugeMetricFamily("edge_camera_fps", "Frames processed per second, last 5 s",
                                labels=["camera"])
        age = GaugeMetricFamily("edge_camera_last_frame_age_seconds",
                                "Seconds since the camera's last frame (NaN: none yet)",
                                labels=["camera"])
        reconnects = CounterMetricFamily("edge_camera_reconnects", "Reconnect attempts",
                                         labels=["camera"])
        frames = CounterMetricFamily("edge_camera_frames", "Frames processed", labels=["camera"])
        for c in cams:
            up.add_metric([c.name], 1.0 if c.state == "up" else 0.0)
            state.add_metric([c.name, c.state], 1.0)
            fps.add_metric([c.name], c.fps)
            age.add_metric([c.name], c.last_frame_age_s if c.last_frame_age_s is not None
                           else float("nan"))
            reconnects.add_metric([c.name], c.reconnects)
            frames.add_metric([c.name], c.frames)
        yield from (up, state, fps, age, reconnects, frames)


class NodeReadiness:
    """What a node's ``/readyz`` checks: names and booleans only, never who or what was seen.

    Filled in as ``run_node`` starts: the watchlist first, then the models (``models_loaded``),
    the cameras (``cameras``) and the hub link (``hub_connected``); a part not there yet fails.
    """

    def __init__(self, in_window: Callable[[], bool]) -> None:
        self.in_window = in_window
        self.models_loaded = False
        self.cameras: Callable[[], Sequence[CameraHealth]] | None = None
        self.hub_connected: Callable[[], bool] | None = None

    def checks(self) -> dict[str, bool]:
        cams = list(self.cameras()) if self.cameras is not None else []
        return {
            "models_loaded": self.models_loaded,
            "watchlist_in_window": bool(self.in_window()),
            "hub_link_up": self.hub_connected is not None and bool(self.hub_connected()),
            "camera_up": any(c.state == "up" for c in cams),
        }
