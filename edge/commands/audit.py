"""``edge audit``: check and read the node's hash-chained audit log."""

from __future__ import annotations

import fnmatch
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from edge.audit import read_records, verify


@click.group()
def audit() -> None:
    """Check and read the hash-chained audit log (deletion ledger, alerts, decisions)."""


@audit.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--head", "head", metavar="HASH", default=None,
              help="Expected hash of the last record, recorded elsewhere; "
                   "detects records cut off the end.")
def verify_cmd(file: Path, head: str | None) -> None:
    """Verify FILE's hash chain; exit 1 if any record was edited, removed or reordered."""
    result = verify(file, expect_head=head.lower() if head else None)
    if result.ok:
        click.echo(f"OK: {result.records} records, chain intact (head {result.head})")
        return
    click.echo(f"FAILED at seq {result.first_bad_seq}: {result.error}", err=True)
    click.echo(f"({result.records} records verified before the break)", err=True)
    sys.exit(1)


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
