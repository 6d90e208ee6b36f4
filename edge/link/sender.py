"""The node's side of the link, minus the transport: the ``Sender`` interface and its base.

``OutboxSender`` holds everything that does not depend on how bytes travel. ``send`` writes the
encoded alert into the durable outbox (``edge.link.outbox``) and wakes a background thread.
That thread sends what is due, re-sends unacked alerts with back-off (and all of them at once
when the hub answers again, since whatever was in flight to a dead connection is lost),
removes acked alerts, drops nacked ones, appends each officer decision to the audit log once
and then acks it, and sends a heartbeat with the ledger counts and the health of every camera
every interval.

A transport is a subclass that implements five narrow methods: ``_open`` (connect),
``_transmit`` (hand one encoded message to the link without blocking), ``_wait`` (block for
messages from the hub or a wake-up), ``_wake`` and ``_close_link``. ``edge.link.zmq_sender``
is the ZeroMQ one; messages are built and validated by ``edge.link.schema`` only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, Self

from edge.errors import EdgeError
from edge.link.metrics import LinkMetrics
from edge.link.outbox import Outbox, OutboxError
from edge.link.schema import (
    ACK,
    DECISION,
    HEARTBEAT_ACK,
    MAX_CAMERA_REASON,
    MAX_CAMERAS,
    MAX_CONTROL_BYTES,
    MAX_COUNT,
    MAX_COUNT_NAME,
    MAX_COUNTS,
    MAX_TEXT,
    NACK,
    Ack,
    Alert,
    AuditHead,
    CameraHealth,
    Decision,
    DecisionAck,
    DeploymentInfo,
    Heartbeat,
    MessageError,
    Nack,
    camera_problem,
    encode,
    parse_ack,
    parse_decision,
    parse_nack,
)

log = logging.getLogger(__name__)


class Sender(Protocol):
    """What the node needs from its link to the hub (``edge.node.app`` wires one in)."""

    def start(self) -> Sender:
        """Open the outbox, connect, and start delivering in the background."""
        ...

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        """Queue one alert durably and return; delivery happens in the background."""
        ...

    def pending(self) -> int:
        """Alerts not yet acknowledged by the hub."""
        ...

    @property
    def hub_connected(self) -> bool:
        """True while the hub answers."""
        ...

    def close(self, timeout: float = 5.0, reason: str | None = "stopped") -> None:
        """Give pending alerts up to ``timeout`` s to be acked, then stop (the rest stays);
        the hub is told the node stopped, and why."""
        ...


class AuditRecorder(Protocol):
    """Where decisions and refusals are recorded (``edge.audit.AuditLog``)."""

    def append(self, kind: str, data: dict[str, Any]) -> object: ...


CountsProvider = Callable[[], Mapping[str, object]]
HealthProvider = Callable[[], Sequence[CameraHealth]]
AuditHeadProvider = Callable[[], tuple[int, str]]  # (seq, hash) of the audit log's last record

_SHORT_TEXT = 60  # label/reason length kept when a heartbeat would not fit MAX_CONTROL_BYTES


def _non_negative(value: object) -> float | None:
    """A finite float >= 0, or None for anything else (NaN, inf, negative, not a number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        f = float(value)
    except (OverflowError, ValueError):
        return None
    return f if math.isfinite(f) and f >= 0 else None


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return 0
    return max(0, min(int(value), MAX_COUNT - 1))


def clean_camera(c: object) -> CameraHealth | None:
    """The entry made wire-valid (texts cut, bad numbers zeroed), or None if it cannot be.

    Name and state are the entry's identity and meaning: when they break the rule it is dropped
    rather than guessed at. The hub refuses a whole heartbeat with one bad entry, so nothing
    else may reach it.
    """
    if not isinstance(c, CameraHealth):
        return None
    age = None if c.last_frame_age_s is None else _non_negative(c.last_frame_age_s)
    cleaned = CameraHealth(
        name=c.name,
        label=c.label[:MAX_TEXT] if isinstance(c.label, str) else "",
        state=c.state,
        fps=_non_negative(c.fps) or 0.0,
        last_frame_age_s=age,
        reconnects=_count(c.reconnects),
        frames=_count(c.frames),
        reason=c.reason[:MAX_CAMERA_REASON] if isinstance(c.reason, str) else "",
    )
    return cleaned if camera_problem(cleaned) is None else None


class OutboxSender(ABC):
    """Queue alerts durably and deliver them to the hub in the background (at-least-once).

    Subclasses supply the transport hooks. ``_open`` and ``_wake`` are called from the
    caller's threads; ``_transmit``, ``_wait`` and ``_close_link`` only from the sender thread.
    """

    def __init__(
        self,
        outbox_path: Path,
        node_id: str,
        audit: AuditRecorder | None = None,
        metrics: LinkMetrics | None = None,
        *,
        hub: str = "hub",
        camera: str = "",
        ack_timeout: float = 2.0,
        max_backoff: float = 10.0,
        heartbeat_interval: float = 1.0,
        max_in_flight: int = 64,
        counts: CountsProvider | None = None,
        health: HealthProvider | None = None,
        audit_head: AuditHeadProvider | None = None,
        deployment: DeploymentInfo | None = None,
    ) -> None:
        self.outbox_path = Path(outbox_path)
        self.node_id = node_id
        self.hub = hub  # names the hub in log lines
        self.camera = camera
        self.audit = audit
        self.metrics = metrics
        self.ack_timeout = ack_timeout
        self.max_backoff = max_backoff
        self.heartbeat_interval = heartbeat_interval
        self.max_in_flight = max_in_flight
        self.run_id = uuid.uuid4().hex
        self.counts_provider = counts  # called at each heartbeat; alternative to set_counts()
        self.health_provider = health  # called at each heartbeat: every camera's health
        self.audit_head_provider = audit_head  # called at each heartbeat: anchored at the hub
        self._stop_reason: str | None = None  # set by close(): the last heartbeat says so
        self.deployment = deployment  # in every heartbeat: the hub's deployment record
        self._health_warned: set[str] = set()  # each kind of bad health entry is logged once
        self._outbox: Outbox | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._last_hub_reply = 0.0
        self._connected = False
        self._closed = False

    # -- the transport ------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Connect (or start connecting) to the hub; raise EdgeError for a bad configuration."""

    @abstractmethod
    def _transmit(self, frames: list[bytes]) -> bool:
        """Hand one message to the link without blocking; False if it cannot take it now."""

    @abstractmethod
    def _wait(self, timeout: float) -> list[list[bytes]]:
        """Block up to ``timeout`` s for messages from the hub or a ``_wake``; return them."""

    @abstractmethod
    def _wake(self) -> None:
        """Make the current (or next) ``_wait`` return at once; safe from any thread."""

    @abstractmethod
    def _close_link(self) -> None:
        """Release the connection (the sender thread is stopping)."""

    # -- public API -----------------------------------------------------------------------

    def start(self) -> Self:
        """Open the outbox, connect, and start delivering (including leftovers from before)."""
        outbox = Outbox(self.outbox_path)
        try:
            outbox.forget_old_decisions()
            outbox.resend_all_now()
            left = outbox.pending()
            if left:
                log.info("outbox holds %d undelivered alert(s) from before; re-sending", left)
            self._open()
        except BaseException:
            outbox.close()
            raise
        self._outbox = outbox
        self._update_pending()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._thread.start()
        return self

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        """Durably queue one alert and return; delivery happens in the background."""
        if self._outbox is None:
            raise EdgeError(f"{type(self).__name__}.send called before start()")
        frames = encode(alert, jpeg, reference_jpeg)
        try:
            self._outbox.put(alert, frames)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write alert to outbox {self.outbox_path}: {exc}") from None
        if self.metrics is not None:
            self.metrics.alerts_queued.inc()
        self._wake()

    def pending(self) -> int:
        """Alerts not yet acknowledged by the hub."""
        return self._outbox.pending() if self._outbox is not None else 0

    @property
    def hub_connected(self) -> bool:
        """True when the hub answered within the last 3 heartbeat intervals."""
        return self._connected

    def set_counts(self, counts: Mapping[str, object]) -> None:
        """Cumulative ledger counts since node start (faces_seen, ...) sent with heartbeats.

        Only non-negative integer values are kept (at most 32 keys), so a stats snapshot can be
        passed as is: anything else (timings, nested dicts) is dropped.
        """
        clean: dict[str, int] = {}
        for k, v in counts.items():
            if (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0
                    or len(clean) >= MAX_COUNTS):
                continue
            clean[str(k)[:MAX_COUNT_NAME]] = int(v)
        with self._counts_lock:
            self._counts = clean

    def close(self, timeout: float = 5.0, reason: str | None = "stopped") -> None:
        """Give pending alerts up to ``timeout`` s to be acked, then stop (the rest stays).

        The sender thread's last act is a heartbeat with ``stopping=reason``, so the hub shows
        this node stopped (cleanly) rather than lost; ``reason=None`` sends none (as a crash).
        """
        if self._closed:
            return
        self._closed = True
        self._stop_reason = reason[:MAX_CAMERA_REASON] if reason is not None else None
        if self._thread is not None:
            deadline = time.monotonic() + max(0.0, timeout)
            while self.pending() and time.monotonic() < deadline:
                time.sleep(0.02)
            self._stop.set()
            self._wake()
            self._thread.join(timeout=5)
        if self._outbox is not None:
            left = self._outbox.pending()
            if left:
                log.warning("%d alert(s) not yet acked stay in the outbox for next start", left)
            self._outbox.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background thread ----------------------------------------------------------------

    def _backoff(self, attempts: int) -> float:
        return min(self.max_backoff, self.ack_timeout * (2 ** max(0, attempts - 1)))

    def _update_pending(self) -> None:
        if self.metrics is not None and self._outbox is not None:
            self.metrics.outbox_pending.set(self._outbox.pending())

    def _run(self) -> None:
        outbox = self._outbox
        assert outbox is not None
        next_hb = 0.0
        try:
            while not self._stop.is_set():
                now = time.time()
                if now >= next_hb:
                    sent = self._heartbeat(now)
                    # not connected yet: try again soon so the hub learns of us quickly
                    next_hb = now + (self.heartbeat_interval if sent else 0.05)
                    self._check_connected(now)
                blocked = self._send_due(outbox, now)
                nd = outbox.next_due()
                wait = next_hb - time.time()
                if nd is not None:
                    wait = min(wait, nd - time.time())
                if blocked:
                    wait = min(wait, 0.05)
                for frames in self._wait(max(0.0, min(1.0, wait))):
                    self._handle(frames)
        except Exception:  # never let the thread die silently; alerts stay in the outbox
            log.exception("alert sender thread failed; undelivered alerts remain in the outbox")
        else:
            if self._stop_reason is not None:
                self._goodbye()
        finally:
            self._close_link()

    def _goodbye(self) -> None:
        """One last heartbeat saying the node stops; best effort (the hub may be away)."""
        try:
            beat = self._beat(time.time())
            self._transmit(self._fit(dataclasses.replace(beat, stopping=self._stop_reason)))
        except Exception:
            log.debug("stop heartbeat not sent", exc_info=True)

    def _send_due(self, outbox: Outbox, now: float) -> bool:
        """Send due alerts; True if the link would block (no hub connection yet)."""
        for alert_id, attempts, frames in outbox.due(now, self.max_in_flight):
            if not self._transmit(frames):
                return True
            attempts += 1
            outbox.mark_sent(alert_id, attempts, now + self._backoff(attempts))
            if self.metrics is not None:
                self.metrics.alerts_sent.inc()
                if attempts > 1:
                    self.metrics.alerts_resent.inc()
        return False

    def _heartbeat(self, now: float) -> bool:
        if self.counts_provider is not None:
            try:
                self.set_counts(self.counts_provider())
            except Exception:  # counts are informational; never stop heartbeats over them
                log.exception("ledger counts provider failed")
                self.counts_provider = None
        return self._transmit(self._fit(self._beat(now)))

    def _beat(self, now: float) -> Heartbeat:
        with self._counts_lock:
            counts = dict(self._counts)
        return Heartbeat(
            node_id=self.node_id,
            camera=self.camera,
            run_id=self.run_id,
            sent_at=now,
            pending=self._outbox.pending() if self._outbox else 0,
            counts=counts,
            cameras=self._cameras(),
            audit=self._audit_head(),
            deployment=self.deployment,
        )

    def _audit_head(self) -> AuditHead | None:
        if self.audit_head_provider is None:
            return None
        try:
            seq, head = self.audit_head_provider()
        except Exception:  # never stop heartbeats over it
            log.exception("audit head provider failed; heartbeats go on without it")
            self.audit_head_provider = None
            return None
        return AuditHead(seq, head)

    def _health_warning(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._health_warned:
            self._health_warned.add(kind)
            log.warning(message, *args)

    def _cameras(self) -> tuple[CameraHealth, ...]:
        """The provider's camera health, wire-valid, unique names, at most MAX_CAMERAS."""
        if self.health_provider is None:
            return ()
        try:
            raw = list(self.health_provider())
        except Exception:  # health is informational; never stop heartbeats over it
            log.exception("camera health provider failed; heartbeats go on without cameras")
            self.health_provider = None
            return ()
        out: list[CameraHealth] = []
        names: set[str] = set()
        for item in raw:
            cam = clean_camera(item)
            if cam is None:
                self._health_warning("bad", "camera health entry dropped: bad name or state")
                continue
            if cam.name in names:
                self._health_warning("dup", "camera health entry dropped: name %s twice",
                                     cam.name)
                continue
            if len(out) == MAX_CAMERAS:
                self._health_warning("many", "only the first %d cameras' health is sent",
                                     MAX_CAMERAS)
                break
            names.add(cam.name)
            out.append(cam)
        return tuple(out)

    def _fit(self, beat: Heartbeat) -> list[bytes]:
        """The heartbeat's frames within MAX_CONTROL_BYTES (the hub refuses a larger one).

        Long labels and reasons are cut first; cameras are left off from the end only if even
        that is not enough (possible only with many long non-ASCII texts).
        """
        frames = beat.to_frames()
        if len(frames[1]) <= MAX_CONTROL_BYTES:
            return frames
        cams = [dataclasses.replace(c, label=c.label[:_SHORT_TEXT], reason=c.reason[:_SHORT_TEXT])
                for c in beat.cameras]
        while True:
            frames = dataclasses.replace(beat, cameras=tuple(cams)).to_frames()
            if len(frames[1]) <= MAX_CONTROL_BYTES or not cams:
                break
            cams.pop()
        self._health_warning("size", "heartbeat too large: camera texts cut, %d of %d camera(s) "
                             "sent", len(cams), len(beat.cameras))
        return frames

    def _check_connected(self, now: float) -> None:
        connected = now - self._last_hub_reply <= 3 * self.heartbeat_interval + 0.5
        if connected != self._connected:
            if connected:
                log.info("hub %s connected", self.hub)
            else:
                log.warning("hub %s not answering; alerts wait in the outbox", self.hub)
            self._connected = connected
            if self.metrics is not None:
                self.metrics.hub_connected.set(1 if connected else 0)

    def _refused(self, reason: str) -> None:
        log.warning("ignored malformed message from hub (%s)", reason)
        if self.metrics is not None:
            self.metrics.messages_refused.labels(reason).inc()

    def _handle(self, frames: list[bytes]) -> None:
        """One message from the hub; a malformed one is counted and ignored."""
        if not frames:
            return
        tag = frames[0]
        try:
            if tag == ACK:
                self._on_ack(parse_ack(frames))
            elif tag == NACK:
                self._on_nack(parse_nack(frames))
            elif tag == HEARTBEAT_ACK:
                self._on_hub_reply()
            elif tag == DECISION:
                self._on_decision(parse_decision(frames))
            else:
                self._refused("unknown_type")
        except MessageError as exc:
            self._refused(exc.reason)
        except Exception:  # e.g. audit log not writable: not acked, the hub re-sends
            log.exception("failed to handle a %s message from the hub", tag[:32])

    def _on_hub_reply(self) -> None:
        now = time.time()
        was = self._connected
        self._last_hub_reply = now
        self._check_connected(now)
        if not was and self._outbox is not None and self._outbox.pending():
            # The hub is (back) up: anything in flight to a dead connection is lost; resend now.
            self._outbox.resend_all_now()

    def _on_ack(self, ack: Ack) -> None:
        assert self._outbox is not None
        self._on_hub_reply()
        created = self._outbox.created_at(ack.alert_id)
        if created is None:
            return  # a second ack for an alert already removed
        if self.metrics is not None:  # counted before removal: pending()==0 implies counted
            self.metrics.alerts_acked.labels(ack.status).inc()
            self.metrics.ack_latency.observe(max(0.0, time.time() - created))
        self._outbox.remove(ack.alert_id)
        self._update_pending()

    def _on_nack(self, nack: Nack) -> None:
        assert self._outbox is not None
        # A refusal is permanent (the message itself is wrong): re-sending cannot help.
        if self._outbox.created_at(nack.alert_id) is not None:
            log.error("hub refused alert %s (%s); dropped from outbox", nack.alert_id, nack.reason)
            if self.metrics is not None:
                self.metrics.alerts_refused.labels(nack.reason).inc()
            if self.audit is not None:
                self.audit.append("alert.refused",
                                  {"alert_id": nack.alert_id, "reason": nack.reason})
            self._outbox.remove(nack.alert_id)
        self._update_pending()

    def _on_decision(self, decision: Decision) -> None:
        assert self._outbox is not None
        self._on_hub_reply()
        if not self._outbox.decision_seen(decision.decision_id):
            record = {
                "decision_id": decision.decision_id,
                "alert_id": decision.alert_id,
                "decision": decision.decision,
                "officer": decision.officer,
                "decided_at": decision.decided_at,
            }
            kind = "decision"
            if decision.outcome is not None:
                kind = "decision.outcome"
                record["outcome"] = decision.outcome
            if self.audit is not None:
                self.audit.append(kind, record)  # raises -> not acked -> hub resends
            else:
                log.info("decision %s on alert %s by %s (no audit log)",
                         decision.decision, decision.alert_id, decision.officer)
            self._outbox.mark_decision(decision.decision_id)
            if self.metrics is not None and decision.outcome is None:
                self.metrics.decisions_received.labels(decision.decision).inc()
        # Not taken now (link busy or down): the hub re-sends the decision until acked.
        self._transmit(DecisionAck(decision.decision_id).to_frames())
