"""The node's durable alert outbox: a SQLite table of encoded alerts awaiting a hub ack.

Why: an alert about a wanted person must not be lost because the hub or the link was down,
and must not be lost because the node restarted. A sender (``edge.link.sender``) writes each
encoded alert here (WAL, ``synchronous=FULL``: fsync'd before ``put`` returns) and deletes the
row only when the hub acks that alert id; the due/attempts columns drive its re-sends. The
hub de-duplicates by alert id, so delivery is at-least-once on the wire and exactly-once in
the hub's store. The decision ids the node has already written to its audit log are kept here
too, so a decision the hub re-sends is recorded once.

Only matched alerts ever enter the outbox. Deleted rows are overwritten (``secure_delete``)
and the WAL is truncated whenever the outbox becomes empty, so a delivered probe crop does
not linger on the node's disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from edge.errors import EdgeError
from edge.link.schema import ALERT, Alert

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
            frames = [ALERT, bytes(header), bytes(jpeg)]
            if ref is not None:
                frames.append(bytes(ref))
            out.append((alert_id, attempts, frames))
        return out

    def next_due(self) -> float | None:
        """When the earliest row is due again (None when empty): how long the sender may sleep."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_try) FROM outbox").fetchone()
        return row[0]

    def mark_sent(self, alert_id: str, attempts: int, next_try: float) -> None:
        """Record a transmission and when to try again if no ack arrives by then."""
        with self._lock:
            self._db.execute(
                "UPDATE outbox SET attempts=?, next_try=? WHERE alert_id=?",
                (attempts, next_try, alert_id),
            )

    def resend_all_now(self) -> None:
        """Make every row due: after a (re)connect, whatever was in flight may be lost."""
        with self._lock:
            self._db.execute("UPDATE outbox SET next_try=0")

    def created_at(self, alert_id: str) -> float | None:
        """When the alert was queued; None once acked (or never queued)."""
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
        """Alerts not yet acked by the hub."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def decision_seen(self, decision_id: str) -> bool:
        """True if this decision is already in the audit log (the hub re-sends until acked)."""
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM decisions_seen WHERE decision_id=?", (decision_id,)
                ).fetchone()
                is not None
            )

    def mark_decision(self, decision_id: str) -> None:
        """Remember a decision written to the audit log."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO decisions_seen VALUES (?, ?)", (decision_id, time.time())
            )

    def forget_old_decisions(self) -> None:
        """Drop decision ids older than any alert the hub can still hold."""
        with self._lock:
            self._db.execute(
                "DELETE FROM decisions_seen WHERE received_at < ?",
                (time.time() - _DECISION_MEMORY_S,),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
