"""A node's /healthz and /readyz on its metrics port, and its latency histograms' exposition.

All model-free (``unit``) but the last, which runs ``edge run`` against an in-process hub.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import cv2
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.exporter import Health, serve_metrics
from edge.hub.service import Hub
from edge.link.schema import CameraHealth
from edge.node.metrics import NodeReadiness, PipelineCollector
from edge.node.stats import LATENCY_BUCKETS_S, LatencyHistogram, NodeStats
from tests.conftest import write_clip
from tests.hub_helpers import free_port, hub_config, wait_for
from tests.privacy_helpers import save_watchlist, start_node, write_config

unit = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def cam(name: str, state: str) -> CameraHealth:
    return CameraHealth(name, name.title(), state, 5.0, 0.1, 0, 10, "")


def get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def ready_node() -> tuple[NodeReadiness, dict[str, bool]]:
    flags = {"in_window": True, "hub": True}
    r = NodeReadiness(lambda: flags["in_window"])
    r.models_loaded = True
    r.cameras = lambda: [cam("gate", "down"), cam("hall", "up")]
    r.hub_connected = lambda: flags["hub"]
    return r, flags


@pytest.fixture
def served():
    clock = Clock()
    readiness, flags = ready_node()
    health = Health(readiness.checks, stale_after_s=10.0, clock=clock)
    stats = NodeStats()
    registry = CollectorRegistry()
    registry.register(PipelineCollector(lambda: {"gate": stats}))
    srv = serve_metrics(registry, 0, health=health)
    yield srv.port, clock, health, readiness, flags, stats
    srv.close()


@unit
def test_healthz_is_ok_while_the_loop_ticks_and_503_when_it_stalls(served):
    port, clock, health, *_ = served
    assert get(port, "/healthz")[:3:2] == (200, b"ok\n")  # before the first tick: starting
    health.tick()
    clock.t += 9.5
    assert get(port, "/healthz")[0] == 200
    clock.t += 1.0  # 10.5 s without a tick
    status, _, body = get(port, "/healthz")
    assert status == 503 and b"stalled" in body
    health.tick()
    assert get(port, "/healthz")[0] == 200


@unit
def test_readyz_is_200_when_everything_is_up(served):
    port, *_ = served
    status, ctype, body = get(port, "/readyz")
    assert status == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["ready"] is True and doc["failed"] == []
    assert doc["checks"] == {"alive": True, "models_loaded": True, "watchlist_in_window": True,
                             "hub_link_up": True, "camera_up": True}


@unit
@pytest.mark.parametrize("reason", ["models_loaded", "watchlist_in_window", "hub_link_up",
                                    "camera_up", "alive"])
def test_readyz_names_each_reason_it_is_not_ready(served, reason):
    port, clock, health, readiness, flags, _ = served
    if reason == "models_loaded":
        readiness.models_loaded = False
    elif reason == "watchlist_in_window":
        flags["in_window"] = False
    elif reason == "hub_link_up":
        flags["hub"] = False
    elif reason == "camera_up":
        readiness.cameras = lambda: [cam("gate", "down"), cam("hall", "connecting")]
    else:
        health.tick()
        clock.t += 60
    status, _, body = get(port, "/readyz")
    doc = json.loads(body)
    assert status == 503 and doc["ready"] is False and doc["failed"] == [reason]
    # names and booleans only: no camera names, labels or anything else
    assert set(doc) == {"ready", "failed", "checks"}
    assert all(isinstance(v, bool) for v in doc["checks"].values())
    assert b"gate" not in body and b"hall" not in body


@unit
def test_a_node_still_starting_is_not_ready():
    r = NodeReadiness(lambda: True)  # watchlist loaded, nothing else yet
    assert r.checks() == {"models_loaded": False, "watchlist_in_window": True,
                          "hub_link_up": False, "camera_up": False}


@unit
def test_a_failing_check_is_not_ready_not_a_dead_endpoint(served):
    port, _, health, *_ = served

    def broken() -> dict[str, bool]:
        raise RuntimeError("secret detail")

    health.checks = broken
    status, _, body = get(port, "/readyz")
    assert status == 503 and json.loads(body)["failed"] == ["checks"]
    assert b"secret" not in body
    assert get(port, "/metrics")[0] == 200


@unit
def test_metrics_are_still_served_beside_the_probes(served):
    port, *_, stats = served
    stats.record(stats.zeroize_latency_s, 0.002)
    status, _, body = get(port, "/metrics")
    assert status == 200
    assert b'edge_node_zeroize_seconds_count{camera="gate"} 1.0' in body


@unit
def test_latencies_are_seconds_histograms_per_camera():
    a, b = NodeStats(), NodeStats()
    for v in (0.0004, 0.003, 0.003, 0.2, 50.0):
        a.record(a.zeroize_latency_s, v)
    b.record(b.capture_to_alert_s, 0.3)
    reg = CollectorRegistry()
    reg.register(PipelineCollector(lambda: {"gate": a, "hall": b}))
    text = generate_latest(reg).decode()
    assert "# TYPE edge_node_zeroize_seconds histogram" in text
    assert "# TYPE edge_node_capture_to_alert_seconds histogram" in text
    assert "_ms" not in text  # no millisecond gauges left
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    z = 'edge_node_zeroize_seconds'
    assert lines[f'{z}_bucket{{camera="gate",le="0.0005"}}'] == "1.0"
    assert lines[f'{z}_bucket{{camera="gate",le="0.005"}}'] == "3.0"
    assert lines[f'{z}_bucket{{camera="gate",le="0.25"}}'] == "4.0"
    assert lines[f'{z}_bucket{{camera="gate",le="10.0"}}'] == "4.0"
    assert lines[f'{z}_bucket{{camera="gate",le="+Inf"}}'] == "5.0"
    assert lines[f'{z}_count{{camera="gate"}}'] == "5.0"
    assert float(lines[f'{z}_sum{{camera="gate"}}']) == pytest.approx(50.2064)
    assert lines[f'{z}_count{{camera="hall"}}'] == "0.0"
    c = 'edge_node_capture_to_alert_seconds'
    assert lines[f'{c}_bucket{{camera="hall",le="0.25"}}'] == "0.0"
    assert lines[f'{c}_bucket{{camera="hall",le="0.5"}}'] == "1.0"
    buckets = [k for k in lines if k.startswith(f'{z}_bucket{{camera="gate"')]
    assert len(buckets) == len(LATENCY_BUCKETS_S) + 1


@unit
def test_histograms_keep_counting_when_the_recent_lists_are_trimmed():
    st = NodeStats()
    for i in range(3 * NodeStats.KEEP):
        st.record(st.zeroize_latency_s, 0.001 * (i % 3))
    assert len(st.zeroize_latency_s) <= 2 * NodeStats.KEEP
    _, count, _ = st.zeroize_hist.snapshot()
    assert count == 3 * NodeStats.KEEP  # a counter never goes down between scrapes


@unit
def test_a_value_on_a_bucket_bound_counts_in_that_bucket():
    h = LatencyHistogram((0.1, 1.0))
    h.observe(0.1)
    h.observe(1.0)
    h.observe(1.5)
    assert h.snapshot() == ([(0.1, 1), (1.0, 2)], 3, pytest.approx(2.6))


def test_a_running_node_is_ready_and_says_so_when_the_hub_goes(tmp_path, engine, sample_images):
    """``edge run`` with ``[metrics] port``: /readyz 200 once models, camera and hub link are
    up; 503 naming ``hub_link_up`` after the hub stops; /healthz stays 200 throughout."""
    group = cv2.imread(str(sample_images / "t1.jpg"))
    enrolled = engine.faces(group)[0].embedding
    save_watchlist(tmp_path / "wl", tmp_path / "wl.key", {"P1": enrolled})
    frames = [cv2.resize(group, (640, 480))] * 150  # 15 s at 10 fps, paced by realtime
    clip = write_clip(tmp_path / "clip.mp4", frames)
    hub = Hub(hub_config(tmp_path)).start()
    port = free_port()
    config = write_config(tmp_path / "node.toml", endpoint=str(hub.endpoint),
                          extra=f"[source]\nrealtime = true\n[metrics]\nport = {port}\n")
    node = start_node(tmp_path, clip, tmp_path / "wl", tmp_path / "wl.key", config)
    try:
        def readyz() -> dict | None:
            try:
                status, _, body = get(port, "/readyz")
            except OSError:
                return None  # not listening yet
            return {"status": status, **json.loads(body)}

        doc = wait_for(lambda: (r := readyz()) and r["status"] == 200 and r, timeout=60,
                       what="node ready")
        assert doc["failed"] == [] and doc["checks"]["hub_link_up"] is True
        assert get(port, "/healthz")[0] == 200
        hub.stop()
        doc = wait_for(lambda: (r := readyz()) and r["status"] == 503 and r, timeout=15,
                       what="node not ready without its hub")
        assert doc["failed"] == ["hub_link_up"]
        assert get(port, "/healthz")[0] == 200  # up, just not ready
    finally:
        hub.stop()
        _, err = node.stop()
    assert "Traceback" not in err
