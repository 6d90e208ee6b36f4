"""``edge run``: the live node."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path

import click

from edge.commands.options import key_from_options, key_options
from edge.config import load_config
from edge.errors import EdgeError

log = logging.getLogger("edge.run")


@click.command()
@click.option("--source", "-s", required=True,
              help="Webcam index (0), video file, rtsp:// or http:// URL, or image folder.")
@click.option("--watchlist", "-w", "watchlist_dir", required=True,
              type=click.Path(file_okay=False), help="Encrypted watchlist directory.")
@key_options
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Deployment config TOML (overrides config/default.toml).")
@click.option("--endpoint", default=None, help="Hub ZeroMQ endpoint (overrides alerts.endpoint).")
@click.option("--max-frames", type=int, default=0, help="Stop after this many frames (0 = no limit).")
@click.option("--hold-after-end", is_flag=True, hidden=True,
              help="Test hook: stay alive (idle) after the source ends until SIGTERM.")
def run(source: str, watchlist_dir: str, key_file: str | None, passphrase_env: str | None,
        config_path: str | None, endpoint: str | None, max_frames: int,
        hold_after_end: bool) -> None:
    """Run the node: match every face in SOURCE against the watchlist, alert on likely matches.

    Alerts go to the hub over ZeroMQ (kept in a durable outbox until acknowledged) and are
    printed as one line each. Faces that match nobody are discarded on the device at once.
    The node refuses a watchlist outside its deployment window and stops when it closes.
    """
    overrides = {"alerts": {"endpoint": endpoint}} if endpoint else None
    cfg = load_config(config_path, overrides)  # a bad config stops us before anything opens

    from edge import hardening
    from edge.audit import AuditLog
    from edge.link.outbox import AlertSender
    from edge.link.zeromq import CurveConfig
    from edge.node.app import build_node
    from edge.node.sources import open_source
    from edge.watchlist.enrol import check_model
    from edge.watchlist.index import Watchlist

    report = hardening.harden_process(lock_memory=cfg.privacy.lock_memory)
    for line in report.lines():
        click.echo(f"[edge] {line}", err=True)

    _destroy_if_due(watchlist_dir, key_file)
    key = key_from_options(watchlist_dir, Path(key_file) if key_file else None, passphrase_env)
    wl = Watchlist.load(watchlist_dir, key)
    wl.check_window()
    check_model(wl, cfg)  # a list made with another recogniser would match nothing sensibly

    audit = AuditLog(Path(cfg.audit.path))
    node = build_node(cfg, wl, audit=audit)
    locked = node.bufs.lock_report
    if cfg.privacy.lock_memory and locked.failures:
        click.echo(f"[edge] face buffers NOT locked in RAM: {locked.failures[0]}", err=True)

    curve = None
    if cfg.alerts.hub_public_key and cfg.alerts.node_secret_key:
        curve = CurveConfig(Path(cfg.alerts.node_secret_key), Path(cfg.alerts.hub_public_key))
    metrics_server = None
    nm = None
    if cfg.metrics.port:
        from edge.exporter import serve_metrics
        from edge.link.metrics import LinkMetrics

        nm = LinkMetrics()
        nm.registry.register(PipelineCollector(node))
        metrics_server = serve_metrics(nm.registry, cfg.metrics.port)
    # open the source before any thread starts: a bad camera or URL stops start-up cleanly
    try:
        src = open_source(source, node.ring, cfg.source.max_width, cfg.source.realtime,
                          cfg.source.reconnect_initial_s, cfg.source.reconnect_max_s,
                          cfg.source.max_reconnects)
    except EdgeError:
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
        raise
    sender = AlertSender(Path(cfg.alerts.outbox), cfg.alerts.endpoint, cfg.node.node_id, curve,
                         audit=audit, metrics=nm, camera=cfg.node.camera,
                         counts=lambda: _ledger_counts(node))
    sender.start()
    node.sink = sender
    audit.append("node.start", {
        "node_id": cfg.node.node_id, "camera": cfg.node.camera,
        "deployment_id": wl.meta.deployment_id, "watchlist_entries": len(wl),
        "threshold": cfg.match.threshold, "zeroize": cfg.privacy.zeroize,
        "hardening": report.to_dict(), "memory_locked": not locked.failures,
    })

    stop = threading.Event()

    def _on_signal(signum, _frame) -> None:
        stop.set()
        node.stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    click.echo(f"[edge] node {cfg.node.node_id} on {src.__class__.__name__}; watchlist "
               f"{wl.meta.deployment_id}: {len(wl.subjects)} subjects; threshold "
               f"{cfg.match.threshold}", err=True)
    try:
        stats = node.run(src, max_frames=max_frames)
        click.echo(f"[edge] {node.stopped_reason}: {stats.frames} frames, {stats.faces_seen} "
                   f"faces seen, {stats.alerts} alerts, {stats.faces_discarded} discarded; "
                   f"bad frames {src.stats.bad_frames}", err=True)
        if hold_after_end:
            print("[edge] holding after end of source", flush=True)
            while not stop.wait(0.2):
                pass
    finally:
        snap = node.stats.snapshot()
        audit.append("node.stop", {"reason": node.stopped_reason or "error", **{
            k: snap[k] for k in ("frames", "faces_seen", "faces_discarded", "alerts")}})
        sender.close(timeout=5.0)
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
    if node.stopped_reason == "watchlist window closed":
        _destroy_if_due(watchlist_dir, key_file)


def _ledger_counts(node) -> dict[str, int]:
    """Cumulative counts for the hub's deployment record (sent with heartbeats)."""
    snap = node.stats.snapshot()
    return {k: int(snap[k]) for k in ("frames", "faces_seen", "faces_discarded", "alerts")}


class PipelineCollector:
    """Prometheus view of the node's counters: counts and latencies, never face data."""

    def __init__(self, node) -> None:
        self.node = node

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.node.stats.snapshot()
        for key in ("frames", "frames_failed", "faces_seen", "faces_embedded", "faces_discarded",
                    "gate_overrides", "alerts", "alerts_suppressed"):
            yield CounterMetricFamily(f"edge_node_{key}", f"Pipeline {key.replace('_', ' ')}",
                                      value=snap[key])
        gated = CounterMetricFamily("edge_node_faces_gated", "Embedding attempts skipped by a quality gate",
                                    labels=["reason"])
        for reason, count in snap["faces_gated"].items():
            gated.add_metric([reason], count)
        yield gated
        for key in ("zeroize_p50_ms", "zeroize_p99_ms"):
            yield GaugeMetricFamily(f"edge_node_{key}", "Decision-to-zeroed latency", value=snap[key])


def _destroy_if_due(watchlist_dir: str, key_file: str | None) -> None:
    """Crypto-shred an expired list before anything else reads it (auto-destroy policy)."""
    try:
        from edge.watchlist.enrol import destroy_if_due
    except ImportError:  # pragma: no cover - enrol ships with the package
        return
    if destroy_if_due(Path(watchlist_dir), Path(key_file) if key_file else None, time.time()):
        click.echo(f"[edge] watchlist {watchlist_dir} was past its auto-destroy time: destroyed",
                   err=True)
        raise EdgeError(f"watchlist {watchlist_dir} expired and has been destroyed")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
