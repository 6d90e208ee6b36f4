"""``edge audit``: check and read the node's hash-chained audit log."""

from __future__ import annotations

import fnmatch
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from edge.audit import AuditLog, read_records, verify
from edge.audit_signing import AuditSigner, load_public_key
from edge.errors import EdgeError


@click.group()
def audit() -> None:
    """Check and read the hash-chained audit log (deletion ledger, alerts, decisions)."""


@audit.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--head", "head", metavar="HASH", default=None,
              help="Expected hash of the last record, recorded elsewhere; "
                   "detects records cut off the end.")
@click.option("--public-key", "public_keys", multiple=True, metavar="PEM",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The node's audit.pub: every record must be signed by it (or by a key it "
                   "rotated to). Repeat for a key that replaced a lost one.")
@click.option("--anchors", "anchors_file", metavar="JSON",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The hub's `edge hub export-anchors` (or export-record) file: the log must "
                   "hold the head the hub last received from --node.")
@click.option("--node", "node_id", default=None, metavar="ID",
              help="Whose anchor to check (default: the only node in --anchors).")
def verify_cmd(file: Path, head: str | None, public_keys: tuple[Path, ...],
               anchors_file: Path | None, node_id: str | None) -> None:
    """Verify FILE's hash chain (and signatures); exit 1 if any record was edited, removed,
    reordered or rewritten without the signing key."""
    keys = [load_public_key(p) for p in public_keys] if public_keys else None
    anchor = _anchor(anchors_file, node_id) if anchors_file else None
    result = verify(file, expect_head=head.lower() if head else None, public_keys=keys,
                    anchor=anchor)
    if anchor is not None and result.ok:
        click.echo(f"anchor: the hub's seq {anchor[0]} is in the log, unchanged")
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.ok:
        if result.signatures_checked:
            sig = f"{result.signed} signatures valid"
        elif result.signed:
            sig = f"{result.signed} signed, signatures NOT checked (pass --public-key)"
        else:
            sig = "unsigned: a chain alone does not stop a rewrite (see docs/SECURITY.md)"
        click.echo(f"OK: {result.records} records, chain intact, {sig} (head {result.head})")
        return
    click.echo(f"FAILED at seq {result.first_bad_seq}: {result.error}", err=True)
    click.echo(f"({result.records} records verified before the break)", err=True)
    sys.exit(1)


@audit.command("rotate-key")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "old_key", required=True, metavar="PEM",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The current signing key (audit.signing_key).")
@click.option("--new-key", "new_key", required=True, metavar="PEM",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The new key (from `edge keys audit --dir NEWDIR`).")
def rotate_cmd(file: Path, old_key: Path, new_key: Path) -> None:
    """Append a record, signed by the current key, that hands over to the new key; then set
    audit.signing_key to the new key. Stop the node first."""
    new = AuditSigner.from_file(new_key)
    with AuditLog(file, AuditSigner.from_file(old_key)) as log:
        rec = log.rotate(new)
    click.echo(f"rotated at seq {rec['seq']}: new key {new.key_id}; set audit.signing_key = "
               f"\"{new_key}\"")


@audit.command("show")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--kind", "kind", default=None, metavar="K",
              help="Only records of this kind (glob allowed, e.g. 'watchlist.*').")
@click.option("--tail", "tail", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the last N matching records.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON records.")
def show_cmd(file: Path, kind: str | None, tail: int | None, as_json: bool) -> None:
    """Print FILE's records, one per line (does not verify: use `edge audit verify`)."""
    records = read_records(file)
    if kind:
        records = [r for r in records if fnmatch.fnmatchcase(r["kind"], kind)]
    if tail:
        records = records[-tail:]
    for rec in records:
        if as_json:
            click.echo(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
            continue
        when = datetime.fromtimestamp(rec["ts"], tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = json.dumps(rec["data"], ensure_ascii=False, sort_keys=True)
        click.echo(f"{rec['seq']:>6} {when} {rec['kind']:<18} {data}  [{rec['hash'][:12]}]")


def _anchor(path: Path, node_id: str | None) -> tuple[int, str]:
    try:
        data = json.loads(path.read_text())
        anchors = data.get("audit_anchors", data.get("anchors"))
        if not isinstance(anchors, dict):
            raise ValueError
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        raise EdgeError(f"{path} is not an anchors file (edge hub export-anchors)") from None
    if node_id is None:
        if len(anchors) != 1:
            raise EdgeError(f"{path} holds {len(anchors)} nodes' anchors; pass --node ID")
        node_id = next(iter(anchors))
    a = anchors.get(node_id)
    if not (isinstance(a, dict) and isinstance(a.get("seq"), int)
            and isinstance(a.get("head"), str)):
        raise EdgeError(f"{path} has no anchor for node {node_id}")
    return a["seq"], a["head"].lower()
