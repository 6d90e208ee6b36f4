"""Prometheus view of a node's pipeline counters: counts and latencies, never face data."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.node.stats import NodeStats

COUNTERS = ("frames", "frames_failed", "faces_seen", "faces_embedded", "faces_discarded",
            "gate_overrides", "alerts", "alerts_suppressed")


class PipelineCollector(Collector):
    """Reads ``NodeStats`` at scrape time (registered beside the link's delivery metrics)."""

    def __init__(self, stats: NodeStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        for key in COUNTERS:
            yield CounterMetricFamily(f"edge_node_{key}", f"Pipeline {key.replace('_', ' ')}",
                                      value=snap[key])
        gated = CounterMetricFamily("edge_node_faces_gated",
                                    "Embedding attempts skipped by a quality gate", labels=["reason"])
        for reason, count in snap["faces_gated"].items():
            gated.add_metric([reason], count)
        yield gated
        for key in ("zeroize_p50_ms", "zeroize_p99_ms"):
            yield GaugeMetricFamily(f"edge_node_{key}", "Decision-to-zeroed latency", value=snap[key])
