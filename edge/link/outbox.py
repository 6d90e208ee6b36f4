"""Durable alert outbox on the node and the sender that drains it to the hub.

Why: an alert about a wanted person must not be lost because the hub or the link was down,
and must not be lost because the node restarted. ``AlertSender.send`` writes the encoded alert
into SQLite (WAL, ``synchronous=FULL``: fsync'd before it returns) and wakes a background
thread; the row is deleted only when the hub acks that alert id. Unacked alerts are re-sent
with back-off, and at once when the hub comes back. The hub de-duplicates by alert id, so
delivery is at-least-once on the wire and exactly-once in the hub's store.

The same connection brings officer decisions back; each is appended to the node's audit log
once (decision ids are remembered) and then acked to the hub.

Only matched alerts ever enter the outbox. Deleted rows are overwritten (``secure_delete``)
and the WAL is truncated whenever the outbox becomes empty, so a delivered probe crop does
not linger on the node's disk.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from edge.errors import EdgeError
from edge.link import zeromq as tp
from edge.link.metrics import LinkMetrics
from edge.link.schema import Alert, encode
from edge.link.zeromq import CurveConfig

log = logging.getLogger(__name__)

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_DECISION_MEMORY_S = 40 * 86400  # longer than the hub's maximum retention (31 days)


class OutboxError(EdgeError):
    """The outbox database cannot be opened or written."""


def _open_private(path: Path) -> None:
    """Create the DB file 0600 (and its directory 0700) before SQLite touches it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


