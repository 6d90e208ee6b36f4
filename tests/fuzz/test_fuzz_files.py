"""Parsers of files a user or an attacker with disk access hands us: node and hub config TOML,
the watchlist subjects CSV, the vault header, audit log lines. Each returns or raises the
project's one-line EdgeError; no other exception, no hang."""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.audit import AuditLog, verify
from edge.config import load_config
from edge.errors import EdgeError
from edge.hub.config import load_hub_config
from edge.watchlist.enrol import CSV_COLUMNS, read_csv
from edge.watchlist.vault import (
    HEADER_FILE,
    VaultKey,
    create_key_file,
    read_meta,
    read_vault,
    write_vault,
)
from tests.fuzz.strategies import json_values, mutated

pytestmark = pytest.mark.unit

TMP = Path(tempfile.mkdtemp(prefix="edge-fuzz-"))

# Keys a config really has, so generated files reach the validators, not only the TOML parser.
NODE_KEYS = {s: sorted(v) for s, v in tomllib.loads(
    (Path(__file__).resolve().parents[2] / "config" / "default.toml").read_text()).items()
    if isinstance(v, dict)}
HUB_KEYS = {"zmq": ["bind", "hub_secret_key"], "http": ["host", "port", "tls_cert"],
            "store": ["path"], "retention": ["days", "purge_interval_s"],
            "ui": ["node_lost_after_s", "expected_nodes"], "metrics": ["port"]}

toml_scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=30), st.lists(st.integers(-5, 5), max_size=3),
    st.lists(st.text(max_size=5), max_size=3),
)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if v == v and abs(v) != float("inf") else "nan"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


@st.composite
def toml_docs(draw: st.DrawFn, keys: dict[str, list[str]]) -> str:
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(keys)), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(keys[section] + ["bogus"]), max_size=3,
                                 unique=True)):
            lines.append(f"{key} = {_toml_value(draw(toml_scalars))}")
    return "\n".join(lines) + "\n"


def _write(name: str, data: bytes) -> Path:
    p = TMP / name
    p.write_bytes(data)
    return p


@given(doc=st.one_of(toml_docs(NODE_KEYS), st.text(max_size=300)))
def test_node_config(doc: str) -> None:
    try:
        load_config(_write("node.toml", doc.encode("utf-8", "surrogatepass")))
    except EdgeError as exc:
        assert "\n" not in str(exc).strip() or str(exc).count("\n") < 40


@given(doc=st.one_of(toml_docs(HUB_KEYS), st.binary(max_size=300).map(
    lambda b: b.decode("latin-1"))))
def test_hub_config(doc: str) -> None:
    try:
        load_hub_config(_write("hub.toml", doc.encode("utf-8", "surrogatepass")))
    except EdgeError:
        pass


csv_cells = st.one_of(st.text(max_size=20), st.sampled_from(
    ["a.jpg", "../../etc/passwd", "/etc/passwd", "s1", "2026-01-01", "", '"', "\x00"]))


@given(header=st.one_of(st.just(list(CSV_COLUMNS)), st.lists(st.text(max_size=12), max_size=7)),
       rows=st.lists(st.lists(csv_cells, min_size=0, max_size=7), max_size=6),
       raw=st.binary(max_size=200))
def test_watchlist_csv(header: list[str], rows: list[list[str]], raw: bytes) -> None:
    images = TMP / "images"
    images.mkdir(exist_ok=True)
    text = "\n".join(",".join(json.dumps(c) for c in r) for r in [header, *rows]) + "\n"
    for data in (text.encode("utf-8", "surrogatepass"), raw):
        try:
            read_csv(_write("subjects.csv", data), images)
        except EdgeError:
            pass


def _vault() -> tuple[Path, VaultKey, dict[str, Any]]:
    d = TMP / "vault-src"
    key_path = TMP / "vault.key"
    if not d.exists():
        write_vault(d, {"index": b"x" * 100, "meta": b"{}"}, create_key_file(key_path),
                    {"deployment_id": "dep-1"})
    return d, VaultKey.from_file(key_path), json.loads((d / HEADER_FILE).read_text())


@given(data=st.data())
def test_vault_header(data: st.DataObject) -> None:
    src, key, header = _vault()
    header = data.draw(mutated(header))
    if "blobs" in header and isinstance(header["blobs"], dict) and data.draw(st.booleans()):
        header["blobs"] = {k: data.draw(json_values) for k in header["blobs"]}
    d = TMP / "vault-fuzz"
    d.mkdir(exist_ok=True)
    for f in src.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / HEADER_FILE).write_bytes(json.dumps(header).encode())
    for read in (lambda: read_meta(d), lambda: read_meta(d, key), lambda: read_vault(d, key)):
        try:
            read()
        except EdgeError:
            pass


def _audit_lines() -> list[bytes]:
    p = TMP / "good-audit.jsonl"
    if not p.exists():
        log = AuditLog(p)
        for i in range(3):
            log.append("ledger", {"faces_seen": i})
        log.close()
    return p.read_bytes().splitlines(keepends=True)


@given(data=st.data())
def test_audit_lines(data: st.DataObject) -> None:
    lines = _audit_lines()
    i = data.draw(st.integers(0, len(lines)))
    kind = data.draw(st.sampled_from(["bytes", "json", "mutated"]))
    if kind == "bytes":
        bad = data.draw(st.binary(max_size=200))
    elif kind == "json":
        bad = json.dumps(data.draw(json_values)).encode() + b"\n"
    else:
        rec = json.loads(lines[min(i, len(lines) - 1)])
        bad = json.dumps(data.draw(mutated(rec))).encode() + b"\n"
    p = _write("audit.jsonl", b"".join(lines[:i]) + bad + b"".join(lines[i + 1:]))
    res = verify(p)
    try:
        same = i < len(lines) and json.loads(bad) == json.loads(lines[i])
    except ValueError:
        same = False
    # Records cut off the end verify without a head from elsewhere: that is what anchoring the
    # head off the node is for (docs/SECURITY.md); any other change never verifies.
    cut_tail = bad == b"" and i >= len(lines) - 1
    assert res.ok is False or same or cut_tail
    try:
        AuditLog(p).close()  # the node starting on this log: continues, or one EdgeError
    except EdgeError:
        pass
    os.unlink(p)
