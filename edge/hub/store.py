"""The hub's SQLite store: alerts (header, probe crop, reference image, decision), nodes,
officer sessions, and per-camera statistics that outlive retention.

Why statistics live apart from alerts: the deployment record (faces seen, alerts, confirmed,
rejected) is public accountability data with no personal content, so it must survive the
purge of the alerts themselves. Deleted rows are overwritten (``secure_delete``) and the WAL
is truncated after purges so removed crops do not linger in the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.link.schema import DECISIONS, OUTCOMES, Alert, DeploymentInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts(
    alert_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    subject_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    category TEXT NOT NULL,
    score REAL NOT NULL,
    threshold REAL NOT NULL,
    captured_at REAL NOT NULL,
    decided_at REAL NOT NULL,
    frame_index INTEGER NOT NULL,
    bbox TEXT NOT NULL,
    reference_image_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    probe BLOB,
    reference BLOB,
    decision TEXT,
    officer TEXT,
    decision_at REAL,
    decision_id TEXT,
    decision_delivered INTEGER NOT NULL DEFAULT 0,
    decision_sent_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_received ON alerts(received_at);
CREATE INDEX IF NOT EXISTS alerts_undelivered ON alerts(decision_delivered, decision);
CREATE TABLE IF NOT EXISTS nodes(
    node_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    last_seen REAL NOT NULL,
    pending INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node_runs(
    node_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    counts TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY(node_id, run_id)
);
CREATE TABLE IF NOT EXISTS stats(
    node_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    alerts INTEGER NOT NULL DEFAULT 0,
    confirm INTEGER NOT NULL DEFAULT 0,
    reject INTEGER NOT NULL DEFAULT 0,
    no_action INTEGER NOT NULL DEFAULT 0,
    first_alert REAL,
    last_alert REAL,
    PRIMARY KEY(node_id, camera, deployment_id)
);
CREATE TABLE IF NOT EXISTS sessions(
    token_hash TEXT PRIMARY KEY,
    officer TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
"""

CARD_FIELDS = (
    "alert_id", "node_id", "camera", "deployment_id", "track_id", "subject_id", "display_name",
    "category", "score", "threshold", "captured_at", "decided_at", "frame_index", "bbox",
    "reference_image_id", "received_at", "decision", "officer", "decision_at",
    "final_at", "finalized", "outcome", "outcome_at",
)


SCHEMA_VERSION = 4
# user_version -> statements bringing a store of that version to the next. v0: stores written
# before the schema was versioned (the tables of _SCHEMA). Each step runs in one transaction.
_MIGRATIONS: dict[int, str] = {
    0: """
    CREATE TABLE IF NOT EXISTS audit_anchors(
        node_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        head TEXT NOT NULL,
        run_id TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    """,
    # v2: a decision stays undoable until final_at; outcomes after a decision, counted in stats
    1: """
    ALTER TABLE alerts ADD COLUMN final_at REAL;
    ALTER TABLE alerts ADD COLUMN finalized INTEGER NOT NULL DEFAULT 0;
    UPDATE alerts SET final_at=decision_at, finalized=1 WHERE decision IS NOT NULL;
    ALTER TABLE alerts ADD COLUMN outcome TEXT;
    ALTER TABLE alerts ADD COLUMN outcome_at REAL;
    ALTER TABLE alerts ADD COLUMN outcome_id TEXT;
    ALTER TABLE alerts ADD COLUMN outcome_officer TEXT;
    ALTER TABLE alerts ADD COLUMN outcome_delivered INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE alerts ADD COLUMN outcome_sent_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE stats ADD COLUMN outcomes TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE IF NOT EXISTS deployments(
        deployment_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        camera TEXT NOT NULL,
        authorising_officer TEXT NOT NULL,
        window_start REAL NOT NULL,
        window_end REAL NOT NULL,
        watchlist_size INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY(deployment_id, node_id)
    );
    CREATE INDEX IF NOT EXISTS alerts_pending_final ON alerts(finalized, final_at)
    """,
    # v3: web push subscriptions, each tied to the sign-in session that made it
    2: """
    CREATE TABLE IF NOT EXISTS push_subscriptions(
        endpoint TEXT PRIMARY KEY,
        p256dh TEXT NOT NULL,
        auth TEXT NOT NULL,
        officer TEXT NOT NULL,
        token_hash TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS push_by_session ON push_subscriptions(token_hash)
    """,
    # v4: the NATS fabric. How far this store has read each consumer (its SQLite is a view of
    # the stream, rebuilt from there when lost) and where each alert sits in the stream.
    3: """
    CREATE TABLE IF NOT EXISTS fabric_positions(
        consumer TEXT PRIMARY KEY,
        seq INTEGER NOT NULL
    );
    ALTER TABLE alerts ADD COLUMN fabric_seq INTEGER
    """,
}