class Outbox:
    """SQLite table of encoded alerts awaiting a hub ack (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            _open_private(self.path)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS outbox(
                    alert_id TEXT PRIMARY KEY,
                    created_at REAL NOT NULL,
                    captured_at REAL NOT NULL,
                    header BLOB NOT NULL,
                    jpeg BLOB NOT NULL,
                    reference BLOB,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_try REAL NOT NULL DEFAULT 0
                );
                CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_try);
                CREATE TABLE IF NOT EXISTS decisions_seen(
                    decision_id TEXT PRIMARY KEY,
                    received_at REAL NOT NULL
                );
                """
            )
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def put(self, alert: Alert, frames: list[bytes]) -> None:
        """Store one encoded alert durably (fsync'd on commit)."""
        ref = frames[3] if len(frames) > 3 else None
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox(alert_id, created_at, captured_at, header, jpeg,"
                " reference, attempts, next_try) VALUES (?,?,?,?,?,?,0,0)",
                (alert.alert_id, time.time(), alert.captured_at, frames[1], frames[2], ref),
            )

    def due(self, now: float, limit: int) -> list[tuple[str, int, list[bytes]]]:
        """Alerts whose (re)send time has come, oldest first: (alert_id, attempts, frames)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT alert_id, attempts, header, jpeg, reference FROM outbox"
                " WHERE next_try <= ? ORDER BY created_at LIMIT ?",
                (now, limit),
            ).fetchall()
        out = []
        for alert_id, attempts, header, jpeg, ref in rows:
            frames = [tp.ALERT, bytes(header), bytes(jpeg)]
            if ref is not None:
                frames.append(bytes(ref))
            out.append((alert_id, attempts, frames))
        return out

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try) FROM outbox").fetchone()
        return row[0]

    def mark_sent(self, alert_id: str, attempts: int, next_try: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts=?, next_try=? WHERE alert_id=?",
                (attempts, next_try, alert_id),
            )

    def resend_all_now(self) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET next_try=0")

    def created_at(self, alert_id: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT created_at FROM outbox WHERE alert_id=?", (alert_id,)
            ).fetchone()
        return row[0] if row else None

    def remove(self, alert_id: str) -> float | None:
        """Delete an acked alert; returns its created_at (None if it was already gone)."""
        with self._lock:
            row = self._db.execute(
                "SELECT created_at FROM outbox WHERE alert_id=?", (alert_id,)
            ).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM outbox WHERE alert_id=?", (alert_id,))
            empty = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
            if empty:
                # Nothing pending: fold the WAL back and truncate it so delivered
                # crops are not left in the log file.
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return row[0]

    def pending(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def decision_seen(self, decision_id: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM decisions_seen WHERE decision_id=?", (decision_id,)
                ).fetchone()
                is not None
            )

    def mark_decision(self, decision_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO decisions_seen VALUES (?, ?)", (decision_id, time.time())
            )

    def forget_old_decisions(self) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM decisions_seen WHERE received_at < ?",
                (time.time() - _DECISION_MEMORY_S,),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class AlertSender:
    """Queue alerts durably and deliver them to the hub in the background (at-least-once)."""

    def __init__(
        self,
        outbox_path: Path,
        endpoint: str,
        node_id: str,
        curve: CurveConfig | None = None,
        audit: Any | None = None,
        metrics: LinkMetrics | None = None,
        *,
        camera: str = "",
        ack_timeout: float = 2.0,
        max_backoff: float = 10.0,
        heartbeat_interval: float = 1.0,
        max_in_flight: int = 64,
        counts: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.outbox_path = Path(outbox_path)
        self.endpoint = endpoint
        self.node_id = node_id
        self.camera = camera
        self.curve = curve
        self.audit = audit
        self.metrics = metrics
        self.ack_timeout = ack_timeout
        self.max_backoff = max_backoff
        self.heartbeat_interval = heartbeat_interval
        self.max_in_flight = max_in_flight
        self.run_id = uuid.uuid4().hex
        self._outbox: Outbox | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._counts: dict[str, int] = {}
        self.counts_provider = counts  # called at each heartbeat; alternative to set_counts()
        self._counts_lock = threading.Lock()
        self._last_hub_reply = 0.0
        self._connected = False
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._closed = False

    # -- public API -----------------------------------------------------------------------

    def start(self) -> AlertSender:
        """Open the outbox, connect, and start delivering (including leftovers from before)."""
        self._outbox = Outbox(self.outbox_path)
        self._outbox.forget_old_decisions()
        self._outbox.resend_all_now()
        left = self._outbox.pending()
        if left:
            log.info("outbox holds %d undelivered alert(s) from before; re-sending", left)
        self._ctx = zmq.Context()
        try:
            self._sock = tp.node_socket(self._ctx, self.endpoint, self.curve)
        except BaseException:
            self._ctx.term()
            self._ctx = None
            self._outbox.close()
            self._outbox = None
            raise
        self._update_pending()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._thread.start()
        return self

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        """Durably queue one alert and return; delivery happens in the background."""
        if self._outbox is None:
            raise EdgeError("AlertSender.send called before start()")
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
        """True when the hub answered a heartbeat within the last 3 intervals."""
        return self._connected

    def set_counts(self, counts: dict[str, int]) -> None:
        """Cumulative ledger counts since node start (faces_seen, ...) sent with heartbeats.

        Only non-negative integer values are kept (at most 32 keys), so a stats snapshot can be
        passed as is: anything else (timings, nested dicts) is dropped.
        """
        clean: dict[str, int] = {}
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 or len(clean) >= 32:
                continue
            clean[str(k)[:32]] = int(v)
        with self._counts_lock:
            self._counts = clean

    def close(self, timeout: float = 5.0) -> None:
        """Give pending alerts up to ``timeout`` s to be acked, then stop (the rest stays)."""
        if self._closed:
            return
        self._closed = True
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
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> AlertSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background thread ----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    def _backoff(self, attempts: int) -> float:
        return min(self.max_backoff, self.ack_timeout * (2 ** max(0, attempts - 1)))

    def _update_pending(self) -> None:
        if self.metrics is not None and self._outbox is not None:
            self.metrics.outbox_pending.set(self._outbox.pending())

    def _run(self) -> None:
        assert self._sock is not None and self._outbox is not None and self._ctx is not None
        sock = self._sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        next_hb = 0.0
        try:
            while not self._stop.is_set():
                now = time.time()
                if now >= next_hb:
                    sent = self._heartbeat(sock, now)
                    # not connected yet: try again soon so the hub learns of us quickly
                    next_hb = now + (self.heartbeat_interval if sent else 0.05)
                    self._check_connected(now)
                blocked = self._send_due(sock, now)
                nd = self._outbox.next_due()
                wait = next_hb - time.time()
                if nd is not None:
                    wait = min(wait, nd - time.time())
                if blocked:
                    wait = min(wait, 0.05)
                timeout_ms = max(0, min(1000, int(wait * 1000) + 1))
                events = dict(poller.poll(timeout_ms))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                if sock in events:
                    self._drain(sock)
        except Exception:  # never let the thread die silently; alerts stay in the outbox
            log.exception("alert sender thread failed; undelivered alerts remain in the outbox")
        finally:
            sock.close(0)
            self._ctx.term()

    def _send_due(self, sock: zmq.Socket, now: float) -> bool:
        """Send due alerts; True if the socket would block (no hub connection yet)."""
        assert self._outbox is not None
        for alert_id, attempts, frames in self._outbox.due(now, self.max_in_flight):
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                return True
            attempts += 1
            self._outbox.mark_sent(alert_id, attempts, now + self._backoff(attempts))
            if self.metrics is not None:
                self.metrics.alerts_sent.inc()
                if attempts > 1:
                    self.metrics.alerts_resent.inc()
        return False

    def _heartbeat(self, sock: zmq.Socket, now: float) -> bool:
        if self.counts_provider is not None:
            try:
                self.set_counts(self.counts_provider())
            except Exception:  # counts are informational; never stop heartbeats over them
                log.exception("ledger counts provider failed")
                self.counts_provider = None
        with self._counts_lock:
            counts = dict(self._counts)
        body = {
            "node_id": self.node_id,
            "camera": self.camera,
            "run_id": self.run_id,
            "sent_at": now,
            "pending": self._outbox.pending() if self._outbox else 0,
            "counts": counts,
        }
        try:
            sock.send_multipart(tp.control(tp.HEARTBEAT, body), zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def _check_connected(self, now: float) -> None:
        connected = now - self._last_hub_reply <= 3 * self.heartbeat_interval + 0.5
        if connected != self._connected:
            if connected:
                log.info("hub %s connected", self.endpoint)
            else:
                log.warning("hub %s not answering; alerts wait in the outbox", self.endpoint)
            self._connected = connected
            if self.metrics is not None:
                self.metrics.hub_connected.set(1 if connected else 0)

    def _refused(self, reason: str) -> None:
        log.warning("ignored malformed message from hub (%s)", reason)
        if self.metrics is not None:
            self.metrics.messages_refused.labels(reason).inc()

    def _drain(self, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not frames:
                continue
            tag = frames[0]
            try:
                if tag == tp.ACK:
                    self._on_ack(tp.parse_control(frames, ("alert_id",)))
                elif tag == tp.NACK:
                    self._on_nack(tp.parse_control(frames, ("alert_id", "reason")))
                elif tag == tp.HEARTBEAT_ACK:
                    self._on_hub_reply()
                elif tag == tp.DECISION:
                    self._on_decision(sock, tp.parse_control(frames, ("decision_id",)))
                else:
                    self._refused("unknown_type")
            except tp.MessageError as exc:
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

    def _on_ack(self, body: dict[str, Any]) -> None:
        assert self._outbox is not None
        self._on_hub_reply()
        alert_id = body["alert_id"]
        if not isinstance(alert_id, str) or not _HEX32.match(alert_id):
            raise tp.MessageError("field", "bad alert_id in ack")
        created = self._outbox.created_at(alert_id)
        if created is None:
            return  # a second ack for an alert already removed
        if self.metrics is not None:  # counted before removal: pending()==0 implies counted
            status = body.get("status") if body.get("status") in ("stored", "duplicate") else "?"
            self.metrics.alerts_acked.labels(status).inc()
            self.metrics.ack_latency.observe(max(0.0, time.time() - created))
        self._outbox.remove(alert_id)
        self._update_pending()

    def _on_nack(self, body: dict[str, Any]) -> None:
        assert self._outbox is not None
        alert_id, reason = body["alert_id"], str(body["reason"])[:40]
        if not isinstance(alert_id, str) or not _HEX32.match(alert_id):
            raise tp.MessageError("field", "bad alert_id in nack")
        # A refusal is permanent (the message itself is wrong): re-sending cannot help.
        if self._outbox.created_at(alert_id) is not None:
            log.error("hub refused alert %s (%s); dropped from outbox", alert_id, reason)
            if self.metrics is not None:
                self.metrics.alerts_refused.labels(reason).inc()
            if self.audit is not None:
                self.audit.append("alert.refused", {"alert_id": alert_id, "reason": reason})
            self._outbox.remove(alert_id)
        self._update_pending()

    def _on_decision(self, sock: zmq.Socket, body: dict[str, Any]) -> None:
        assert self._outbox is not None
        self._on_hub_reply()
        did = body.get("decision_id")
        aid = body.get("alert_id")
        decision = body.get("decision")
        officer = body.get("officer")
        decided_at = body.get("decided_at")
        if not (isinstance(did, str) and _HEX32.match(did)):
            raise tp.MessageError("field", "bad decision_id")
        if not (isinstance(aid, str) and _HEX32.match(aid)):
            raise tp.MessageError("field", "bad alert_id in decision")
        if decision not in tp.DECISIONS:
            raise tp.MessageError("decision", "bad decision value")
        if not (isinstance(officer, str) and 0 < len(officer) <= 64):
            raise tp.MessageError("field", "bad officer")
        if isinstance(decided_at, bool) or not isinstance(decided_at, (int, float)):
            raise tp.MessageError("field", "bad decided_at")
        if not self._outbox.decision_seen(did):
            record = {
                "decision_id": did,
                "alert_id": aid,
                "decision": decision,
                "officer": officer,
                "decided_at": float(decided_at),
            }
            if self.audit is not None:
                self.audit.append("decision", record)  # raises -> not acked -> hub resends
            else:
                log.info("decision %s on alert %s by %s (no audit log)", decision, aid, officer)
            self._outbox.mark_decision(did)
            if self.metrics is not None:
                self.metrics.decisions_received.labels(decision).inc()
        try:
            sock.send_multipart(tp.control(tp.DECISION_ACK, {"decision_id": did}), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the hub re-sends until acked
