"""Hash-chained audit log: chain continuity, tamper detection, the no-biometrics guard, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edge.audit import GENESIS, AuditLog, canonical_json, verify
from edge.errors import EdgeError

pytestmark = pytest.mark.unit

EDGE = [sys.executable, "-m", "edge.cli"]


def _write(path: Path, n: int) -> list[dict]:
    with AuditLog(path) as log:
        return [log.append("ledger", {"seen": i, "discarded": i, "alerted": 0,
                                      "zeroize_ms_p99": 0.5, "note": "Zoë"})
                for i in range(n)]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_records_follow_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "audit.jsonl"  # parents are created
    recs = _write(path, 3)
    on_disk = [json.loads(line) for line in _lines(path)]
    assert on_disk == recs
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["prev"] == GENESIS
    for i, rec in enumerate(recs):
        assert set(rec) == {"seq", "ts", "kind", "data", "prev", "hash"}
        body = {k: v for k, v in rec.items() if k != "hash"}
        expect = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False).encode()).hexdigest()
        assert rec["hash"] == expect
        if i:
            assert rec["prev"] == recs[i - 1]["hash"]
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    res = verify(path)
    assert res.ok and res.records == 3 and res.error is None and res.head == recs[-1]["hash"]


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = _write(path, 2)
    with AuditLog(path) as log:
        assert log.seq == 2 and log.head == first[-1]["hash"]
        rec = log.append("node.start", {"node_id": "cam-1"})
    assert rec["seq"] == 3 and rec["prev"] == first[-1]["hash"]
    assert verify(path).ok and verify(path).records == 3


def test_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path).close()
    res = verify(path)
    assert res.ok and res.records == 0 and res.head == GENESIS


def test_edited_record_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    lines = _lines(path)
    lines[2] = lines[2].replace(b'"seen":2', b'"seen":0')
    path.write_bytes(b"".join(lines))
    res = verify(path)
    assert not res.ok and res.first_bad_seq == 3 and res.records == 2
    assert "edited" in res.error


def test_edit_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 4)
    lines = _lines(path)
    rec = json.loads(lines[1])
    rec["data"]["alerted"] = 99
    rec["hash"] = hashlib.sha256(canonical_json({k: v for k, v in rec.items()
                                                 if k != "hash"})).hexdigest()
    lines[1] = json.dumps(rec).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    res = verify(path)
    assert not res.ok and res.first_bad_seq == 3 and "prev" in res.error


def test_deleted_record_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    lines = _lines(path)
    del lines[1]
    path.write_bytes(b"".join(lines))
    res = verify(path)
    assert not res.ok and res.first_bad_seq == 2 and "found seq 3" in res.error


def test_reordered_records_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    lines = _lines(path)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    res = verify(path)
    assert not res.ok and res.first_bad_seq == 4


def test_torn_last_line_detected_then_moved_aside_at_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # a power cut in the middle of writing record 3
    res = verify(path)
    assert not res.ok and res.first_bad_seq == 3 and "truncated" in res.error
    with AuditLog(path) as log:  # the node starts: recovers, and goes on
        assert log.recovered is not None
        qpath, n = log.recovered
        assert qpath.parent == tmp_path and qpath.read_bytes() == data[:-10].split(b"\n")[-1]
        assert n == len(qpath.read_bytes()) and (qpath.stat().st_mode & 0o077) == 0
        log.append("ledger", {"seen": 9})
    res = verify(path)
    assert res.ok and res.records == 4, res.error  # 2 whole + recovered + the new one
    (note,) = res.notes
    assert f"{n} bytes" in note and qpath.name in note and "after seq 2" in note
    recs = [json.loads(x) for x in _lines(path)]
    assert [r["kind"] for r in recs] == ["ledger", "ledger", "audit.recovered", "ledger"]
    # a whole last line that lost only its newline is moved aside too (no silent fork)
    path.write_bytes(path.read_bytes()[:-1])
    with AuditLog(path) as log:
        assert log.recovered is not None and log.recovered[1] > 100
    assert verify(path).ok
    assert len(list(tmp_path.glob("audit.jsonl.torn-*"))) == 2  # evidence is never deleted
    # a file that is one torn line only
    solo = tmp_path / "solo.jsonl"
    solo.write_bytes(b'{"seq":1,"ts"')
    with AuditLog(solo) as log:
        assert log.seq == 1 and log.recovered is not None
    assert verify(solo).ok



def test_corrupt_last_record_refused_on_open(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 2)
    lines = _lines(path)
    lines[-1] = lines[-1].replace(b'"seen":1', b'"seen":7')
    path.write_bytes(b"".join(lines))
    with pytest.raises(EdgeError, match="fails its hash"):
        AuditLog(path)
    path.write_bytes(lines[0] + b"{not json}\n")
    with pytest.raises(EdgeError, match="corrupt last record"):
        AuditLog(path)


def test_cut_off_tail_detected_with_expected_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    recs = _write(path, 4)
    path.write_bytes(b"".join(_lines(path)[:3]))
    assert verify(path).ok  # a chain alone cannot see this ...
    res = verify(path, expect_head=recs[-1]["hash"])  # ... an anchored head can
    assert not res.ok and "expected head" in res.error


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    other = AuditLog(path)  # e.g. a second process/handle on the same file

    def work(lg: AuditLog) -> None:
        for i in range(50):
            lg.append("decision", {"i": i})

    threads = [threading.Thread(target=work, args=(lg,)) for lg in (log, log, other, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    other.close()
    res = verify(path)
    assert res.ok and res.records == 200


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"emb": np.zeros(128, np.float32)}, "data.emb"),
        ({"crop": b"\xff\xd8jpeg"}, "data.crop"),
        ({"x": {"y": bytearray(3)}}, "data.x.y"),
        ({"lm": [float(i) for i in range(17)]}, "data.lm"),
        ({"lm": [[1.0, 2.0]] * 9}, "data.lm"),  # nested lists are counted together
        ({"s": np.float32(1.0) * np.ones(1)}, "data.s"),
        ({"s": np.array(3.0)}, "data.s"),  # 0-d arrays are arrays too
        ({"blob": "A" * 5000}, "data.blob"),
        ({"v": {1, 2}}, "data.v"),
        ({"f": float("nan")}, "data.f"),
    ],
)
def test_guard_refuses_biometric_shaped_data(tmp_path: Path, data: dict, key: str) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        with pytest.raises(TypeError) as info:
            log.append("ledger", data)
    msg = str(info.value)
    assert repr(key) in msg
    assert "0.0, 0.0" not in msg and "jpeg" not in msg and "AAAA" not in msg
    assert path.read_bytes() == b""  # nothing was written


def test_guard_allows_ordinary_records(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl") as log:
        log.append("alert", {"alert_id": "ab12", "bbox": [1, 2, 3, 4], "score": 0.71,
                             "subject_id": "S-1", "ok": True, "none": None,
                             "hist": list(range(16))})
        rec = log.append("ledger", {"score": np.float32(0.5), "n": np.int64(3),
                                    "pair": (np.float64(1.5), 2)})
        assert rec["data"] == {"score": 0.5, "n": 3, "pair": [1.5, 2]}
        assert type(rec["data"]["n"]) is int
        with pytest.raises(ValueError):
            log.append("Bad Kind!", {})


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=60)


def test_cli_verify_and_show(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("node.start", {"node_id": "cam-1"})
        for i in range(3):
            log.append("ledger", {"seen": i})
        log.append("watchlist.loaded", {"deployment_id": "D1"})
    ok = _cli("audit", "verify", str(path))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 5 records, chain intact")

    shown = _cli("audit", "show", str(path), "--kind", "ledger", "--tail", "2")
    assert shown.returncode == 0
    rows = shown.stdout.strip().splitlines()
    assert len(rows) == 2 and all("ledger" in r for r in rows)
    assert rows[-1].split()[0] == "4"
    glob = _cli("audit", "show", str(path), "--kind", "watchlist.*", "--json")
    assert json.loads(glob.stdout)["data"] == {"deployment_id": "D1"}

    lines = _lines(path)
    path.write_bytes(lines[0] + lines[2] + lines[3] + lines[4])
    bad = _cli("audit", "verify", str(path))
    assert bad.returncode == 1
    assert bad.stderr.startswith("FAILED at seq 2:")

    missing = _cli("audit", "verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
