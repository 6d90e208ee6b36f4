"""A second transport is one small class against the link's outbox base and message schema.

``QueueSender`` below is a complete transport (an in-process queue pair to a fake hub loop in a
thread), written only against ``edge.link.sender.OutboxSender`` and ``edge.link.schema``: it
delivers alerts, gets acks, receives a decision and writes it once to the audit log, and keeps
alerts in the durable outbox while its hub is down. A fleet transport (NATS JetStream, ...)
plugs in the same way.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest

from edge.audit import AuditLog, read_records, verify
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.schema import (
    ALERT,
    DECISION_ACK,
    HEARTBEAT,
    Ack,
    Decision,
    HeartbeatAck,
    decode,
    new_alert_id,
    parse_decision_ack,
    parse_heartbeat,
)
from edge.link.sender import AuditRecorder, OutboxSender, Sender
from tests.hub_helpers import wait_for

pytestmark = pytest.mark.unit

JPEG = synthetic_jpeg(9)
DECISION_RESENDS = 3


class QueueHub:
    """A hub loop in a thread behind two queues; while ``up`` is clear it is unreachable."""

    def __init__(self) -> None:
        self.to_hub: queue.Queue[list[bytes]] = queue.Queue()
        self.to_node: queue.Queue[list[bytes] | None] = queue.Queue()  # None: a wake-up
        self.up = threading.Event()
        self.stored: list[str] = []
        self.decision: Decision | None = None
        self.acked_decisions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frames = self.to_hub.get(timeout=0.02)
            except queue.Empty:
                continue
            if frames[0] == ALERT:
                alert, _ = decode(frames)
                new = alert.alert_id not in self.stored
                if new:
                    self.stored.append(alert.alert_id)
                self.to_node.put(Ack(alert.alert_id, "stored" if new else "duplicate").to_frames())
                if self.decision is None:
                    self.decision = Decision(new_alert_id(), alert.alert_id, "confirm", "pc1",
                                             time.time())
            elif frames[0] == HEARTBEAT:
                beat = parse_heartbeat(frames)
                self.to_node.put(HeartbeatAck(beat.sent_at, time.time()).to_frames())
                if self.decision is not None and len(self.acked_decisions) < DECISION_RESENDS:
                    self.to_node.put(self.decision.to_frames())  # re-sent: the node must dedupe
            elif frames[0] == DECISION_ACK:
                self.acked_decisions.append(parse_decision_ack(frames).decision_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class QueueSender(OutboxSender):
    """The whole second transport: the five hooks, over the hub's queues."""

    def __init__(self, outbox: Path, hub: QueueHub, audit: AuditRecorder | None) -> None:
        super().__init__(outbox, "node-q", audit, hub="queue-hub", ack_timeout=0.2,
                         max_backoff=0.5, heartbeat_interval=0.1)
        self.link = hub

    def _open(self) -> None:
        pass  # nothing to dial: the queues exist

    def _transmit(self, frames: list[bytes]) -> bool:
        if not self.link.up.is_set():
            return False  # like a link with no connection: the base keeps it in the outbox
        self.link.to_hub.put(frames)
        return True

    def _wait(self, timeout: float) -> list[list[bytes]]:
        try:
            got = [self.link.to_node.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                got.append(self.link.to_node.get_nowait())
            except queue.Empty:
                return [m for m in got if m is not None]

    def _wake(self) -> None:
        self.link.to_node.put(None)

    def _close_link(self) -> None:
        pass


def test_second_transport_delivers_acks_decisions_and_keeps_alerts_while_hub_down(
    tmp_path: Path,
) -> None:
    hub = QueueHub()
    audit = AuditLog(tmp_path / "audit.jsonl")
    box = tmp_path / "node" / "outbox.sqlite"
    sender: Sender = QueueSender(box, hub, audit).start()
    try:
        ids = []
        for i in range(3):
            a = synthetic_alert("node-q", n=i)
            sender.send(a, JPEG)
            ids.append(a.alert_id)
        time.sleep(0.4)
        assert sender.pending() == 3 and not sender.hub_connected and hub.stored == []

        hub.up.set()
        wait_for(lambda: sender.pending() == 0, what="outbox delivered once the hub is up")
        assert sorted(hub.stored) == sorted(ids)
        wait_for(lambda: sender.hub_connected, what="connected")
        wait_for(lambda: len(hub.acked_decisions) >= DECISION_RESENDS, what="decision acks")
        assert hub.decision is not None and set(hub.acked_decisions) == {hub.decision.decision_id}

        hub.up.clear()
        late = synthetic_alert("node-q", n=9)
        sender.send(late, JPEG)
        wait_for(lambda: not sender.hub_connected, what="hub noticed down")
        assert sender.pending() == 1 and late.alert_id not in hub.stored
    finally:
        sender.close(timeout=0)
        hub.close()
        audit.close()

    records = [r for r in read_records(tmp_path / "audit.jsonl") if r["kind"] == "decision"]
    assert len(records) == 1  # delivered DECISION_RESENDS times, written once
    assert records[0]["data"] == {
        "decision_id": hub.decision.decision_id, "alert_id": hub.decision.alert_id,
        "decision": "confirm",
        "officer": "pc1", "decided_at": hub.decision.decided_at,
    }
    assert hub.decision.alert_id in ids and verify(tmp_path / "audit.jsonl").ok
    down = QueueHub()
    again = QueueSender(box, down, None).start()  # the undelivered alert survived the restart
    try:
        assert again.pending() == 1
    finally:
        again.close(timeout=0)
        down.close()
