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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "data", "prev", "hash")
MAX_NUMBERS_IN_LIST = 16  # a bbox (4) fits; an embedding (128+) or a 5-point landmark set x2 does not
MAX_STRING_CHARS = 4096  # room for a note or a path; not for a base64 crop
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def canonical_json(obj: Any) -> bytes:
    """The exact bytes that are hashed: sorted keys, no spaces, UTF-8, no NaN/inf."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the record without its ``hash`` field, as lowercase hex."""
    body = {k: v for k, v in record.items() if k != "hash"}
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
    if not isinstance(rec, dict) or set(rec) != set(FIELDS):
        raise ValueError("record does not have exactly the fields " + ", ".join(FIELDS))
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
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
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
        self._size = -1
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            try:
                self._load_tail()
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

    def _load_tail(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            self._seq, self._prev, self._size = 0, GENESIS, 0
            return
        if os.pread(self._fd, 1, size - 1) != b"\n":
            raise EdgeError(
                f"audit log {self.path} ends in a truncated line; refusing to append "
                f"(run `edge audit verify {self.path}`)"
            )
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
                rec: dict[str, Any] = {
                    "seq": self._seq + 1,
                    "ts": round(time.time(), 6),
                    "kind": kind,
                    "data": data,
                    "prev": self._prev,
                }
                rec["hash"] = record_hash(rec)
                line = json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
                written = 0
                while written < len(line):
                    written += os.write(self._fd, line[written:])
                os.fsync(self._fd)
                self._seq, self._prev = rec["seq"], rec["hash"]
                self._size = os.fstat(self._fd).st_size
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
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


@dataclass
class VerifyResult:
    """Outcome of :func:`verify`. ``first_bad_seq`` is the chain position that broke."""

    ok: bool
    records: int
    error: str | None = None
    first_bad_seq: int | None = None
    head: str = GENESIS


def iter_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` including the trailing newline if present."""
    try:
        with open(path, "rb") as fh:
            yield from enumerate(fh, start=1)
    except FileNotFoundError:
        raise EdgeError(f"audit log {path} not found") from None
    except OSError as exc:
        raise EdgeError(f"cannot read audit log {path}: {exc.strerror}") from None


def verify(path: Path, expect_head: str | None = None) -> VerifyResult:
    """Check every record's hash, sequence and link to its predecessor.

    Detects edited, deleted, inserted and reordered records and a truncated last line.
    With ``expect_head`` (a hash recorded elsewhere) also detects records cut off the end.
    """
    prev = GENESIS
    count = 0
    for lineno, raw in iter_records(Path(path)):
        expected_seq = count + 1
        if not raw.endswith(b"\n"):
            return VerifyResult(False, count, f"line {lineno} is truncated (no newline)",
                                expected_seq, prev)
        try:
            rec = _parse_record(raw[:-1])
        except ValueError as exc:
            return VerifyResult(False, count, f"line {lineno}: {exc}", expected_seq, prev)
        if rec["seq"] != expected_seq:
            return VerifyResult(
                False, count,
                f"expected seq {expected_seq} but found seq {rec['seq']} "
                "(record deleted, inserted or reordered)",
                expected_seq, prev,
            )
        if rec["prev"] != prev:
            return VerifyResult(False, count, "prev does not match the previous record's hash",
                                expected_seq, prev)
        if record_hash(rec) != rec["hash"]:
            return VerifyResult(False, count, "record content does not match its hash "
                                "(record edited)", expected_seq, prev)
        prev = rec["hash"]
        count += 1
    if expect_head is not None and expect_head != prev:
        return VerifyResult(False, count, "last record's hash is not the expected head "
                            "(records cut off the end, or a different log)", count + 1, prev)
    return VerifyResult(True, count, None, None, prev)


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records that parse, in file order (for display; use :func:`verify` to trust them)."""
    out = []
    for _, raw in iter_records(Path(path)):
        try:
            out.append(_parse_record(raw.rstrip(b"\n")))
        except ValueError:
            continue
    return out
