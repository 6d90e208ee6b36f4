"""Hub metrics: alerts in, refusals by reason, decisions, logins, latencies, cameras; and the
hub's readiness for ``/readyz`` (web app and metrics port).

Names follow Prometheus conventions: counters get ``_total`` from the client library,
latencies are ``_seconds`` histograms, no millisecond gauges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge.exporter import LATENCY_BUCKETS, Health

if TYPE_CHECKING:
    from edge.hub.service import Hub


def hub_checks(hub: Hub) -> dict[str, bool]:
    """What the hub's ``/readyz`` checks: its store is open and its ZeroMQ router runs (or,
    on the NATS fabric, it is connected)."""
    fabric = getattr(hub, "fabric", None)
    if fabric is not None:  # transport "nats": ready while connected to the fabric
        return {"store_open": hub.store is not None, "nats_fabric_connected": fabric.connected}
    router = getattr(hub, "_router", None)
    thread = getattr(router, "_thread", None)
    return {
        "store_open": hub.store is not None,
        "zmq_router_running": thread is not None and thread.is_alive(),
    }


def hub_health(hub: Hub) -> Health:
    """``/healthz`` (answering is being up: uvicorn runs the loop) and ``/readyz`` of a hub."""
    return Health(lambda: hub_checks(hub), watch_loop=False)


class HubMetrics:
    """Hub metrics: alerts in, refusals by reason, decisions, logins, latencies, cameras."""

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
        self.fabric_errors = Counter(
            "edge_hub_fabric_errors",
            "NATS fabric errors: auth, permission (a deployment it may not read), timeout...",
            ["reason"],
            registry=r,
        )
        self.heartbeats = Counter("edge_hub_heartbeats", "Node heartbeats received", registry=r)
        self.audit_regressions = Counter(
            "edge_hub_audit_regressions",
            "Heartbeats whose audit head goes back from the one the hub holds (log cut or "
            "rewritten)", ["node_id"], registry=r,
        )
        self.nodes_online = Gauge("edge_hub_nodes_online", "Nodes heard recently", registry=r)
        self.cameras = Gauge(
            "edge_hub_cameras",
            "Cameras by state as officers see it (unknown: node lost or camera not reported)",
            ["state"],
            registry=r,
        )
        self.camera_up = Gauge(
            "edge_hub_camera_up",
            "1 while the camera delivers frames and its node is heard, else 0",
            ["node_id", "camera"],
            registry=r,
        )
        self.decisions = Counter(
            "edge_hub_decisions", "Officer decisions", ["decision"], registry=r
        )
        self.outcomes = Counter(
            "edge_hub_outcomes", "Outcomes recorded after decisions", ["outcome"], registry=r
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
        self.push_sent = Counter(
            "edge_hub_push_sent", "Web pushes accepted by a push service", registry=r
        )
        self.push_failed = Counter(
            "edge_hub_push_failed", "Web pushes not delivered (gone: subscription removed)",
            ["reason"], registry=r,
        )
        self.push_subscriptions = Gauge(
            "edge_hub_push_subscriptions", "Tablets subscribed to web push (live sessions)",
            registry=r,
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
