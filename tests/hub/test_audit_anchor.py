"""The node's audit head travels in every heartbeat and is anchored at the hub: a log cut
short or rewritten after that no longer verifies against the hub's export; a head that goes
back is counted and logged once; the hub store's schema is versioned and migrates."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from edge.audit import AuditLog, record_hash, verify
from edge.hub.store import SCHEMA_VERSION, HubStore, StoreError
from edge.link.schema import HEARTBEAT_ACK, AuditHead, Heartbeat
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

EDGE = [sys.executable, "-m", "edge.cli"]
RUN = "f" * 32


def _anchored_log(tmp: Path, h: RunningHub, n: int = 6) -> tuple[Path, tuple[int, str]]:
    path = tmp / "audit.jsonl"
    log = AuditLog(path)
    for i in range(n):
        log.append("ledger", {"faces_seen": i})
    s = ZmqSender(tmp / "o.sqlite", h.endpoint, "node-1", None, log, heartbeat_interval=0.1,
                  audit_head=log.anchor).start()
    try:
        wait_for(lambda: h.store.audit_anchors().get("node-1", {}).get("seq") == log.seq,
                 what="audit head anchored at the hub")
    finally:
        s.close()
        log.close()
    a = h.store.audit_anchors()["node-1"]
    return path, (a["seq"], a["head"])


def test_truncation_and_rewrite_caught_against_the_hub_anchor(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    try:
        path, anchor = _anchored_log(tmp_path, h)
    finally:
        h.close()
    assert verify(path, anchor=anchor).ok
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-2]))  # the last two records cut off
    assert verify(path).ok  # the chain alone cannot tell
    res = verify(path, anchor=anchor)
    assert not res.ok and f"the hub holds seq {anchor[0]}" in res.error
    # a whole new chain of the same length (everything rewritten, hashes recomputed)
    prev, out = "0" * 64, []
    for line in lines:
        rec = json.loads(line)
        rec["data"] = {"faces_seen": 0}
        rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append(json.dumps(rec, separators=(",", ":")) + "\n")
    path.write_text("".join(out))
    assert verify(path).ok
    res = verify(path, anchor=anchor)
    assert not res.ok and "not the record the hub anchored" in res.error


def test_cli_export_anchors_then_verify(tmp_path: Path) -> None:
    cfg = hub_config(tmp_path)
    h = RunningHub(cfg)
    try:
        path, anchor = _anchored_log(tmp_path, h)
    finally:
        h.close()
    toml = tmp_path / "hub.toml"
    toml.write_text(f'[store]\npath = "{cfg.store.path}"\nofficers_file = '
                    f'"{cfg.store.officers_file}"\n')
    out = tmp_path / "anchors.json"
    r = subprocess.run([*EDGE, "hub", "--config", str(toml), "export-anchors", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["anchors"]["node-1"]["seq"] == anchor[0]
    ok = subprocess.run([*EDGE, "audit", "verify", str(path), "--anchors", str(out)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and f"the hub's seq {anchor[0]} is in the log" in ok.stdout
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
    bad = subprocess.run([*EDGE, "audit", "verify", str(path), "--anchors", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "cut off the end" in bad.stderr
    wrong = subprocess.run([*EDGE, "audit", "verify", str(path), "--anchors", str(out), "--node",
                            "nobody"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "no anchor for node nobody" in wrong.stderr


def test_a_head_that_goes_back_is_counted_logged_once_and_not_taken(tmp_path: Path,
                                                                    caplog) -> None:
    caplog.set_level(logging.WARNING, "edge.hub")
    h = RunningHub(hub_config(tmp_path))
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    try:
        d.connect(h.endpoint)
        for seq, head in ((10, "a" * 64), (4, "b" * 64), (3, "c" * 64), (10, "d" * 64)):
            d.send_multipart(Heartbeat("n-1", "", RUN, 1.0, 0, {}, (),
                                       AuditHead(seq, head)).to_frames())
            assert d.poll(10000) and d.recv_multipart()[0] == HEARTBEAT_ACK
        assert h.store.audit_anchors()["n-1"]["seq"] == 10
        assert h.store.audit_anchors()["n-1"]["head"] == "a" * 64
        reg = h.hub.metrics.registry
        assert metric(reg, "edge_hub_audit_regressions_total", {"node_id": "n-1"}) == 3
        lines = [r.getMessage() for r in caplog.records if "went back" in r.getMessage()]
        assert len(lines) == 1 and "seq 4" in lines[0] and "holds seq 10" in lines[0]
    finally:
        d.close()
        ctx.term()
        h.close()


def test_hub_store_schema_versioned_and_migrated(tmp_path: Path) -> None:
    from edge.hub.store import _SCHEMA

    path = tmp_path / "hub.sqlite"
    with sqlite3.connect(path) as c:  # a store as written before the schema was versioned
        c.executescript(_SCHEMA)
        c.execute("INSERT INTO nodes(node_id, camera, last_seen) VALUES('n1', 'c', 1.0)")
        c.execute("INSERT INTO alerts(alert_id, node_id, camera, deployment_id, track_id, "
                  "subject_id, display_name, category, score, threshold, captured_at, "
                  "decided_at, frame_index, bbox, reference_image_id, received_at, decision, "
                  "officer, decision_at, decision_id) VALUES ('" + "a" * 32 + "', 'n1', 'c', "
                  "'d', 1, 's', 'S', 'x', 0.7, 0.6, 1.0, 1.0, 0, '[1,2,3,4]', 's/0', 1.0, "
                  "'confirm', 'pc1', 2.0, '" + "b" * 32 + "')")
        assert c.execute("PRAGMA user_version").fetchone()[0] == 0
    s = HubStore(path)
    assert s._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert [n["node_id"] for n in s.nodes()] == ["n1"]  # data kept
    card = s.get_alert("a" * 32)
    assert card["decision"] == "confirm" and card["finalized"] == 1 and card["final_at"] == 2.0
    assert [d["decision_id"] for d in s.undelivered_decisions()] == ["b" * 32]
    assert s.anchor_audit("n1", RUN, 1, "e" * 64, 2.0) is None  # v1's table
    assert s.set_outcome("a" * 32, "spoken_to", "pc1", 3.0)[0] == "ok"  # v2's columns
    s.close()
    with sqlite3.connect(path) as c:
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this edge reads") as e:
        HubStore(path)
    assert "\n" not in str(e.value)
