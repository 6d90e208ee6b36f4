"""Deletion guarantee on disk, on the wire and in logs, with one real node run.

A test 'hub' (a raw ZeroMQ ROUTER) records every byte the node sends. The node runs in an
empty writable tree on a clip of six real people, one of whom is on the watchlist. Then:
- wire: only that person's alerts arrive; no other face's crop or embedding bytes do;
- disk: the node created only its audit log and outbox, and neither holds a non-match's data;
- logs: stdout/stderr at debug level hold no arrays.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import cv2
import numpy as np
import pytest
import zmq

from edge.link.schema import ALERT, decode
from tests.conftest import write_clip
from tests.privacy_helpers import FLOAT_RUN, HOLD_MARK, probes, save_watchlist, start_node, write_config


class RecordingHub:
    """Binds a ROUTER on loopback and keeps every multipart message it receives."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.messages: list[list[bytes]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(100):
                msg = self.sock.recv_multipart()
                self.messages.append(msg[1:])  # drop the routing identity

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture(scope="module")
def run(tmp_path_factory, engine, sample_images):
    from edge.node.demo import _enrolment_photo

    root = tmp_path_factory.mktemp("dwl")
    group = cv2.imread(str(sample_images / "t1.jpg"))
    people = sorted(engine.faces(group), key=lambda f: float(f.bbox[0]))
    enrolled = engine.faces(_enrolment_photo(group, people[1].bbox))[0].embedding
    frames = [cv2.resize(group[:, 8 * i: 8 * i + 1200], (900, 664)) for i in range(10)]
    clip = write_clip(root / "clip.mp4", frames)
    save_watchlist(root / "wl", root / "keys" / "wl.key", {"P2": enrolled})

    # what a non-match leaves behind if anything leaks: crops and embeddings of the others
    from tests.privacy_helpers import reference_patterns

    pats = reference_patterns(clip)
    nonmatch = {"crop": [], "embedding": []}
    for crop, emb in zip(pats["crop"], pats["embedding"], strict=True):
        if float(np.frombuffer(emb, np.float32) @ enrolled) < 0.3:
            nonmatch["crop"].append(probes(crop, "crop"))
            nonmatch["embedding"].append(emb)
    assert len(nonmatch["embedding"]) >= 40

    hub = RecordingHub()
    work = root / "work"
    work.mkdir()
    cfg = write_config(root / "node.toml", endpoint=f"tcp://127.0.0.1:{hub.port}",
                       extra='[audit]\nledger_interval_s = 0.5\n')
    before = {p for p in root.rglob("*")}
    node = start_node(work, clip, root / "wl", root / "keys" / "wl.key", cfg,
                      extra_args=[])
    try:
        node.wait_for(HOLD_MARK)
        import time

        time.sleep(1.5)  # let the sender deliver and heartbeat
    finally:
        out, err = node.stop()
        hub.close()
    created = sorted(p for p in root.rglob("*") if p not in before and p.is_file())
    return {"root": root, "work": work, "hub": hub, "out": out, "err": err, "created": created,
            "nonmatch": nonmatch}


def _contains_any(blob: bytes, patterns: dict[str, list[bytes]]) -> list[str]:
    return [k for k, pats in patterns.items() for p in pats if p in blob]


def test_wire_carries_only_the_match(run):
    msgs = run["hub"].messages
    assert msgs, "the node must have talked to the hub"
    alert_ids, subjects = set(), set()
    for m in msgs:
        if m[0] == ALERT:
            alert, jpeg = decode(m)
            alert_ids.add(alert.alert_id)
            subjects.add(alert.subject_id)
            assert jpeg[:2] == b"\xff\xd8"
    assert subjects == {"P2"}
    assert len(alert_ids) == 1, "one alert per track"
    wire = b"".join(b"".join(m) for m in msgs)
    assert _contains_any(wire, run["nonmatch"]) == []
    kinds = {m[0] for m in msgs}
    assert kinds <= {ALERT, b"edge.heartbeat.v1", b"edge.decision-ack.v1"}, kinds


def test_disk_holds_no_nonmatch_data(run):
    work = run["work"]
    rel = sorted(str(p.relative_to(work)) for p in run["created"] if work in p.parents)
    allowed = re.compile(r"^state/(audit\.jsonl|outbox\.sqlite(-wal|-shm|-journal)?)$")
    assert rel and all(allowed.match(r) for r in rel), rel
    assert not [p for p in run["created"] if work not in p.parents], "nothing outside the tree"
    for p in run["created"]:
        assert _contains_any(p.read_bytes(), run["nonmatch"]) == [], p
    records = [json.loads(ln) for ln in (work / "state" / "audit.jsonl").read_text().splitlines()]
    ledger = [r for r in records if r["kind"] == "ledger"]
    assert ledger and sum(r["data"]["faces_seen"] for r in ledger) >= 50
    assert sum(r["data"]["faces_discarded"] for r in ledger) >= 45
    for r in records:
        assert not FLOAT_RUN.search(json.dumps(r["data"]))
    db = sqlite3.connect(work / "state" / "outbox.sqlite")
    tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
    assert tables


def test_logs_hold_no_arrays(run):
    text = run["out"] + run["err"]
    assert "ALERT" in run["out"]
    assert not FLOAT_RUN.search(text)
    assert "[[" not in text and "array(" not in text
