"""The hub's /healthz and /readyz (web app without sign-in, and metrics port), and its metric
names and types."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from edge.exporter import serve_metrics
from edge.hub.metrics import hub_checks, hub_health
from edge.hub.service import Hub
from edge.hub.web import create_app
from tests.hub_helpers import hub_config

pytestmark = pytest.mark.unit


@pytest.fixture
def hub(tmp_path):
    h = Hub(hub_config(tmp_path)).start()
    yield h
    h.stop()


def test_web_app_answers_healthz_and_readyz_without_sign_in(hub):
    with TestClient(create_app(hub)) as client:
        r = client.get("/healthz")
        assert r.status_code == 200 and r.text == "ok\n"
        r = client.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {"ready": True, "failed": [],
                            "checks": {"alive": True, "store_open": True,
                                       "zmq_router_running": True}}
        assert "set-cookie" not in r.headers
        assert client.get("/api/alerts").status_code == 401  # the rest still needs a session


def test_readyz_503_when_the_zeromq_router_stopped(hub):
    assert hub._router is not None
    hub._router.stop()  # the router object stays, its thread is gone
    with TestClient(create_app(hub)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["failed"] == ["zmq_router_running"]
        assert client.get("/healthz").status_code == 200  # up, just not ready


def test_readyz_503_when_the_store_is_closed(tmp_path):
    h = Hub(hub_config(tmp_path)).start()
    h.stop()  # store closed, router gone
    with TestClient(create_app(h)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["failed"] == ["store_open", "zmq_router_running"]
        assert all(isinstance(v, bool) for v in body["checks"].values())


def test_a_hub_not_started_is_not_ready(tmp_path):
    h = Hub(hub_config(tmp_path))
    assert hub_checks(h) == {"store_open": False, "zmq_router_running": False}


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_metrics_port_answers_the_same_probes(hub):
    srv = serve_metrics(hub.metrics.registry, 0, health=hub_health(hub))
    try:
        assert get(srv.port, "/healthz") == (200, b"ok\n")
        status, body = get(srv.port, "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        assert b"edge_hub_alerts_received_total" in get(srv.port, "/metrics")[1]
        hub.stop()
        status, body = get(srv.port, "/readyz")
        assert status == 503
        assert json.loads(body)["failed"] == ["store_open", "zmq_router_running"]
    finally:
        srv.close()


def test_hub_metric_names_follow_prometheus_conventions(hub):
    hub.metrics.capture_to_hub.observe(0.2)
    text = generate_latest(hub.metrics.registry).decode()
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    assert types["edge_hub_capture_to_hub_seconds"] == "histogram"
    assert types["edge_hub_alert_to_decision_seconds"] == "histogram"
    assert 'edge_hub_capture_to_hub_seconds_bucket{le="0.25"} 1.0' in text
    for name, kind in types.items():
        assert not name.endswith(("_ms", "_milliseconds")), name  # latencies in seconds
        if kind == "counter":
            assert name.endswith("_total"), name
