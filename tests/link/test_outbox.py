"""Durable outbox + ZmqSender: delivery with acks, node kill/restart, decisions to the audit log."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import zmq

from edge.audit import AuditLog, read_records, verify
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.metrics import LinkMetrics
from edge.link.schema import ACK, ALERT, DECISION, DECISION_ACK, HEARTBEAT, control
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, free_port, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

JPEG = synthetic_jpeg(5, 160)
REF = synthetic_jpeg(6)


def test_send_is_durable_and_delivered_with_acks(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    m = LinkMetrics()
    try:
        with ZmqSender(tmp_path / "node" / "outbox.sqlite", h.endpoint, "node-1", None, None, m,
                       camera="cam 1") as s:
            sent = []
            for i in range(20):
                a = synthetic_alert("node-1", "cam 1", i)
                s.send(a, JPEG, REF if i % 2 else None)
                sent.append(a.alert_id)
            wait_for(lambda: s.pending() == 0, what="all acked")
        assert sorted(h.store.alert_ids()) == sorted(sent)
        assert h.store.image(sent[1], "reference") == REF
        assert h.store.image(sent[0], "reference") is None
        assert h.store.image(sent[0], "probe") == JPEG
        assert metric(m.registry, "edge_node_alerts_acked_total", {"status": "stored"}) == 20
        assert metric(m.registry, "edge_node_outbox_pending") == 0
        mode = stat.S_IMODE((tmp_path / "node" / "outbox.sqlite").stat().st_mode)
        assert mode == 0o600
    finally:
        h.close()


def test_delivered_crops_do_not_linger_in_outbox_files(tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    box = tmp_path / "node" / "outbox.sqlite"
    needle = JPEG[200:264]

    def files_with_needle() -> list[str]:
        return [f.name for f in box.parent.iterdir() if needle in f.read_bytes()]

    with ZmqSender(box, ep, "node-1", None, None) as s:
        s.send(synthetic_alert("node-1"), JPEG)
        # positive control: while undelivered, the crop is on disk and the scan finds it
        assert files_with_needle()
        h = RunningHub(hub_config(tmp_path, **{"zmq.bind": ep}))
        try:
            wait_for(lambda: s.pending() == 0, what="ack")
            assert files_with_needle() == [], "delivered crop still in the node's files"
        finally:
            h.close()


def test_hub_down_then_up_delivers(tmp_path: Path) -> None:
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    s = ZmqSender(tmp_path / "o.sqlite", ep, "node-1", None, None, ack_timeout=0.5).start()
    try:
        ids = []
        for i in range(5):
            a = synthetic_alert("node-1", n=i)
            s.send(a, JPEG)
            ids.append(a.alert_id)
        time.sleep(0.5)
        assert s.pending() == 5 and not s.hub_connected
        h = RunningHub(hub_config(tmp_path, **{"zmq.bind": ep}))
        try:
            wait_for(lambda: s.pending() == 0, what="delivery after hub start")
            assert sorted(h.store.alert_ids()) == sorted(ids)
            wait_for(lambda: s.hub_connected, what="connected flag")
        finally:
            h.close()
    finally:
        s.close(0)


_NODE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edge.link.zmq_sender import ZmqSender
    from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
    s = ZmqSender(Path(sys.argv[1]), sys.argv[2], "node-k", None, None).start()
    for i in range(int(sys.argv[3])):
        a = synthetic_alert("node-k", n=i)
        s.send(a, synthetic_jpeg(i))
        print(a.alert_id, flush=True)
    print("queued", flush=True)
    time.sleep(60)
    """
)


def test_node_killed_then_restarted_delivers_outbox(tmp_path: Path) -> None:
    """kill -9 the node with alerts only in its outbox; the restarted node delivers them."""
    ep = f"tcp://127.0.0.1:{free_port()}"  # no hub yet: nothing can be acked
    box = tmp_path / "outbox.sqlite"
    p = subprocess.Popen(
        [sys.executable, "-c", _NODE_SCRIPT, str(box), ep, "12"],
        stdout=subprocess.PIPE, text=True,
    )
    ids = []
    try:
        for line in p.stdout:  # type: ignore[union-attr]
            if line.strip() == "queued":
                break
            ids.append(line.strip())
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    assert len(ids) == 12
    h = RunningHub(hub_config(tmp_path, **{"zmq.bind": ep}))
    try:
        with ZmqSender(box, ep, "node-k", None, None) as s:
            wait_for(lambda: s.pending() == 0, what="restarted node's outbox delivered")
        assert sorted(h.store.alert_ids()) == sorted(ids)
    finally:
        h.close()


