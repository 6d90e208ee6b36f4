"""ZeroMQ + CURVE link: keys, allow-list, refused peers counted, malformed traffic survived."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.curve_keys import KeyFileError, generate_keypair, load_public_key, load_secret_key
from edge.link.metrics import LinkMetrics
from edge.link.schema import ACK, DECISION_ACK, HEARTBEAT, SCHEMA_TAG, encode
from edge.link.zeromq import CurveConfig, TransportError, is_loopback
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

EDGE = [sys.executable, "-m", "edge.cli"]
JPEG = synthetic_jpeg(3)


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    """hub key pair, allowed dir with node-a, plus a stranger node key not allowed."""
    kd = tmp_path / "keys"
    generate_keypair("hub", kd / "hub")
    generate_keypair("node-a", kd / "node")
    generate_keypair("node-x", kd / "stranger")
    generate_keypair("hub", kd / "fakehub")
    allowed = kd / "allowed"
    allowed.mkdir()
    (allowed / "node-a.key").write_bytes((kd / "node" / "node-a.key").read_bytes())
    return {
        "hub_secret": kd / "hub" / "hub.key_secret",
        "hub_public": kd / "hub" / "hub.key",
        "allowed": allowed,
        "node_secret": kd / "node" / "node-a.key_secret",
        "stranger_secret": kd / "stranger" / "node-x.key_secret",
        "fake_hub_public": kd / "fakehub" / "hub.key",
    }


@pytest.fixture()
def curve_hub(tmp_path: Path, keys: dict[str, Path]):
    cfg = hub_config(
        tmp_path,
        **{"zmq.hub_secret_key": str(keys["hub_secret"]),
           "zmq.allowed_node_keys_dir": str(keys["allowed"])},
    )
    h = RunningHub(cfg)
    yield h
    h.close()


def test_keys_cli_writes_0600_secret(tmp_path: Path) -> None:
    out = subprocess.run(
        [*EDGE, "keys", "generate", "node-1", "--dir", str(tmp_path / "k")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    sec = tmp_path / "k" / "node-1.key_secret"
    pub = tmp_path / "k" / "node-1.key"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    p, s = load_secret_key(sec)
    assert p == load_public_key(pub) and len(s) == 40
    assert "secret-key" not in pub.read_text()
    # zmq.auth reads our files
    import zmq.auth

    assert zmq.auth.load_certificate(str(sec)) == (p, s)
    again = subprocess.run(
        [*EDGE, "keys", "generate", "node-1", "--dir", str(tmp_path / "k")],
        capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 2 and "exists" in again.stderr
    bad = subprocess.run([*EDGE, "keys", "generate", "../evil", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: bad key name")


def test_loose_secret_key_permissions_refused(tmp_path: Path) -> None:
    _, sec = generate_keypair("n", tmp_path)
    os.chmod(sec, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_secret_key(sec)


def test_is_loopback() -> None:
    assert is_loopback("tcp://127.0.0.1:5560")
    assert is_loopback("tcp://localhost:5560")
    assert is_loopback("tcp://[::1]:5560")
    assert is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://10.0.0.5:5560")
    assert not is_loopback("tcp://0.0.0.0:5560")
    assert not is_loopback("tcp://*:5560")


def test_plain_transport_refused_off_loopback(tmp_path: Path) -> None:
    s = ZmqSender(tmp_path / "o.sqlite", "tcp://10.20.30.40:5560", "node-a", None, None)
    with pytest.raises(TransportError, match="unencrypted"):
        s.start()
    s.close(0)
    with pytest.raises(Exception, match="unencrypted"):
        RunningHub(hub_config(tmp_path, **{"zmq.bind": "tcp://0.0.0.0:0"}))


def test_curve_delivery_and_decision_path(tmp_path: Path, keys, curve_hub) -> None:
    m = LinkMetrics()
    curve = CurveConfig(keys["node_secret"], keys["hub_public"])
    with ZmqSender(tmp_path / "o.sqlite", curve_hub.endpoint, "node-a", curve, None, m) as s:
        a = synthetic_alert("node-a")
        s.send(a, JPEG)
        wait_for(lambda: s.pending() == 0, what="CURVE delivery")
        assert curve_hub.store.get_alert(a.alert_id)["node_id"] == "node-a"
        assert metric(m.registry, "edge_node_alerts_acked_total", {"status": "stored"}) == 1


def _refused_total(reg) -> float:
    return sum(
        s.value for mf in reg.collect() if mf.name == "edge_hub_handshakes_refused"
        for s in mf.samples if s.name.endswith("_total")
    )


@pytest.mark.parametrize("case", ["unknown_key", "wrong_hub_key", "plain_client"])
def test_wrong_keys_refused_and_counted(tmp_path: Path, keys, curve_hub, case: str) -> None:
    reg = curve_hub.hub.metrics.registry
    before = _refused_total(reg)
    if case == "unknown_key":
        curve = CurveConfig(keys["stranger_secret"], keys["hub_public"])
    elif case == "wrong_hub_key":
        curve = CurveConfig(keys["node_secret"], keys["fake_hub_public"])
    else:
        curve = None
    s = ZmqSender(tmp_path / f"{case}.sqlite", curve_hub.endpoint, "node-a", curve, None)
    s.start()
    try:
        s.send(synthetic_alert("node-a"), JPEG)
        wait_for(lambda: _refused_total(reg) > before, timeout=10, what="refusal counted")
        time.sleep(0.5)
        assert s.pending() == 1  # nothing got through, the alert waits in the outbox
        assert curve_hub.store.count_alerts() == 0
        assert not s.hub_connected
    finally:
        s.close(0)


def test_node_cannot_impersonate_another(tmp_path: Path, keys, curve_hub) -> None:
    m = LinkMetrics()
    curve = CurveConfig(keys["node_secret"], keys["hub_public"])  # authenticated as node-a
    with ZmqSender(tmp_path / "o.sqlite", curve_hub.endpoint, "node-b", curve, None, m) as s:
        s.send(synthetic_alert("node-b"), JPEG)
        wait_for(lambda: s.pending() == 0, what="nack")
    assert curve_hub.store.count_alerts() == 0
    assert metric(curve_hub.hub.metrics.registry, "edge_hub_messages_refused_total",
                  {"reason": "node_id_mismatch"}) >= 1
    assert metric(m.registry, "edge_node_alerts_refused_total",
                  {"reason": "node_id_mismatch"}) == 1


def test_malformed_messages_counted_and_hub_survives(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    try:
        d.connect(h.endpoint)
        good = encode(synthetic_alert("node-z"), JPEG)
        bad_json = [SCHEMA_TAG, b"{not json", JPEG]
        unknown_field = json.loads(good[1])
        unknown_field["embedding"] = [0.0] * 128
        cases = [
            [b"hello"],
            [b"garbage", b"more"],
            [SCHEMA_TAG, good[1]],
            bad_json,
            [SCHEMA_TAG, json.dumps(unknown_field).encode(), JPEG],
            [SCHEMA_TAG, good[1], b"\xff\xd8\xff" + b"\0" * (1024 * 1024 + 10)],
            [HEARTBEAT, b"[]"],
            [HEARTBEAT, json.dumps({"node_id": "n", "run_id": "zz", "sent_at": 1}).encode()],
            [DECISION_ACK, b"\xff"],
        ]
        for c in cases:
            d.send_multipart(c)
        d.send_multipart(good)  # a good alert after all that is still stored and acked
        assert d.poll(20000), "no ack for the good alert"
        reply = d.recv_multipart()
        assert reply[0] == ACK and json.loads(reply[1])["status"] == "stored"
        d.send_multipart(good)  # replay: stored once, acked again
        assert d.poll(20000), "no ack for the replay"
        reply = d.recv_multipart()
        assert json.loads(reply[1])["status"] == "duplicate"
        reg = h.hub.metrics.registry
        total = sum(
            s.value for mf in reg.collect() if mf.name == "edge_hub_messages_refused"
            for s in mf.samples if s.name.endswith("_total")
        )
        assert total == len(cases), [
            (s.labels, s.value) for mf in reg.collect() if mf.name == "edge_hub_messages_refused"
            for s in mf.samples]
        for reason in ("unknown_type", "frames", "json", "field", "jpeg_size"):
            assert metric(reg, "edge_hub_messages_refused_total", {"reason": reason}) >= 1
        assert metric(reg, "edge_hub_alerts_duplicate_total") == 1
        assert h.store.count_alerts() == 1
    finally:
        d.close(0)
        ctx.term()
        h.close()
