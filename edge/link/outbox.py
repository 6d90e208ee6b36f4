"""The node's durable alert outbox: a SQLite table of encoded alerts awaiting a hub ack.

Why: an alert about a wanted person must not be lost because the hub or the link was down,
and must not be lost because the node restarted. A sender (``edge.link.sender``) writes each
encoded alert here (WAL, ``synchronous=FULL``: fsync'd before ``put`` returns) and deletes the
row only when the hub acks that alert id; the due/attempts columns drive its re-sends. The
hub de-duplicates by alert id, so delivery is at-least-once on the wire and exactly-once in
the hub's store. The decision ids the node has already written to its audit log are kept here
too, so a decision the hub re-sends is recorded once.

A corrupt file (a disk fault, a torn write outside SQLite's guarantees) is never deleted: it
is renamed aside as ``outbox.sqlite.corrupt-STAMP`` (0600; it holds matched alerts only),
every row that can still be read is copied into a fresh outbox and re-sent, and one log line
gives the counts. The schema carries ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`); files
of older versions are migrated in place, newer ones refused with one line.

Only matched alerts ever enter the outbox. Deleted rows are overwritten (``secure_delete``)
and the WAL is truncated whenever the outbox becomes empty, so a delivered probe crop does
not linger on the node's disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from edge.errors import EdgeError
from edge.link.schema import ALERT, Alert

log = logging.getLogger(__name__)

_DECISION_MEMORY_S = 40 * 86400  # longer than the hub's maximum retention (31 days)
SCHEMA_VERSION = 1
_SCHEMA = """
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
# user_version -> the statements that bring a file of that version to the next one.
# v0: files written before the schema was versioned; same tables, so stamping is the migration.
_MIGRATIONS: dict[int, str] = {0: ""}
_OUTBOX_COLS = ("alert_id", "created_at", "captured_at", "header", "jpeg", "reference")


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
        # (quarantine file, rows salvaged) when a corrupt outbox was moved aside at open
        self.recovered: tuple[Path, int] | None = None
        try:
            _open_private(self.path)
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as exc:
                # corruption only; a locked or unreadable file is not repaired by moving it
                if isinstance(exc, sqlite3.OperationalError) and not _is_corrupt(exc):
                    raise
                self._db = self._recover(exc)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError("integrity check failed: "
                                            + " ".join(str(check).split())[:200])
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(f"outbox {self.path} has schema v{version}, newer than this "
                                  f"edge reads (v{SCHEMA_VERSION}); upgrade edge")
            db.executescript(_SCHEMA)
            while version < SCHEMA_VERSION:
                db.executescript(_MIGRATIONS[version])
                version += 1
                db.execute(f"PRAGMA user_version={version}")
        except BaseException:
            db.close()
            raise
        return db

    def _recover(self, why: Exception) -> sqlite3.Connection:
        """Move the corrupt file aside (never delete it), salvage what reads, start afresh."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        qpath = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while qpath.exists():
            n += 1
            qpath = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, qpath)
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.replace(side, Path(str(qpath) + suffix))
        rows, decisions = _salvage(qpath)
        _open_private(self.path)
        db = self._connect()
        for row in rows:
            db.execute("INSERT OR IGNORE INTO outbox(alert_id, created_at, captured_at, header,"
                       " jpeg, reference, attempts, next_try) VALUES (?,?,?,?,?,?,0,0)", row)
        for d in decisions:
            db.execute("INSERT OR IGNORE INTO decisions_seen VALUES (?, ?)", d)
        self.recovered = (qpath, len(rows))
        log.error("outbox %s was corrupt (%s): moved to %s; %d queued alert(s) salvaged and "
                  "re-sent, %d decision id(s) kept", self.path, " ".join(str(why).split()),
                  qpath.name, len(rows),
                  len(decisions))
        return db

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


def _is_corrupt(exc: Exception) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "integrity" in text


def _salvage(path: Path) -> tuple[list[tuple], list[tuple]]:
    """Every outbox row and decision id that still reads from a corrupt file, row by row
    (a broken page loses the rows on it, not the rest)."""
    rows: list[tuple] = []
    decisions: list[tuple] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows, decisions
    try:
        for table, cols, out in (("outbox", _OUTBOX_COLS, rows),
                                 ("decisions_seen", ("decision_id", "received_at"), decisions)):
            try:
                top = db.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0
            except sqlite3.Error:
                top = 10_000  # the b-tree root is broken: probe a bounded range
            for rowid in range(1, min(int(top), 1_000_000) + 1):
                try:
                    row = db.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE rowid=?",
                                     (rowid,)).fetchone()
                except sqlite3.Error:
                    continue
                if row is not None and _plausible(table, row):
                    out.append(tuple(row))
    finally:
        db.close()
    return rows, decisions


def _plausible(table: str, row: tuple) -> bool:
    if table == "decisions_seen":
        return isinstance(row[0], str) and isinstance(row[1], (int, float))
    alert_id, created, captured, header, jpeg, _ref = row
    return (isinstance(alert_id, str) and isinstance(created, (int, float))
            and isinstance(captured, (int, float)) and isinstance(header, bytes)
            and isinstance(jpeg, bytes))
