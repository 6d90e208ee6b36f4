"""Hash-chained, append-only audit log (JSON Lines).

Each line is one record ``{"seq", "ts", "kind", "data", "prev", "hash"}`` where
``hash = sha256(canonical_json(record without "hash"))`` and ``prev`` is the previous
record's hash (``"0" * 64`` for the first). Editing, deleting or reordering any record
breaks the chain, which :func:`verify` reports with the first bad sequence number.

Why a chain and not just a file: the deletion ledger and officers' decisions are evidence
that the node kept its promises; a chain makes silent after-the-fact edits detectable.
Known limit: a chain alone cannot show that whole records were cut off *the end* of the
file. Record the head hash elsewhere (``edge audit show --tail 1``, a hub, a printout)
and pass it to ``verify(..., expect_head=...)`` / ``edge audit verify --head`` to close that gap.

Signed logs (``audit.signing_key``): each record also carries ``key`` (the signing key's id,
inside the hash) and ``sig`` (Ed25519 over the hash, outside it), see :mod:`edge.audit_signing`;
``verify(..., public_keys=...)`` then catches a rewrite by someone without the private key.
A torn trailing line (power cut mid-write) is moved aside into a quarantine file at start and
an ``audit.recovered`` record says so; the chain continues from the last whole record.

The log must never hold biometric data, so :meth:`AuditLog.append` refuses arrays, bytes,
long numeric lists and long strings (see :func:`check_audit_data`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.audit_signing import AuditSigner, key_id, public_b64, public_from_b64, verify_signature
from edge.errors import EdgeError

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "data", "prev", "hash")
SIGNED_FIELDS = ("seq", "ts", "kind", "data", "prev", "key", "hash", "sig")
MAX_NUMBERS_IN_LIST = 16  # a bbox (4) fits; an embedding (128+) or a 5-point landmark set x2 does not
MAX_STRING_CHARS = 4096  # room for a note or a path; not for a base64 crop
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID_RE = re.compile(r"^[0-9a-f]{16}$")
ROTATED = "audit.key_rotated"  # signed by the old key, names the new one: trust carries over
NEW_KEY = "audit.key_new"  # a key the previous one did not endorse (it was lost)
RECOVERED = "audit.recovered"  # a torn trailing line was moved aside at start


def canonical_json(obj: Any) -> bytes:
    """The exact bytes that are hashed: sorted keys, no spaces, UTF-8, no NaN/inf."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the record without its ``hash`` (and ``sig``) field, as lowercase hex."""
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, np.number)


def _count_numbers(value: Any) -> int:
    if _is_number(value):
        return 1
    if isinstance(value, (list, tuple)):
        return sum(_count_numbers(v) for v in value)
    return 0


def check_audit_data(data: Any, key: str = "data") -> Any:
    """Refuse anything that could carry pixels, embeddings or landmarks; return plain JSON.

    Raises TypeError naming the offending key path, never its value. Allowed: dicts with
    str keys, lists/tuples holding at most ``MAX_NUMBERS_IN_LIST`` numbers in total
    (nested lists counted together), str up to ``MAX_STRING_CHARS``, finite int/float,
    bool, None. numpy scalars (one number, e.g. a score) are converted to Python numbers;
    numpy arrays of any shape are refused.
    """
    tname = type(data).__name__
    if isinstance(data, np.generic) and not isinstance(data, (np.void, np.bytes_, np.str_)):
        data = data.item()  # numpy scalar (one number) -> int/float/bool
    elif type(data).__module__.startswith("numpy"):
        raise TypeError(
            f"audit data key {key!r} holds a numpy {tname}; the audit log never stores arrays"
        )
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"audit data key {key!r} holds {tname}; the audit log never stores bytes")
    if data is None or isinstance(data, (bool, int)):
        return data
    if isinstance(data, float):
        if data != data or data in (float("inf"), float("-inf")):
            raise TypeError(f"audit data key {key!r} is not a finite number")
        return data
    if isinstance(data, str):
        if len(data) > MAX_STRING_CHARS:
            raise TypeError(
                f"audit data key {key!r} holds a string of {len(data)} chars "
                f"(limit {MAX_STRING_CHARS})"
            )
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise TypeError(f"audit data key {key!r} is not valid UTF-8 text") from None
        return data
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if not isinstance(k, str):
                raise TypeError(f"audit data key {key!r} has a non-string key of type "
                                f"{type(k).__name__}")
            out[k] = check_audit_data(v, f"{key}.{k}")
        return out
    if isinstance(data, (list, tuple)):
        n = _count_numbers(data)
        if n > MAX_NUMBERS_IN_LIST:
            raise TypeError(
                f"audit data key {key!r} holds a list of {n} numbers (limit "
                f"{MAX_NUMBERS_IN_LIST}); the audit log never stores embeddings or landmarks"
            )
        return [check_audit_data(v, f"{key}[{i}]") for i, v in enumerate(data)]
    raise TypeError(f"audit data key {key!r} holds a {tname}, which is not plain JSON")


