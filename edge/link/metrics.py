"""Alert-delivery metrics of a node's link to the hub (counts and latencies, never face data)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge.exporter import LATENCY_BUCKETS


class LinkMetrics:
    """Alert-delivery metrics; the node registers its pipeline collector on the same ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.alerts_queued = Counter(
            "edge_node_alerts_queued", "Alerts written to the outbox", registry=r
        )
        self.alerts_sent = Counter(
            "edge_node_alerts_sent", "Alert transmissions (incl. re-sends)", registry=r
        )
        self.alerts_resent = Counter(
            "edge_node_alerts_resent", "Alert re-transmissions after no ack", registry=r
        )
        self.alerts_acked = Counter(
            "edge_node_alerts_acked", "Alerts acknowledged by the hub", ["status"], registry=r
        )
        self.alerts_refused = Counter(
            "edge_node_alerts_refused", "Alerts refused by the hub", ["reason"], registry=r
        )
        self.outbox_pending = Gauge(
            "edge_node_outbox_pending", "Alerts waiting for a hub ack", registry=r
        )
        self.hub_connected = Gauge(
            "edge_node_hub_connected", "1 when the hub answered heartbeats recently", registry=r
        )
        self.decisions_received = Counter(
            "edge_node_decisions_received", "Officer decisions received", ["decision"], registry=r
        )
        self.messages_refused = Counter(
            "edge_node_messages_refused", "Malformed messages from the hub", ["reason"], registry=r
        )
        self.fabric_errors = Counter(
            "edge_node_fabric_errors", "NATS fabric errors (auth, permission, timeout...)",
            ["reason"], registry=r
        )
        self.ack_latency = Histogram(
            "edge_node_alert_ack_seconds",
            "Outbox write to hub ack",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
