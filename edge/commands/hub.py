"""``edge hub``: run the alert hub and tablet web app; manage officers; export the record.

The hub's web stack is the ``[hub]`` extra: it is imported at the top of this module so that,
without it, ``edge.cli`` registers a stand-in command naming the install instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from edge.errors import EdgeError
from edge.exporter import serve_metrics
from edge.hub.config import HubConfig, load_hub_config
from edge.hub.metrics import hub_health
from edge.hub.officers import add_officer, remove_officer
from edge.hub.service import Hub
from edge.hub.store import HubStore
from edge.hub.web import HubServer, check_web_transport, config_tls

log = logging.getLogger(__name__)

_config_opt = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Hub TOML config (see config/hub.example.toml).",
)


def _cfg(ctx: click.Context, config_path: Path | None) -> HubConfig:
    obj: dict[str, Any] = ctx.find_root().obj or {}
    path = config_path or obj.get("hub_config")
    return load_hub_config(path, obj.get("hub_overrides"))


@click.group(invoke_without_command=True)
@_config_opt
@click.option("--bind", default=None, help="ZeroMQ endpoint nodes connect to (zmq.bind).")
@click.option("--http-host", default=None, help="Web app address (http.host).")
@click.option("--http-port", type=int, default=None, help="Web app port (http.port).")
@click.option("--db", default=None, help="Hub SQLite store (store.path).")
@click.option("--officers", default=None, help="Officers file (store.officers_file).")
@click.option("--tls-cert", default=None, help="Web app certificate PEM (http.tls_cert).")
@click.option("--tls-key", default=None, help="Its private key PEM (http.tls_key).")
@click.option("--metrics-port", type=int, default=None, help="Prometheus port, 0 = off.")
@click.pass_context
def hub(ctx: click.Context, config_path: Path | None, bind: str | None, http_host: str | None,
        http_port: int | None, tls_cert: str | None, tls_key: str | None, db: str | None,
        officers: str | None, metrics_port: int | None) -> None:
    """Run the alert hub: receives alerts from nodes, serves the officers' tablet app.

    Without a sub-command the hub runs until Ctrl-C / SIGTERM.
    """
    root = ctx.find_root()
    root.obj = dict(root.obj or {})
    root.obj["hub_config"] = config_path
    root.obj["hub_overrides"] = {
        "zmq.bind": bind, "http.host": http_host, "http.port": http_port, "store.path": db,
        "store.officers_file": officers, "metrics.port": metrics_port,
        "http.tls_cert": tls_cert, "http.tls_key": tls_key,
    }
    if ctx.invoked_subcommand is None:
        run_hub(_cfg(ctx, None))


def run_hub(cfg: HubConfig) -> None:
    """Start hub, metrics endpoint and web app; block until SIGINT/SIGTERM."""
    # transport first: a refused cert or plain non-loopback HTTP starts nothing
    check_web_transport(cfg.http.host, config_tls(cfg), cfg.http.allow_plain_http)
    if not Path(cfg.store.officers_file).exists():
        log.warning("no officers file at %s: nobody can sign in (edge hub add-officer NAME)",
                    cfg.store.officers_file)
    h = Hub(cfg).start()
    msrv = None
    try:
        web = HubServer.from_config(h)  # checks TLS, binds now: a busy port is one line
        if cfg.metrics.port:
            msrv = serve_metrics(h.metrics.registry, cfg.metrics.port, cfg.metrics.host,
                                 health=hub_health(h))
        click.echo(f"hub: nodes -> {h.endpoint}; tablets -> {web.url}/"
                   + (f"; metrics -> {cfg.metrics.host}:{msrv.port}/metrics" if msrv else ""),
                   err=True)
        web.serve()
    finally:
        if msrv is not None:
            msrv.close()
        h.stop()


@hub.command("add-officer")
@click.argument("name")
@_config_opt
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (scripts).")
@click.option("--replace", is_flag=True, help="Reset the password of an existing officer.")
@click.pass_context
def add_officer_cmd(ctx: click.Context, name: str, config_path: Path | None,
                    password_stdin: bool, replace: bool) -> None:
    """Add an officer who may sign in to the tablet app (prompts for the password)."""
    cfg = _cfg(ctx, config_path)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    add_officer(Path(cfg.store.officers_file), name, password, replace=replace)
    click.echo(f"officer {name} saved in {cfg.store.officers_file}")


@hub.command("remove-officer")
@click.argument("name")
@_config_opt
@click.pass_context
def remove_officer_cmd(ctx: click.Context, name: str, config_path: Path | None) -> None:
    """Remove an officer (their open sessions end too)."""
    cfg = _cfg(ctx, config_path)
    remove_officer(Path(cfg.store.officers_file), name)
    if Path(cfg.store.path).exists():
        store = HubStore(Path(cfg.store.path))
        store.delete_sessions_of(name)
        store.close()
    click.echo(f"officer {name} removed")


@hub.command("export-record")
@_config_opt
@click.option("--out", "outs", type=click.Path(dir_okay=False, path_type=Path), required=True,
              multiple=True, help="File to write: .json, .csv (one row per camera + totals) or "
              ".html (one-page report with a chart). Repeat for several formats.")
@click.option("--deployment", default=None, help="Only this deployment id's alert counts.")
@click.pass_context
def export_record(ctx: click.Context, config_path: Path | None, outs: tuple[Path, ...],
                  deployment: str | None) -> None:
    """Write the publishable deployment record: date and window, cameras, deployment id and
    authorising officer, watchlist size, faces seen, alerts, decisions, outcomes and the
    false-alert rate. Counts only: no images, no names of anyone matched or passing."""
    cfg = _cfg(ctx, config_path)
    for out in outs:
        if out.suffix.lower() not in (".json", ".csv", ".html"):
            raise EdgeError(f"--out {out}: the name must end in .json, .csv or .html")
    if not Path(cfg.store.path).exists():
        raise EdgeError(f"hub store not found: {cfg.store.path}")
    store = HubStore(Path(cfg.store.path))
    try:
        # decisions whose undo window has passed count as final even with the hub stopped
        store.finalize_due(time.time(), cfg.retention.purge_rejected_probe)
        record = store.deployment_record(deployment)
        anchors = store.audit_anchors()
    finally:
        store.close()
    record["retention_days"] = cfg.retention.days
    record["audit_anchors"] = anchors
    # here, not at the top: the report's matplotlib is for this offline command only, never
    # loaded into the running hub (`edge hub` imports this module too)
    from edge.report.record import to_csv, to_html

    for out in outs:
        kind = out.suffix.lower()
        text = (json.dumps(record, indent=2) + "\n" if kind == ".json"
                else to_csv(record) if kind == ".csv" else to_html(record))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
        click.echo(f"wrote {out}")
    t = record["totals"]
    click.echo(f"faces seen {t['faces_seen']}, alerts {t['alerts']}, "
               f"confirmed {t['confirmed']}, rejected {t['rejected']}, "
               f"no action {t['no_action']}, undecided {t['undecided']}")


@hub.command("export-anchors")
@_config_opt
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON file to write.")
@click.pass_context
def export_anchors(ctx: click.Context, config_path: Path | None, out: Path) -> None:
    """Write the last audit-log head (seq, hash) each node sent, for `edge audit verify
    --anchors`: a node's log cut short or rewritten after that heartbeat no longer matches."""
    cfg = _cfg(ctx, config_path)
    if not Path(cfg.store.path).exists():
        raise EdgeError(f"hub store not found: {cfg.store.path}")
    store = HubStore(Path(cfg.store.path))
    try:
        anchors = store.audit_anchors()
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"schema": "edge.audit-anchors.v1", "exported_at": time.time(),
                               "anchors": anchors}, indent=2) + "\n")
    os.replace(tmp, out)
    click.echo(f"wrote {out}: anchors of {len(anchors)} node(s)")
