"""Control messages of the link: exact bytes on the wire, one validator per body with stable
reason codes, lenient only where a value is informational, one id rule."""

from __future__ import annotations

import json

import pytest

from edge.link.schema import (
    ACK,
    DECISION,
    DECISION_ACK,
    HEARTBEAT,
    MAX_CONTROL_BYTES,
    NACK,
    Ack,
    Decision,
    DecisionAck,
    Heartbeat,
    HeartbeatAck,
    MessageError,
    Nack,
    is_id,
    parse_ack,
    parse_decision,
    parse_decision_ack,
    parse_heartbeat,
    parse_nack,
)

pytestmark = pytest.mark.unit


A, B = "a" * 32, "b" * 32


def test_id_rule() -> None:
    assert is_id(A) and is_id("0123456789abcdef" * 2)
    for bad in ("A" * 32, "a" * 31, "a" * 33, A + "\n", " " + A[1:], 32, None, b"a" * 32):
        assert not is_id(bad), bad


def test_control_bytes_are_the_documented_wire_format() -> None:
    """Exactly what older nodes and hubs send and expect (docs/ARCHITECTURE.md)."""
    assert Ack(A, "stored").to_frames() == [
        b"edge.ack.v1", b'{"alert_id":"' + A.encode() + b'","status":"stored"}']
    assert Nack(A, "node_id_mismatch").to_frames() == [
        b"edge.nack.v1", b'{"alert_id":"' + A.encode() + b'","reason":"node_id_mismatch"}']
    assert Heartbeat("node-1", "gate", B, 12.5, 2, {"faces_seen": 3}).to_frames() == [
        b"edge.heartbeat.v1",
        b'{"node_id":"node-1","camera":"gate","run_id":"' + B.encode()
        + b'","sent_at":12.5,"pending":2,"counts":{"faces_seen":3}}']
    assert HeartbeatAck(12.5, 13.0).to_frames() == [
        b"edge.heartbeat-ack.v1", b'{"sent_at":12.5,"hub_time":13.0}']
    assert Decision(A, B, "reject", "pc1", 14.0).to_frames() == [
        b"edge.decision.v1",
        b'{"decision_id":"' + A.encode() + b'","alert_id":"' + B.encode()
        + b'","decision":"reject","officer":"pc1","decided_at":14.0}']
    assert DecisionAck(A).to_frames() == [b"edge.decision-ack.v1", b'{"decision_id":"' + A.encode()
                                          + b'"}']


def test_each_validator_reads_what_the_other_end_writes() -> None:
    assert parse_ack(Ack(A, "duplicate").to_frames()) == Ack(A, "duplicate")
    assert parse_nack(Nack(A, "x").to_frames()) == Nack(A, "x")
    beat = Heartbeat("node-1", "gate", B, 12.5, 2, {"faces_seen": 3})
    assert parse_heartbeat(beat.to_frames()) == beat
    decision = Decision(A, B, "no_action", "pc1", 14.0)
    assert parse_decision(decision.to_frames()) == decision
    assert parse_decision_ack(DecisionAck(A).to_frames()) == DecisionAck(A)


def _msg(tag: bytes, **body: object) -> list[bytes]:
    return [tag, json.dumps(body).encode()]


HB = {"node_id": "node-1", "run_id": B, "sent_at": 1.0}
DEC = {"decision_id": A, "alert_id": B, "decision": "confirm", "officer": "pc1",
       "decided_at": 1.0}


@pytest.mark.parametrize(
    "parse,frames,reason",
    [
        (parse_ack, [ACK], "frames"),
        (parse_ack, [ACK, b"{}", b"{}"], "frames"),
        (parse_ack, [ACK, b"\xff"], "json"),
        (parse_ack, [ACK, b"[1]"], "json"),
        (parse_ack, [ACK, b" " * (MAX_CONTROL_BYTES + 1)], "control_size"),
        (parse_ack, _msg(ACK, status="stored"), "field"),
        (parse_ack, _msg(ACK, alert_id="A" * 32), "field"),
        (parse_nack, _msg(NACK, alert_id=A), "field"),
        (parse_nack, _msg(NACK, alert_id=7, reason="x"), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, node_id="n", run_id=B), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "node_id": ""}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "node_id": "n" * 65}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "run_id": "zz"}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "camera": 3}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "camera": "c" * 257}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "counts": [1]}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "counts": {"a": -1}}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "counts": {"a": True}}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "counts": {"a": 2**53}}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "counts": {"a" * 33: 1}}), "field"),
        (parse_heartbeat, _msg(HEARTBEAT, **{**HB, "counts": {str(i): 1 for i in range(33)}}),
         "field"),
        (parse_decision, _msg(DECISION, **{**DEC, "decision_id": "x"}), "field"),
        (parse_decision, _msg(DECISION, **{**DEC, "alert_id": None}), "field"),
        (parse_decision, _msg(DECISION, **{**DEC, "decision": "shoot"}), "decision"),
        (parse_decision, _msg(DECISION, **{**DEC, "officer": ""}), "field"),
        (parse_decision, _msg(DECISION, **{**DEC, "officer": "o" * 65}), "field"),
        (parse_decision, _msg(DECISION, **{**DEC, "decided_at": True}), "field"),
        (parse_decision, _msg(DECISION, **{**DEC, "decided_at": "now"}), "field"),
        (parse_decision_ack, _msg(DECISION_ACK), "field"),
        (parse_decision_ack, _msg(DECISION_ACK, decision_id="x" * 32), "field"),
    ],
)
def test_malformed_control_refused_with_reason(parse, frames: list[bytes], reason: str) -> None:
    with pytest.raises(MessageError) as ei:
        parse(frames)
    assert ei.value.reason == reason


def test_lenient_where_the_value_is_informational() -> None:
    assert parse_ack(_msg(ACK, alert_id=A, status={"x": 1})).status == "?"
    assert parse_nack(_msg(NACK, alert_id=A, reason="r" * 100)).reason == "r" * 40
    beat = parse_heartbeat(_msg(HEARTBEAT, **{**HB, "pending": "many", "extra": 1}))
    assert beat.pending == 0 and beat.camera == "" and beat.counts == {}
    assert parse_decision(_msg(DECISION, **{**DEC, "decided_at": 5})).decided_at == 5.0
