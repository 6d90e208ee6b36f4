"""Prometheus view of a node's cameras: counts, latencies and health, never face data.

Pipeline counters carry a ``camera`` label (one series per camera); camera health follows
Prometheus conventions: ``_total`` counters, ``_seconds`` ages, an ``up`` gauge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.link.schema import CameraHealth
from edge.node.stats import NodeStats

COUNTERS = ("frames", "frames_carried", "frames_failed", "frames_rate_limited", "faces_seen",
            "faces_embedded", "faces_outside_zone", "faces_discarded", "gate_overrides", "alerts",
            "alerts_suppressed")


class PipelineCollector(Collector):
    """Reads every camera's ``NodeStats`` at scrape time (beside the link's delivery metrics)."""

    def __init__(self, stats: Callable[[], dict[str, NodeStats]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snaps = {name: st.snapshot() for name, st in self.stats().items()}
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
        for key in ("zeroize_p50_ms", "zeroize_p99_ms"):
            gauge = GaugeMetricFamily(f"edge_node_{key}", "Decision-to-zeroed latency",
                                      labels=["camera"])
            for name, snap in snaps.items():
                gauge.add_metric([name], snap[key])
            yield gauge


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
