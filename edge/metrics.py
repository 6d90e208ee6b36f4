"""Prometheus metrics for node and hub: counts and latencies only.

Metrics are scraped by systems outside the privacy boundary, so labels are restricted to
fixed vocabularies (reason codes, decision values); never ids, names, scores or pixels.
Each process part owns its own ``CollectorRegistry`` so tests can run several in one process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from edge.errors import EdgeError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)


class NodeMetrics:
    """Alert-delivery metrics of a node; the pipeline may register more on ``registry``."""

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
        self.ack_latency = Histogram(
            "edge_node_alert_ack_seconds",
            "Outbox write to hub ack",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


class HubMetrics:
    """Hub metrics: alerts in, refusals by reason, decisions, logins, latencies."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.alerts_received = Counter(
            "edge_hub_alerts_received", "New alerts stored", registry=r
        )
        self.alerts_duplicate = Counter(
            "edge_hub_alerts_duplicate", "Re-sent alerts already stored (acked again)", registry=r
        )
        self.messages_refused = Counter(
            "edge_hub_messages_refused",
            "Messages refused (malformed, oversized, unknown type, wrong node)",
            ["reason"],
            registry=r,
        )
        self.handshakes_refused = Counter(
            "edge_hub_handshakes_refused",
            "ZeroMQ connections refused at the handshake (wrong/unknown CURVE key)",
            ["reason"],
            registry=r,
        )
        self.heartbeats = Counter("edge_hub_heartbeats", "Node heartbeats received", registry=r)
        self.nodes_online = Gauge("edge_hub_nodes_online", "Nodes heard recently", registry=r)
        self.decisions = Counter(
            "edge_hub_decisions", "Officer decisions", ["decision"], registry=r
        )
        self.decisions_refused = Counter(
            "edge_hub_decisions_refused", "Decision requests refused", ["reason"], registry=r
        )
        self.decisions_delivered = Counter(
            "edge_hub_decisions_delivered", "Decisions acknowledged by nodes", registry=r
        )
        self.logins = Counter("edge_hub_logins", "Successful officer sign-ins", registry=r)
        self.login_failures = Counter(
            "edge_hub_login_failures", "Refused sign-ins", ["reason"], registry=r
        )
        self.http_unauthorized = Counter(
            "edge_hub_http_unauthorized", "Requests refused for lack of a session", registry=r
        )
        self.purged = Counter(
            "edge_hub_purged", "Items removed by retention", ["what"], registry=r
        )
        self.sse_clients = Gauge("edge_hub_sse_clients", "Open live-alert streams", registry=r)
        self.capture_to_hub = Histogram(
            "edge_hub_capture_to_hub_seconds",
            "Frame capture on the node to alert stored on the hub",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_latency = Histogram(
            "edge_hub_alert_to_decision_seconds",
            "Alert stored to officer decision",
            buckets=LATENCY_BUCKETS + (600.0, 1800.0, 3600.0),
            registry=r,
        )


class MetricsServer:
    """A running Prometheus HTTP endpoint; ``close()`` stops it (tests start several)."""

    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self._server = server
        self._thread = thread
        self.port = port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Expose ``registry`` at http://host:port/metrics (port 0 picks a free port)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise EdgeError(f"cannot start metrics endpoint on {host}:{port}: {exc.strerror}") from None
    real_port = server.server_address[1]
    log.info("metrics at http://%s:%d/metrics", host, real_port)
    return MetricsServer(server, thread, real_port)