def false_alert_rates(c: dict[str, Any]) -> dict[str, Any]:
    """False alerts per face seen (and as 1 in N) and as a share of decided alerts."""
    seen, rejected = c["faces_seen"], c["rejected"]
    decided = c["confirmed"] + c["rejected"] + c["no_action"]
    return {
        "false_alert_rate": rejected / seen if seen else None,
        "false_alert_one_in": round(seen / rejected) if rejected else None,
        "false_alert_share": rejected / decided if decided else None,
    }


class StoreError(EdgeError):
    """The hub database cannot be opened or used."""


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class HubStore:
    """All hub state in one SQLite file (thread-safe via one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open hub store {self.path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"hub store {self.path} has schema v{version}, newer than this "
                             f"edge reads (v{SCHEMA_VERSION}); upgrade edge")
        while version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, _MIGRATIONS[version].split(";")):
                    self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version={version + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            version += 1

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- audit anchors --------------------------------------------------------------------

    def anchor_audit(self, node_id: str, run_id: str, seq: int, head: str,
                     now: float) -> tuple[int, str] | None:
        """Keep the newest audit head a node reported. Returns the stored (seq, head) when the
        report goes back from it (a log cut short, replaced or rewritten), else None."""
        with self._lock:
            row = self._db.execute("SELECT seq, head FROM audit_anchors WHERE node_id=?",
                                   (node_id,)).fetchone()
            if row is not None and (seq < row["seq"] or (seq == row["seq"]
                                                          and head != row["head"])):
                return int(row["seq"]), str(row["head"])
            self._db.execute(
                "INSERT INTO audit_anchors(node_id, seq, head, run_id, received_at) "
                "VALUES(?,?,?,?,?) ON CONFLICT(node_id) DO UPDATE SET seq=excluded.seq, "
                "head=excluded.head, run_id=excluded.run_id, received_at=excluded.received_at",
                (node_id, seq, head, run_id, now))
        return None

    def note_deployment(self, node_id: str, camera: str, info: DeploymentInfo, now: float) -> None:
        """What a node's heartbeat says about its deployment (for the published record)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO deployments(deployment_id, node_id, camera, authorising_officer,"
                " window_start, window_end, watchlist_size, first_seen, last_seen)"
                " VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(deployment_id, node_id) DO UPDATE SET"
                " camera=excluded.camera, authorising_officer=excluded.authorising_officer,"
                " window_start=excluded.window_start, window_end=excluded.window_end,"
                " watchlist_size=excluded.watchlist_size, last_seen=excluded.last_seen",
                (info.deployment_id, node_id, camera, info.authorising_officer,
                 info.window_start, info.window_end, info.watchlist_size, now, now))

    def audit_anchors(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM audit_anchors ORDER BY node_id").fetchall()
        return {r["node_id"]: {"seq": r["seq"], "head": r["head"], "run_id": r["run_id"],
                               "received_at": r["received_at"]} for r in rows}

    # -- alerts -------------------------------------------------------------------------

    def insert_alert(
        self, alert: Alert, probe: bytes, reference: bytes | None, received_at: float,
        fabric_seq: int | None = None,
    ) -> bool:
        """Store an alert once; False when that alert_id is already stored (a re-send).

        ``fabric_seq``: its sequence number in the NATS alerts stream (to delete it there when
        a rejection purges the probe)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO alerts(alert_id, node_id, camera, deployment_id,"
                    " track_id, subject_id, display_name, category, score, threshold,"
                    " captured_at, decided_at, frame_index, bbox, reference_image_id,"
                    " received_at, probe, reference, fabric_seq) VALUES"
                    " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        alert.alert_id, alert.node_id, alert.camera, alert.deployment_id,
                        alert.track_id, alert.subject_id, alert.display_name, alert.category,
                        float(alert.score), float(alert.threshold), float(alert.captured_at),
                        float(alert.decided_at), alert.frame_index, json.dumps(alert.bbox),
                        alert.reference_image_id, received_at, probe, reference, fabric_seq,
                    ),
                )
                new = cur.rowcount == 1
                if new:
                    self._db.execute(
                        "INSERT INTO stats(node_id, camera, deployment_id, alerts, first_alert,"
                        " last_alert) VALUES (?,?,?,1,?,?) ON CONFLICT DO UPDATE SET"
                        " alerts=alerts+1, last_alert=excluded.last_alert",
                        (alert.node_id, alert.camera, alert.deployment_id, received_at,
                         received_at),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return new

    def _card(self, row: sqlite3.Row) -> dict[str, Any]:
        card = {k: row[k] for k in CARD_FIELDS}
        card["bbox"] = json.loads(card["bbox"])
        card["has_probe"] = bool(row["has_probe"])
        card["has_reference"] = bool(row["has_reference"])
        return card

    _SELECT = (
        "SELECT " + ", ".join(CARD_FIELDS) + ", probe IS NOT NULL AS has_probe,"
        " reference IS NOT NULL AS has_reference FROM alerts"
    )

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(self._SELECT + " WHERE alert_id=?", (alert_id,)).fetchone()
        return self._card(row) if row else None

    def list_alerts(self, open_only: bool = False, limit: int = 100,
                    deployment: str | None = None,
                    before: tuple[float, str] | None = None) -> list[dict[str, Any]]:
        """Newest first (``received_at``, then ``alert_id``, both descending); ``open_only`` =
        not yet decided; ``deployment``: only that one's; ``before`` = (received_at, alert_id)
        of the last card of the previous page: only those after it in that order."""
        conds: list[str] = []
        args: list[Any] = []
        if open_only:
            conds.append("decision IS NULL")
        if deployment is not None:
            conds.append("deployment_id=?")
            args.append(deployment)
        if before is not None:
            conds.append("(received_at < ? OR (received_at = ? AND alert_id < ?))")
            args += [before[0], before[0], before[1]]
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        with self._lock:
            rows = self._db.execute(
                self._SELECT + where + " ORDER BY received_at DESC, alert_id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [self._card(r) for r in rows]

    def alert_counts(self) -> dict[str, dict[str, int]]:
        """deployment_id -> {"total", "open"} alerts held."""
        with self._lock:
            rows = self._db.execute(
                "SELECT deployment_id, COUNT(*), SUM(decision IS NULL) FROM alerts"
                " GROUP BY deployment_id").fetchall()
        return {r[0]: {"total": int(r[1]), "open": int(r[2] or 0)} for r in rows}

    def count_alerts(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]

    def alert_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT alert_id FROM alerts")]

    def image(self, alert_id: str, which: str) -> bytes | None:
        col = {"probe": "probe", "reference": "reference"}[which]
        with self._lock:
            row = self._db.execute(
                f"SELECT {col} FROM alerts WHERE alert_id=?", (alert_id,)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    # -- decisions ----------------------------------------------------------------------

    def decide(
        self, alert_id: str, decision: str, officer: str, now: float, purge_probe: bool,
        undo_s: float = 0.0, defer: bool = False,
    ) -> tuple[str, dict[str, Any] | None]:
        """Record the first decision on an alert: ("ok"|"not_found"|"already", card).

        It stays undoable for ``undo_s``: only :meth:`finalize_due` counts it, purges a
        rejected probe and releases it to the node. ``defer``: never final here, even with
        no undo window (on the NATS fabric the stream makes it final: :meth:`apply_decision`).
        """
        if decision not in DECISIONS:
            raise ValueError("bad decision value")
        did = uuid.uuid4().hex
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT decision FROM alerts WHERE alert_id=?", (alert_id,)).fetchone()
                if row is None:
                    self._db.execute("ROLLBACK")
                    return "not_found", None
                if row["decision"] is not None:
                    self._db.execute("ROLLBACK")
                    return "already", self.get_alert(alert_id)
                self._db.execute(
                    "UPDATE alerts SET decision=?, officer=?, decision_at=?, decision_id=?,"
                    " decision_delivered=0, decision_sent_at=0, final_at=?, finalized=0"
                    " WHERE alert_id=?",
                    (decision, officer, now, did, now + max(0.0, undo_s), alert_id),
                )
                if undo_s <= 0 and not defer:
                    self._finalize(alert_id, purge_probe)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return "ok", self.get_alert(alert_id)

    def undo(self, alert_id: str, officer: str, now: float
             ) -> tuple[str, dict[str, Any] | None]:
        """Take back a decision inside its undo window: ("ok"|"not_found"|"not_decided"|
        "final"|"not_yours", card). Only the officer who decided may undo it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT decision, officer, finalized, final_at FROM alerts WHERE alert_id=?",
                    (alert_id,)).fetchone()
                status = ("not_found" if row is None else "not_decided" if row["decision"] is None
                          else "final" if row["finalized"] or now >= row["final_at"]
                          else "not_yours" if row["officer"] != officer else "ok")
                if status == "ok":
                    self._db.execute(
                        "UPDATE alerts SET decision=NULL, officer=NULL, decision_at=NULL,"
                        " decision_id=NULL, final_at=NULL WHERE alert_id=?", (alert_id,))
                self._db.execute("COMMIT" if status == "ok" else "ROLLBACK")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return status, self.get_alert(alert_id) if row is not None else None

    def finalize_due(self, now: float, purge_probe: bool) -> list[dict[str, Any]]:
        """Make every decision whose undo window has passed final; returns their cards."""
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT alert_id FROM alerts WHERE decision IS NOT NULL AND finalized=0"
                " AND final_at<=?", (now,))]
            if not ids:
                return []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for aid in ids:
                    self._finalize(aid, purge_probe)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return [c for c in (self.get_alert(a) for a in ids) if c is not None]

    # -- the NATS fabric: decisions and outcomes are events in the stream ----------------

    def due_decisions(self, now: float) -> list[dict[str, Any]]:
        """Decisions taken here whose undo window has passed, not yet final (to publish)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT alert_id, node_id, deployment_id, decision_id, decision, officer,"
                " decision_at FROM alerts WHERE decision IS NOT NULL AND finalized=0"
                " AND final_at<=?", (now,)).fetchall()
        return [dict(r) for r in rows]

    def apply_decision(self, alert_id: str, decision_id: str, decision: str, officer: str,
                       decided_at: float, purge_probe: bool
                       ) -> tuple[str, dict[str, Any] | None]:
        """A decision event read from the stream: the first per alert (in stream order) is
        final on every hub: ("ok"|"not_found"|"already", card).

        A decision of this hub not yet final (another hub's came first) is replaced by it.
        """
        if decision not in DECISIONS:
            raise ValueError("bad decision value")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT finalized FROM alerts WHERE alert_id=?", (alert_id,)).fetchone()
                if row is None or row["finalized"]:
                    self._db.execute("ROLLBACK")
                    return ("not_found" if row is None else "already"), None
                self._db.execute(
                    "UPDATE alerts SET decision=?, officer=?, decision_at=?, decision_id=?,"
                    " decision_delivered=1, final_at=? WHERE alert_id=?",
                    (decision, officer, decided_at, decision_id, decided_at, alert_id))
                self._finalize(alert_id, purge_probe)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return "ok", self.get_alert(alert_id)

    def rejected_in_stream(self, decided_before: float) -> list[tuple[str, int]]:
        """(alert_id, stream seq) of final rejections still in the alerts stream."""
        with self._lock:
            rows = self._db.execute(
                "SELECT alert_id, fabric_seq FROM alerts WHERE decision='reject' AND finalized=1"
                " AND fabric_seq IS NOT NULL AND decision_at<?", (decided_before,)).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def forget_fabric_seq(self, alert_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET fabric_seq=NULL WHERE alert_id=?", (alert_id,))

    def apply_outcome(self, alert_id: str, outcome_id: str, outcome: str, officer: str,
                      at: float) -> tuple[str, dict[str, Any] | None]:
        """An outcome event read from the stream: recorded once per alert, on every hub."""
        with self._lock:
            row = self._db.execute("SELECT outcome_id FROM alerts WHERE alert_id=?",
                                   (alert_id,)).fetchone()
        if row is not None and row["outcome_id"] == outcome_id:
            self.mark_outcome_delivered(outcome_id)  # this hub's own, back from the stream
            return "already", None
        status, card = self.set_outcome(alert_id, outcome, officer, at, outcome_id=outcome_id)
        if status == "ok":
            self.mark_outcome_delivered(outcome_id)
        return status, card

    def fabric_position(self, consumer: str) -> int:
        """The last stream sequence this store holds from ``consumer`` (0: none)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM fabric_positions WHERE consumer=?",
                                   (consumer,)).fetchone()
        return int(row[0]) if row else 0

    def set_fabric_position(self, consumer: str, seq: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO fabric_positions(consumer, seq) VALUES(?,?) ON CONFLICT(consumer)"
                " DO UPDATE SET seq=max(seq, excluded.seq)", (consumer, seq))

    def _finalize(self, alert_id: str, purge_probe: bool) -> None:
        """Count a decision and apply its consequences (inside the caller's transaction)."""
        row = self._db.execute(
            "SELECT node_id, camera, deployment_id, decision FROM alerts WHERE alert_id=?",
            (alert_id,)).fetchone()
        decision = row["decision"]
        if decision not in DECISIONS:  # also a column name below
            raise ValueError("bad decision value")
        self._db.execute("UPDATE alerts SET finalized=1 WHERE alert_id=?", (alert_id,))
        if decision == "reject" and purge_probe:
            # A false alert: the probe shows someone who is not the subject.
            self._db.execute("UPDATE alerts SET probe=NULL WHERE alert_id=?", (alert_id,))
        self._db.execute(
            f"UPDATE stats SET {decision}={decision}+1"
            " WHERE node_id=? AND camera=? AND deployment_id=?",
            (row["node_id"], row["camera"], row["deployment_id"]),
        )

    def set_outcome(self, alert_id: str, outcome: str, officer: str, now: float,
                    outcome_id: str | None = None) -> tuple[str, dict[str, Any] | None]:
        """Record what happened after a final decision, once: ("ok"|"not_found"|"not_final"|
        "already", card). Counted in the deployment record, sent to the node's audit log."""
        if outcome not in OUTCOMES:
            raise ValueError("bad outcome value")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT node_id, camera, deployment_id, finalized, outcome FROM alerts"
                    " WHERE alert_id=?", (alert_id,)).fetchone()
                status = ("not_found" if row is None else "not_final" if not row["finalized"]
                          else "already" if row["outcome"] is not None else "ok")
                if status != "ok":
                    self._db.execute("ROLLBACK")
                    return status, self.get_alert(alert_id) if row is not None else None
                self._db.execute(
                    "UPDATE alerts SET outcome=?, outcome_at=?, outcome_id=?, outcome_officer=?,"
                    " outcome_delivered=0, outcome_sent_at=0 WHERE alert_id=?",
                    (outcome, now, outcome_id or uuid.uuid4().hex, officer, alert_id))
                key = (row["node_id"], row["camera"], row["deployment_id"])
                st = self._db.execute(
                    "SELECT outcomes FROM stats WHERE node_id=? AND camera=? AND deployment_id=?",
                    key).fetchone()
                counts = json.loads(st["outcomes"]) if st is not None else {}
                counts[outcome] = counts.get(outcome, 0) + 1
                self._db.execute(
                    "UPDATE stats SET outcomes=? WHERE node_id=? AND camera=? AND deployment_id=?",
                    (json.dumps(counts, sort_keys=True), *key))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return "ok", self.get_alert(alert_id)

    def undelivered_outcomes(self, node_id: str | None = None, sent_before: float | None = None
                             ) -> list[dict[str, Any]]:
        q = ("SELECT outcome_id, alert_id, node_id, decision, outcome, outcome_officer, outcome_at"
             " FROM alerts WHERE outcome IS NOT NULL AND outcome_delivered=0")
        args: list[Any] = []
        if node_id is not None:
            q += " AND node_id=?"
            args.append(node_id)
        if sent_before is not None:
            q += " AND outcome_sent_at<=?"
            args.append(sent_before)
        with self._lock:
            return [dict(r) for r in self._db.execute(q, args).fetchall()]

    def mark_outcome_sent(self, outcome_id: str, now: float) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET outcome_sent_at=? WHERE outcome_id=?",
                             (now, outcome_id))

    def mark_outcome_delivered(self, outcome_id: str, node_id: str | None = None) -> bool:
        q = "UPDATE alerts SET outcome_delivered=1 WHERE outcome_id=? AND outcome_delivered=0"
        args: list[Any] = [outcome_id]
        if node_id is not None:
            q += " AND node_id=?"
            args.append(node_id)
        with self._lock:
            return self._db.execute(q, args).rowcount == 1

    def undelivered_decisions(
        self, node_id: str | None = None, sent_before: float | None = None
    ) -> list[dict[str, Any]]:
        """Decisions the node has not acked yet (optionally not sent since ``sent_before``)."""
        q = (
            "SELECT decision_id, alert_id, node_id, decision, officer, decision_at FROM alerts"
            " WHERE decision IS NOT NULL AND finalized=1 AND decision_delivered=0"
        )
        args: list[Any] = []
        if node_id is not None:
            q += " AND node_id=?"
            args.append(node_id)
        if sent_before is not None:
            q += " AND decision_sent_at<=?"
            args.append(sent_before)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [dict(r) for r in rows]

    def mark_decision_sent(self, decision_id: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE alerts SET decision_sent_at=? WHERE decision_id=?", (now, decision_id)
            )

    def mark_decision_delivered(self, decision_id: str, node_id: str | None = None) -> bool:
        q = "UPDATE alerts SET decision_delivered=1 WHERE decision_id=? AND decision_delivered=0"
        args: list[Any] = [decision_id]
        if node_id is not None:
            q += " AND node_id=?"
            args.append(node_id)
        with self._lock:
            return self._db.execute(q, args).rowcount == 1

    # -- nodes --------------------------------------------------------------------------

    def node_heartbeat(
        self, node_id: str, camera: str, run_id: str, counts: dict[str, int], pending: int,
        now: float,
    ) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO nodes(node_id, camera, last_seen, pending) VALUES (?,?,?,?)"
                " ON CONFLICT(node_id) DO UPDATE SET camera=excluded.camera,"
                " last_seen=excluded.last_seen, pending=excluded.pending",
                (node_id, camera, now, pending),
            )
            self._db.execute(
                "INSERT INTO node_runs(node_id, run_id, camera, counts, first_seen, last_seen)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT(node_id, run_id) DO UPDATE SET"
                " camera=excluded.camera, counts=excluded.counts, last_seen=excluded.last_seen",
                (node_id, run_id, camera, json.dumps(counts), now, now),
            )

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT node_id, camera, last_seen, pending FROM nodes ORDER BY node_id"
            ).fetchall()
        return [dict(r) for r in rows]

    # -- sessions -----------------------------------------------------------------------

    def create_session(self, officer: str, ttl_s: float) -> str:
        """A new random session token; only its sha256 is stored."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions VALUES (?,?,?,?)",
                (_hash_token(token), officer, now, now + ttl_s),
            )
        return token

    def session_officer(self, token: str | None) -> str | None:
        if not token or len(token) > 128:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT officer, expires FROM sessions WHERE token_hash=?", (_hash_token(token),)
            ).fetchone()
        if row is None or row["expires"] < time.time():
            return None
        return row["officer"]

    def delete_session(self, token: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE token_hash=?", (_hash_token(token),))
            self._db.execute("DELETE FROM push_subscriptions WHERE token_hash=?",
                             (_hash_token(token),))

    def delete_sessions_of(self, officer: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE officer=?", (officer,))
            self._db.execute("DELETE FROM push_subscriptions WHERE officer=?", (officer,))

    # -- web push -----------------------------------------------------------------------

    def add_push_subscription(self, token: str, officer: str, endpoint: str, p256dh: str,
                              auth: str) -> None:
        """Keep a tablet's push subscription for as long as the session ``token`` lives (the
        same endpoint subscribed again moves to the newer session)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO push_subscriptions VALUES (?,?,?,?,?,?)",
                (endpoint, p256dh, auth, officer, _hash_token(token), time.time()))

    def push_subscriptions(self) -> list[tuple[str, str, str]]:
        """(endpoint, p256dh, auth) of subscriptions whose session is still valid."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.endpoint, p.p256dh, p.auth FROM push_subscriptions p "
                "JOIN sessions s ON s.token_hash = p.token_hash WHERE s.expires >= ? "
                "ORDER BY p.created", (time.time(),)).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def delete_push_subscription(self, endpoint: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM push_subscriptions WHERE endpoint=?", (endpoint,))

    # -- retention ----------------------------------------------------------------------

    def purge(self, now: float, retention_s: float) -> dict[str, int]:
        """Delete alerts (crops, decisions) older than the retention period; expire sessions."""
        cutoff = now - retention_s
        with self._lock:
            n = self._db.execute("DELETE FROM alerts WHERE received_at < ?", (cutoff,)).rowcount
            s = self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,)).rowcount
            self._db.execute("DELETE FROM push_subscriptions WHERE token_hash NOT IN "
                             "(SELECT token_hash FROM sessions)")
            if n:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return {"alerts": n, "sessions": s}

    # -- deployment record --------------------------------------------------------------

    def deployment_record(self, deployment_id: str | None = None) -> dict[str, Any]:
        """Counts per camera: faces seen (node ledgers), alerts, confirmed, rejected, ..."""
        with self._lock:
            q = "SELECT * FROM stats"
            args: tuple[Any, ...] = ()
            if deployment_id is not None:
                q += " WHERE deployment_id=?"
                args = (deployment_id,)
            stats = [dict(r) for r in self._db.execute(q, args)]
            runs = [dict(r) for r in self._db.execute("SELECT * FROM node_runs")]
            dq = "SELECT * FROM deployments"
            deps = [dict(r) for r in self._db.execute(
                dq + (" WHERE deployment_id=?" if deployment_id is not None else "")
                + " ORDER BY deployment_id, node_id", args)]
        cams: dict[tuple[str, str], dict[str, Any]] = {}

        def cam(node_id: str, camera: str) -> dict[str, Any]:
            return cams.setdefault(
                (node_id, camera),
                {
                    "node_id": node_id, "camera": camera, "deployment_ids": [],
                    "alerts": 0, "confirmed": 0, "rejected": 0, "no_action": 0,
                    "undecided": 0, "outcomes": {}, "node_counts": {}, "node_runs": 0,
                    "first_alert": None, "last_alert": None,
                },
            )

        for s in stats:
            c = cam(s["node_id"], s["camera"])
            if s["deployment_id"] and s["deployment_id"] not in c["deployment_ids"]:
                c["deployment_ids"].append(s["deployment_id"])
            c["alerts"] += s["alerts"]
            c["confirmed"] += s["confirm"]
            c["rejected"] += s["reject"]
            c["no_action"] += s["no_action"]
            for k, v in json.loads(s["outcomes"] or "{}").items():
                c["outcomes"][k] = c["outcomes"].get(k, 0) + int(v)
            for k, fn in (("first_alert", min), ("last_alert", max)):
                if s[k] is not None:
                    c[k] = s[k] if c[k] is None else fn(c[k], s[k])
        for r in runs:
            c = cam(r["node_id"], r["camera"])
            c["node_runs"] += 1
            for k, v in json.loads(r["counts"]).items():
                if isinstance(v, int) and not isinstance(v, bool):
                    c["node_counts"][k] = c["node_counts"].get(k, 0) + v
        per_camera = sorted(cams.values(), key=lambda c: (c["node_id"], c["camera"]))
        totals: dict[str, Any] = {"faces_seen": 0, "alerts": 0, "confirmed": 0, "rejected": 0,
                                  "no_action": 0, "undecided": 0}
        outcomes: dict[str, int] = {}
        for c in per_camera:
            c["undecided"] = c["alerts"] - c["confirmed"] - c["rejected"] - c["no_action"]
            c["faces_seen"] = c["node_counts"].get("faces_seen", 0)
            c.update(false_alert_rates(c))
            for k in totals:
                totals[k] += c[k]
            for k, v in c["outcomes"].items():
                outcomes[k] = outcomes.get(k, 0) + v
        totals.update(false_alert_rates(totals))
        totals["outcomes"] = outcomes
        window = [d for d in deps if d["window_end"] > 0]
        return {
            "schema": "edge.deployment-record.v2",
            "generated_at": time.time(),
            "deployment_id": deployment_id,
            "deployments": [
                {k: d[k] for k in ("deployment_id", "node_id", "camera", "authorising_officer",
                                   "window_start", "window_end", "watchlist_size",
                                   "first_seen", "last_seen")} for d in deps],
            "window": ({"start": min(d["window_start"] for d in window),
                        "end": max(d["window_end"] for d in window)} if window else None),
            "watchlist_size": max((d["watchlist_size"] for d in deps), default=None),
            "totals": totals,
            "per_camera": per_camera,
            "notes": (
                "faces_seen comes from the nodes' deletion-ledger counts sent with heartbeats "
                "(summed over node runs); alert counts are kept after alerts are purged. "
                "false_alert_rate = rejected alerts / faces seen (false alerts per face that "
                "passed the camera, the figure forces publish as 1 in N); "
                "false_alert_share = rejected / decided alerts. Undecided alerts count in "
                "neither. Outcomes are recorded by officers after a final decision."
            ),
        }
