"""A corrupt outbox is quarantined (never deleted), its readable rows salvaged and re-sent;
the schema is versioned with a tested migration from unversioned files; a newer schema is
refused with one line."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.outbox import SCHEMA_VERSION, Outbox, OutboxError
from edge.link.schema import encode
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, wait_for

pytestmark = pytest.mark.unit

JPEG = synthetic_jpeg(4, 160)


def _fill(path: Path, n: int) -> list[str]:
    box = Outbox(path)
    ids = []
    for i in range(n):
        a = synthetic_alert("node-1", "cam", i)
        box.put(a, encode(a, JPEG))
        ids.append(a.alert_id)
    box.mark_decision("e" * 32)
    box._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    box.close()
    return ids


def _corrupt_middle(path: Path) -> None:
    """Overwrite pages in the middle of the file with garbage, as a disk fault would."""
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    mid = (len(data) // page // 2) * page
    data[mid:mid + 2 * page] = b"\xde\xad\xbe\xef" * (page // 2)
    path.write_bytes(bytes(data))


def test_corrupt_outbox_quarantined_salvaged_and_resent(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR, "edge.link.outbox")
    path = tmp_path / "outbox.sqlite"
    ids = _fill(path, 40)
    _corrupt_middle(path)
    with pytest.raises(sqlite3.DatabaseError):  # the file really is damaged
        with sqlite3.connect(path) as c:
            c.execute("SELECT alert_id, jpeg FROM outbox").fetchall()
    box = Outbox(path)
    assert box.recovered is not None
    qpath, salvaged = box.recovered
    assert qpath.exists() and qpath.name.startswith("outbox.sqlite.corrupt-")
    assert stat.S_IMODE(qpath.stat().st_mode) == 0o600  # matched alerts only, still private
    assert 0 < salvaged < 40 and box.pending() == salvaged
    assert box.decision_seen("e" * 32)
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"{salvaged} queued alert(s) salvaged" in line and qpath.name in line
    assert "\n" not in line
    box.close()
    # and the salvaged alerts really reach a hub, intact
    h = RunningHub(hub_config(tmp_path))
    try:
        with ZmqSender(path, h.endpoint, "node-1", None, None, camera="cam") as s:
            wait_for(lambda: s.pending() == 0, what="salvaged alerts delivered")
        stored = {a["alert_id"] for a in h.store.list_alerts(limit=100)}
        assert len(stored) == salvaged and stored <= set(ids)
    finally:
        h.close()


def test_garbage_file_is_quarantined_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database" * 500)
    box = Outbox(path)
    assert box.recovered is not None and box.recovered[1] == 0 and box.pending() == 0
    assert box.recovered[0].read_bytes().startswith(b"this is not a database")
    box.close()


def test_unversioned_outbox_migrated_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    ids = _fill(path, 3)
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA user_version=0")  # as written before the schema was versioned
    box = Outbox(path)
    assert box.recovered is None and box.pending() == 3
    assert {r[0] for r in box.due(1e18, 10)} == set(ids)
    assert box._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    box.close()


def test_newer_schema_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    _fill(path, 1)
    with sqlite3.connect(path) as c:
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(OutboxError, match="newer than this edge reads") as e:
        Outbox(path)
    assert "\n" not in str(e.value)
    assert path.exists() and not list(tmp_path.glob("*.corrupt-*"))  # not touched