def _read_last_line(fd: int, size: int) -> bytes:
    """The bytes of the last line (without its newline); ``size`` must be > 0."""
    chunk = 4096
    end = size
    buf = b""
    while end > 0:
        start = max(0, end - chunk)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        # the last byte is the final newline; look for the one before it
        idx = buf.rfind(b"\n", 0, len(buf) - 1)
        if idx >= 0:
            return buf[idx + 1 : -1] if buf.endswith(b"\n") else buf[idx + 1 :]
        chunk *= 2
    return buf[:-1] if buf.endswith(b"\n") else buf


def _parse_record(line: bytes) -> dict[str, Any]:
    """Parse one line into a record with the right fields and types, or raise ValueError."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("line is not valid JSON") from None
    if not isinstance(rec, dict) or set(rec) not in (set(FIELDS), set(SIGNED_FIELDS)):
        raise ValueError("record does not have exactly the fields " + ", ".join(FIELDS)
                         + " (+ key, sig when signed)")
    if "sig" in rec and not (isinstance(rec["key"], str) and _KEY_ID_RE.match(rec["key"])
                             and isinstance(rec["sig"], str) and len(rec["sig"]) <= 200):
        raise ValueError("key/sig have the wrong form")
    if not isinstance(rec["seq"], int) or isinstance(rec["seq"], bool):
        raise ValueError("seq is not an integer")
    if not isinstance(rec["ts"], (int, float)) or isinstance(rec["ts"], bool):
        raise ValueError("ts is not a number")
    if not isinstance(rec["kind"], str) or not isinstance(rec["data"], dict):
        raise ValueError("kind/data have the wrong type")
    for f in ("prev", "hash"):
        if not isinstance(rec[f], str) or not _HEX64_RE.match(rec[f]):
            raise ValueError(f"{f} is not a sha256 hex digest")
    return rec


class AuditLog:
    """Appends records to one audit file, continuing its chain.

    Thread-safe (one lock) and safe against other processes appending to the same file
    (an ``flock`` around each append; the tail is re-read if the file grew meanwhile).
    Each append is written as one line, flushed and fsync'ed before it returns.

    With a ``signer`` every record is signed. A log whose last record is signed refuses an
    unsigned writer (no silent downgrade); a signer whose key differs from the last record's
    first writes an ``audit.key_new`` record (rotate with :meth:`rotate` to keep trust).
    """

    def __init__(self, path: Path, signer: AuditSigner | None = None) -> None:
        self.path = Path(path)
        self._signer = signer
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            raise EdgeError(f"cannot open audit log {self.path}: {exc.strerror}") from None
        self._seq = 0
        self._prev = GENESIS
        self._last_key: str | None = None
        self._size = -1
        self.recovered: tuple[Path, int] | None = None  # (quarantine file, bytes) if torn
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._load_tail(recover=True)
                self._after_open()
            except EdgeError:
                os.close(self._fd)
                self._fd = None
                raise
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    @property
    def head(self) -> str:
        """Hash of the last record written (``"0"*64`` for an empty log)."""
        return self._prev

    @property
    def seq(self) -> int:
        """Sequence number of the last record (0 for an empty log)."""
        return self._seq

    def anchor(self) -> tuple[int, str]:
        """(seq, hash) of the last record, read together: what a heartbeat anchors at the hub."""
        with self._lock:
            return self._seq, self._prev

    def _after_open(self) -> None:
        """Write what opening found: a recovery, a key change. Called with the lock held."""
        if self._last_key is not None and self._signer is None:
            raise EdgeError(f"audit log {self.path} is signed (key {self._last_key}); refusing "
                            "to append unsigned records: set audit.signing_key")
        if self.recovered is not None:
            qpath, n = self.recovered
            self._write({"kind": RECOVERED, "data": {
                "reason": "torn trailing line (a write cut off, e.g. by a power cut)",
                "quarantine": qpath.name, "bytes": n, "after_seq": self._seq}})
        if self._signer is not None and self._last_key != self._signer.key_id and (
                self._seq > 0):
            self._write({"kind": NEW_KEY, "data": {
                "key": self._signer.key_id, "public_key": public_b64(self._signer.public),
                "previous_key": self._last_key}})

    def _load_tail(self, recover: bool = False) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            if not recover:
                raise EdgeError(f"audit log {self.path} ends in a truncated line; "
                                "refusing to append (restart the node to recover it)")
            size = self._quarantine_torn_tail(size)
        if size == 0:
            self._seq, self._prev, self._size, self._last_key = 0, GENESIS, 0, None
            return
        line = _read_last_line(self._fd, size)
        try:
            rec = _parse_record(line)
        except ValueError as exc:
            raise EdgeError(
                f"audit log {self.path} has a corrupt last record ({exc}); refusing to append"
            ) from None
        if record_hash(rec) != rec["hash"]:
            raise EdgeError(
                f"audit log {self.path}: last record (seq {rec['seq']}) fails its hash; "
                "refusing to append"
            )
        self._seq, self._prev, self._size = rec["seq"], rec["hash"], size
        self._last_key = _successor(rec)

    def _quarantine_torn_tail(self, size: int) -> int:
        """Move the bytes after the last newline into a quarantine file (never deleted: they
        are evidence), cut the log back to its last whole record; return the new size."""
        assert self._fd is not None
        keep = 0
        end = size
        while end > 0:
            start = max(0, end - 65536)
            idx = os.pread(self._fd, end - start, start).rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            end = start
        torn = os.pread(self._fd, size - keep, keep)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        try:
            for n in range(1, 1000):  # a new file each time: earlier evidence is never replaced
                qpath = self.path.with_name(f"{self.path.name}.torn-{stamp}-{n}")
                try:
                    fd = os.open(qpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 0o600)
                    break
                except FileExistsError:
                    continue
            else:
                raise OSError(0, "too many quarantine files this second")
            with os.fdopen(fd, "wb") as f:
                f.write(torn)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(self.path.parent)
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
        except OSError as exc:
            raise EdgeError(f"audit log {self.path} ends in a torn line and it cannot be moved "
                            f"aside: {exc.strerror}") from None
        self.recovered = (qpath, len(torn))
        return keep

    def _write(self, rec: dict[str, Any]) -> dict[str, Any]:
        """Chain, sign, write and fsync one record (lock and flock held)."""
        assert self._fd is not None
        out: dict[str, Any] = {"seq": self._seq + 1, "ts": round(time.time(), 6),
                               "kind": rec["kind"], "data": rec["data"], "prev": self._prev}
        if self._signer is not None:
            out["key"] = self._signer.key_id
        out["hash"] = record_hash(out)
        if self._signer is not None:
            out["sig"] = self._signer.sign(out["hash"])
        line = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        written = 0
        while written < len(line):
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)
        self._seq, self._prev = out["seq"], out["hash"]
        self._last_key = _successor(out)
        self._size = os.fstat(self._fd).st_size
        return out

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one record and return it; raises TypeError for data that is not allowed."""
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise ValueError(f"audit kind {kind!r} must look like 'node.start' or 'ledger'")
        if not isinstance(data, dict):
            raise TypeError("audit data must be a dict")
        data = check_audit_data(data)
        with self._lock:
            if self._fd is None:
                raise EdgeError(f"audit log {self.path} is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size != self._size:
                    self._load_tail()  # another process appended
                return self._write({"kind": kind, "data": data})
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def rotate(self, new: AuditSigner) -> dict[str, Any]:
        """Hand over to ``new``: a record signed by the current key names the new public key,
        so a verifier that trusts the old key trusts the new one from here on."""
        if self._signer is None:
            raise EdgeError(f"audit log {self.path}: rotating needs the current signing key")
        rec = self.append(ROTATED, {"new_key": new.key_id, "public_key": public_b64(new.public)})
        with self._lock:
            self._signer = new
        return rec

    def close(self) -> None:
        """Close the file; further appends raise."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _successor(rec: dict[str, Any]) -> str | None:
    """The key expected to sign the record after ``rec`` (a rotation names it)."""
    if rec["kind"] == ROTATED and "sig" in rec and isinstance(rec["data"].get("new_key"), str):
        return str(rec["data"]["new_key"])
    return rec.get("key")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class VerifyResult:
    """Outcome of :func:`verify`. ``first_bad_seq`` is the chain position that broke.

    ``signed``/``unsigned`` count records; ``notes`` explain what is not an error but a reader
    must know (a torn line moved aside, a key change); ``signatures_checked`` is False when
    no public key was given (then ``signed`` only says records carry a signature).
    """

    ok: bool
    records: int
    error: str | None = None
    first_bad_seq: int | None = None
    head: str = GENESIS
    signed: int = 0
    unsigned: int = 0
    signatures_checked: bool = False
    notes: list[str] = field(default_factory=list)


def iter_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` including the trailing newline if present."""
    try:
        with open(path, "rb") as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError:
        raise EdgeError(f"audit log {path} not found") from None
    except OSError as exc:
        raise EdgeError(f"cannot read audit log {path}: {exc.strerror}") from None


def verify(path: Path, expect_head: str | None = None,
           public_keys: list[Ed25519PublicKey] | None = None,
           anchor: tuple[int, str] | None = None) -> VerifyResult:
    """Check every record's hash, sequence and link to its predecessor.

    Detects edited, deleted, inserted and reordered records and a truncated last line.
    With ``expect_head`` (a hash recorded elsewhere) also detects records cut off the end.
    With ``public_keys`` every record from the first signed one on must carry a valid
    signature by a trusted key; a rotation record signed by a trusted key adds the key it
    names. So a rewrite by someone without the private key fails, even with hashes recomputed.
    With ``anchor`` (seq, hash) as the hub received it in a heartbeat, the record at that seq
    must have that hash and the log must reach it: catches truncation and whole rewrites.
    """
    trusted = {key_id(k): k for k in public_keys or []}
    checking = public_keys is not None
    res = VerifyResult(True, 0, signatures_checked=checking)
    prev = GENESIS

    def fail(why: str, seq: int) -> VerifyResult:
        res.ok, res.error, res.first_bad_seq, res.head = False, why, seq, prev
        return res

    for lineno, raw in iter_records(Path(path)):
        expected_seq = res.records + 1
        if not raw.endswith(b"\n"):
            return fail(f"line {lineno} is truncated (no newline; the node moves it aside "
                        "at its next start)", expected_seq)
        try:
            rec = _parse_record(raw[:-1])
        except ValueError as exc:
            return fail(f"line {lineno}: {exc}", expected_seq)
        if rec["seq"] != expected_seq:
            return fail(f"expected seq {expected_seq} but found seq {rec['seq']} "
                        "(record deleted, inserted or reordered)", expected_seq)
        if rec["prev"] != prev:
            return fail("prev does not match the previous record's hash", expected_seq)
        if record_hash(rec) != rec["hash"]:
            return fail("record content does not match its hash (record edited)", expected_seq)
        if "sig" in rec:
            res.signed += 1
            if checking:
                why = _check_signature(rec, trusted)
                if why:
                    return fail(why, expected_seq)
        else:
            if res.signed:
                return fail(f"seq {expected_seq} is unsigned after signed records (signature "
                            "stripped: rewritten without the key?)", expected_seq)
            res.unsigned += 1
        if anchor is not None and rec["seq"] == anchor[0] and rec["hash"] != anchor[1]:
            return fail(f"seq {expected_seq} is not the record the hub anchored (hash "
                        f"{anchor[1][:16]}…): the log was rewritten", expected_seq)
        note = _note(rec)
        if note:
            res.notes.append(note)
        prev = rec["hash"]
        res.records += 1
    res.head = prev
    if anchor is not None and res.records < anchor[0]:
        return fail(f"the hub holds seq {anchor[0]} but the log ends at seq {res.records} "
                    "(records cut off the end, or an older copy)", res.records + 1)
    if checking and res.records and not res.signed:
        return fail("no record is signed (written without audit.signing_key, or rewritten "
                    "without the key)", 1)
    if checking and res.unsigned:
        res.notes.insert(0, f"seq 1-{res.unsigned}: unsigned, written before signing started")
    if expect_head is not None and expect_head != prev:
        return fail("last record's hash is not the expected head (records cut off the end, "
                    "or a different log)", res.records + 1)
    return res


def _check_signature(rec: dict[str, Any], trusted: dict[str, Ed25519PublicKey]) -> str | None:
    """Why ``rec``'s signature is not acceptable, or None; learns rotated-to keys."""
    public = trusted.get(rec["key"])
    if public is None:
        if rec["kind"] == NEW_KEY:
            return (f"signed by key {rec['key']}, which no trusted key endorsed (a new key "
                    "after a lost one: pass its public key too if that is what happened)")
        return f"signed by unknown key {rec['key']}"
    if not verify_signature(public, rec["hash"], rec["sig"]):
        return "signature does not verify (record rewritten without the signing key)"
    if rec["kind"] == ROTATED:
        try:
            new = public_from_b64(rec["data"].get("public_key"))
        except (ValueError, TypeError):
            return "key rotation record carries no valid public key"
        if key_id(new) != rec["data"].get("new_key"):
            return "key rotation record's key id does not match its public key"
        trusted[key_id(new)] = new
    return None


def _note(rec: dict[str, Any]) -> str | None:
    d = rec["data"]
    if rec["kind"] == RECOVERED:
        return (f"seq {rec['seq']}: a torn line after seq {d.get('after_seq')} "
                f"({d.get('bytes')} bytes) was moved to {d.get('quarantine')}")
    if rec["kind"] == ROTATED:
        return f"seq {rec['seq']}: signing key rotated to {d.get('new_key')}"
    if rec["kind"] == NEW_KEY:
        return (f"seq {rec['seq']}: new signing key {d.get('key')} not endorsed by "
                f"{d.get('previous_key') or 'an unsigned log'}")
    return None


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records that parse, in file order (for display; use :func:`verify` to trust them)."""
    out = []
    for _, raw in iter_records(Path(path)):
        try:
            out.append(_parse_record(raw.rstrip(b"\n")))
        except ValueError:
            continue
    return out
