"""Signed audit records: the rewrite attack from issue 14 (delete a record, edit a count,
recompute seq/prev/hash with the project's own record_hash) is caught with the public key;
stripped signatures, forged rotations, unsigned writers and lost keys are each named."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge.audit import AuditLog, record_hash, verify
from edge.audit_signing import AuditSigner, generate_signing_key, load_public_key
from edge.errors import EdgeError

pytestmark = pytest.mark.unit

EDGE = [sys.executable, "-m", "edge.cli"]


def _key(tmp: Path, name: str) -> tuple[AuditSigner, Path]:
    priv, pub = generate_signing_key(tmp / name)
    return AuditSigner.from_file(priv), pub


def _signed_log(tmp: Path) -> tuple[Path, Path, AuditSigner]:
    signer, pub = _key(tmp, "k1")
    path = tmp / "audit.jsonl"
    with AuditLog(path, signer) as log:
        log.append("node.start", {"node_id": "n1"})
        log.append("alert", {"alert_id": "a" * 32, "subject_id": "s1"})
        log.append("ledger", {"faces_seen": 120, "discarded": 119, "alerted": 1})
        log.append("ledger", {"faces_seen": 80, "discarded": 80, "alerted": 0})
    return path, pub, signer


def _rewrite(path: Path, records: list[dict], keep_sig: bool = True) -> None:
    """What an attacker with the file but not the key does: re-chain with record_hash."""
    prev = "0" * 64
    out = []
    for i, rec in enumerate(records, start=1):
        rec = dict(rec, seq=i, prev=prev)
        if not keep_sig:
            rec.pop("sig", None)
            rec.pop("key", None)
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append(json.dumps(rec, separators=(",", ":")))
    path.write_text("\n".join(out) + "\n")


def test_the_rewrite_attack_is_caught_with_the_public_key(tmp_path: Path) -> None:
    path, pub, _ = _signed_log(tmp_path)
    assert verify(path, public_keys=[load_public_key(pub)]).ok
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    del recs[1]  # the alert record goes
    recs[1]["data"]["faces_seen"] = 12  # and a ledger count is edited
    _rewrite(path, recs)
    assert verify(path).ok  # the chain alone is fooled: this was the bug
    res = verify(path, public_keys=[load_public_key(pub)])
    assert not res.ok and res.first_bad_seq == 2 and "rewritten without the signing key" in res.error
    cli = subprocess.run([*EDGE, "audit", "verify", str(path), "--public-key", str(pub)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and "FAILED at seq 2" in cli.stderr
    assert "signature does not verify" in cli.stderr and "Traceback" not in cli.stderr


def test_stripped_signatures_are_caught(tmp_path: Path) -> None:
    path, pub, _ = _signed_log(tmp_path)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    _rewrite(path, recs, keep_sig=False)
    res = verify(path, public_keys=[load_public_key(pub)])
    assert not res.ok and "no record is signed" in res.error
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    _signed = [json.loads(x) for x in _signed_log(tmp_path / "b")[0].read_text().splitlines()]
    _rewrite(path, [*_signed[:2], *recs[2:]])  # signed head kept, tail stripped and edited
    res = verify(path, public_keys=[load_public_key(pub)])
    assert not res.ok  # either unknown key (other log's key) or unsigned after signed


def test_unsigned_after_signed_is_caught(tmp_path: Path) -> None:
    path, pub, _ = _signed_log(tmp_path)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    last = {k: v for k, v in recs[-1].items() if k not in ("sig", "key")}
    last.update(seq=5, prev=recs[-1]["hash"], data={"faces_seen": 1})
    last["hash"] = record_hash(last)
    with path.open("a") as f:
        f.write(json.dumps(last) + "\n")
    res = verify(path, public_keys=[load_public_key(pub)])
    assert not res.ok and res.first_bad_seq == 5 and "unsigned after signed" in res.error


def test_unsigned_writer_refused_on_a_signed_log(tmp_path: Path) -> None:
    path, _, signer = _signed_log(tmp_path)
    with pytest.raises(EdgeError, match="is signed") as e:
        AuditLog(path)
    assert "\n" not in str(e.value) and signer.key_id in str(e.value)


def test_rotation_carries_trust_and_a_forged_rotation_does_not(tmp_path: Path) -> None:
    path, pub, signer = _signed_log(tmp_path)
    new, new_pub = _key(tmp_path, "k2")
    r = subprocess.run([*EDGE, "audit", "rotate-key", str(path), "--key",
                        str(tmp_path / "k1" / "audit.key"), "--new-key",
                        str(tmp_path / "k2" / "audit.key")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"new key {new.key_id}" in r.stdout
    with AuditLog(path, new) as log:
        log.append("ledger", {"faces_seen": 5})
    res = verify(path, public_keys=[load_public_key(pub)])  # only the OLD key is known
    assert res.ok and res.signed == 6, res.error
    assert any("rotated to " + new.key_id in n for n in res.notes)
    # an attacker appends a rotation to their own key, signed by their own key
    evil, _ = _key(tmp_path, "evil")
    with AuditLog(path, new) as log:
        log._signer = evil  # as if they had written the records themselves
        log.rotate(_key(tmp_path, "evil2")[0])
    res = verify(path, public_keys=[load_public_key(pub)])
    assert not res.ok and res.first_bad_seq == 7 and "unknown key " + evil.key_id in res.error


def test_lost_key_starts_a_new_segment_that_verify_names(tmp_path: Path) -> None:
    path, pub, old = _signed_log(tmp_path)
    replacement, rep_pub = _key(tmp_path, "k2")
    with AuditLog(path, replacement) as log:  # the old key file is gone: a new one is used
        log.append("ledger", {"faces_seen": 7})
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert recs[4]["kind"] == "audit.key_new" and recs[4]["data"]["previous_key"] == old.key_id
    res = verify(path, public_keys=[load_public_key(pub)])
    assert not res.ok and res.first_bad_seq == 5 and "no trusted key endorsed" in res.error
    res = verify(path, public_keys=[load_public_key(pub), load_public_key(rep_pub)])
    assert res.ok and any("not endorsed by " + old.key_id in n for n in res.notes)


def test_signing_started_on_an_old_unsigned_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("ledger", {"faces_seen": 1})
    signer, pub = _key(tmp_path, "k")
    with AuditLog(path, signer) as log:
        log.append("ledger", {"faces_seen": 2})
    res = verify(path, public_keys=[load_public_key(pub)])
    assert res.ok and res.unsigned == 1 and res.signed == 2
    assert "seq 1-1: unsigned" in res.notes[0]


def test_keys_cli_and_key_file_checks(tmp_path: Path) -> None:
    r = subprocess.run([*EDGE, "keys", "audit", "--dir", str(tmp_path / "a")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    priv = tmp_path / "a" / "audit.key"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes()
    again = subprocess.run([*EDGE, "keys", "audit", "--dir", str(tmp_path / "a")],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr
    priv.chmod(0o644)
    with pytest.raises(EdgeError, match="readable by others"):
        AuditSigner.from_file(priv)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    bad.chmod(0o600)
    with pytest.raises(EdgeError, match="not an unencrypted PEM"):
        AuditSigner.from_file(bad)
    with pytest.raises(EdgeError, match="not found"):
        AuditSigner.from_file(tmp_path / "none.key")


def test_verify_cli_says_what_it_checked(tmp_path: Path) -> None:
    path, pub, _ = _signed_log(tmp_path)
    r = subprocess.run([*EDGE, "audit", "verify", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "signatures NOT checked" in r.stdout
    r = subprocess.run([*EDGE, "audit", "verify", str(path), "--public-key", str(pub)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "4 signatures valid" in r.stdout