def test_close_keeps_unacked_alerts(tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    s = ZmqSender(tmp_path / "o.sqlite", ep, "node-1", None, None).start()
    s.send(synthetic_alert("node-1"), JPEG)
    t0 = time.monotonic()
    s.close(timeout=0.3)
    assert time.monotonic() - t0 < 3
    s2 = ZmqSender(tmp_path / "o.sqlite", ep, "node-1", None, None).start()
    assert s2.pending() == 1
    s2.close(0)


class FakeHub:
    """A raw ROUTER on a real socket, to drive the node's decision handling directly."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.ident: bytes | None = None

    def recv(self, timeout: float = 5.0) -> list[bytes]:
        assert self.sock.poll(int(timeout * 1000)), "nothing from node"
        msg = self.sock.recv_multipart()
        self.ident = msg[0]
        return msg[1:]

    def recv_until(self, tag: bytes, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.recv(deadline - time.monotonic())
            if m[0] == tag:
                return m
        raise AssertionError(f"no {tag!r}")

    def send(self, frames: list[bytes]) -> None:
        assert self.ident is not None
        self.sock.send_multipart([self.ident, *frames])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def test_decisions_reach_audit_log_once(tmp_path: Path) -> None:
    fh = FakeHub()
    audit = AuditLog(tmp_path / "audit.jsonl")
    m = LinkMetrics()
    s = ZmqSender(tmp_path / "o.sqlite", fh.endpoint, "node-1", None, audit, m).start()
    try:
        hb = fh.recv_until(HEARTBEAT)
        body = json.loads(hb[1])
        assert body["node_id"] == "node-1" and len(body["run_id"]) == 32
        decision = {
            "decision_id": "a" * 32, "alert_id": "b" * 32, "decision": "reject",
            "officer": "pc1", "decided_at": time.time(),
        }
        # malformed ones first: counted, ignored, the sender keeps working
        fh.send([DECISION, b"{broken"])
        fh.send([DECISION, json.dumps({**decision, "decision": "shoot"}).encode()])
        fh.send([b"edge.whatever", b"{}"])
        for _ in range(3):  # re-sent (hub did not see the ack): appended once, acked each time
            fh.send(control(DECISION, decision))
            ack = fh.recv_until(DECISION_ACK)
            assert json.loads(ack[1]) == {"decision_id": "a" * 32}
        recs = [r for r in read_records(tmp_path / "audit.jsonl") if r["kind"] == "decision"]
        assert len(recs) == 1
        assert recs[0]["data"] == {k: decision[k] for k in
                                   ("decision_id", "alert_id", "decision", "officer")} | {
            "decided_at": decision["decided_at"]}
        assert verify(tmp_path / "audit.jsonl").ok
        assert metric(m.registry, "edge_node_decisions_received_total", {"decision": "reject"}) == 1
        assert metric(m.registry, "edge_node_messages_refused_total", {"reason": "json"}) == 1
        assert metric(m.registry, "edge_node_messages_refused_total",
                      {"reason": "decision"}) == 1
        assert metric(m.registry, "edge_node_messages_refused_total",
                      {"reason": "unknown_type"}) == 1
        # and alerts still flow
        a = synthetic_alert("node-1")
        s.send(a, JPEG)
        msg = fh.recv_until(ALERT)
        fh.send(control(ACK, {"alert_id": a.alert_id, "status": "stored"}))
        assert json.loads(msg[1])["alert_id"] == a.alert_id
        wait_for(lambda: s.pending() == 0, what="ack processed")
    finally:
        s.close(0)
        fh.close()
        audit.close()


def test_unacked_alert_is_resent(tmp_path: Path) -> None:
    fh = FakeHub()
    s = ZmqSender(tmp_path / "o.sqlite", fh.endpoint, "node-1", None, None,
                  ack_timeout=0.2).start()
    try:
        a = synthetic_alert("node-1")
        s.send(a, JPEG)
        first = fh.recv_until(ALERT)
        again = fh.recv_until(ALERT)  # no ack -> re-sent
        assert first == again
        fh.send(control(ACK, {"alert_id": a.alert_id, "status": "stored"}))
        wait_for(lambda: s.pending() == 0, what="ack")
    finally:
        s.close(0)
        fh.close()


def test_no_secret_material_or_pixels_in_heartbeat(tmp_path: Path) -> None:
    fh = FakeHub()
    s = ZmqSender(tmp_path / "o.sqlite", fh.endpoint, "node-1", None, None, camera="c").start()
    try:
        s.set_counts({"faces_seen": 10, "faces_discarded": 9, "alerts": 1})
        for _ in range(5):
            hb = fh.recv_until(HEARTBEAT)
            body = json.loads(hb[1])
            if body["counts"]:
                break
        assert body["counts"] == {"faces_seen": 10, "faces_discarded": 9, "alerts": 1}
        assert set(body) == {"node_id", "camera", "run_id", "sent_at", "pending", "counts"}
        assert len(hb[1]) < 1024
    finally:
        s.close(0)
        fh.close()


def test_outbox_dir_and_file_private(tmp_path: Path) -> None:
    box = tmp_path / "state" / "outbox.sqlite"
    s = ZmqSender(box, f"tcp://127.0.0.1:{free_port()}", "n", None, None).start()
    s.close(0)
    assert stat.S_IMODE(box.stat().st_mode) == 0o600
    assert stat.S_IMODE(box.parent.stat().st_mode) & 0o077 == 0
    assert os.access(box, os.R_OK)
