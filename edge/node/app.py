"""Builds a node from its config and runs it: the one place where models, watchlist, link,
audit log, metrics and signals are wired together. ``edge run`` is a thin layer over
:func:`run_node`; tests and benchmarks build pipelines with :func:`build_node`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from edge import hardening
from edge.audit import AuditLog
from edge.config import Config
from edge.errors import EdgeError
from edge.exporter import MetricsServer, serve_metrics
from edge.face.registry import FaceModels, load_face_models
from edge.link.metrics import LinkMetrics
from edge.link.zeromq import CurveConfig
from edge.link.zmq_sender import ZmqSender
from edge.node.metrics import PipelineCollector
from edge.node.pipeline import Node
from edge.node.sinks import AlertSink, AuditSink, ConsoleSink
from edge.node.sources import open_source
from edge.node.stats import NodeStats
from edge.watchlist import lifecycle
from edge.watchlist.index import Watchlist
from edge.watchlist.vault import VaultKey

Notify = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_node(cfg: Config, watchlist: Watchlist, models: FaceModels | None = None,
               sink: AlertSink | None = None, audit: AuditSink | None = None,
               clock: Callable[[], float] = time.time) -> Node:
    """One camera's pipeline; pass ``models`` to share one loaded pair between pipelines.

    Alerts go to the console line (``alerts.console``) and then to ``sink``.
    """
    sinks: list[AlertSink] = [ConsoleSink()] if cfg.alerts.console else []
    if sink is not None:
        sinks.append(sink)
    return Node(cfg, watchlist, models or load_face_models(cfg), sinks=sinks, audit=audit,
                clock=clock)


@dataclass(frozen=True)
class RunRequest:
    """What ``edge run`` was asked to do (the config says how)."""

    source: str  # webcam index, file, rtsp:// or http:// URL, image folder
    watchlist_dir: Path
    key: Callable[[], VaultKey]  # asked for only after the auto-destroy check
    key_file: Path | None = None  # shredded with the list when it is destroyed
    max_frames: int = 0
    hold_after_end: bool = False  # test hook: stay up after the source ends until a signal


def destroy_if_due(req: RunRequest, notify: Notify) -> None:
    """Crypto-shred an expired list before anything reads it (the auto-destroy policy)."""
    if lifecycle.destroy_if_due(req.watchlist_dir, req.key_file, time.time()):
        notify(f"[edge] watchlist {req.watchlist_dir} was past its auto-destroy time: destroyed")
        raise EdgeError(f"watchlist {req.watchlist_dir} expired and has been destroyed")


def ledger_counts(stats: NodeStats) -> dict[str, int]:
    """Cumulative counts for the hub's deployment record (sent with heartbeats)."""
    snap = stats.snapshot()
    return {k: int(snap[k]) for k in ("frames", "faces_seen", "faces_discarded", "alerts")}


def run_node(cfg: Config, req: RunRequest, notify: Notify = _stderr) -> NodeStats:
    """The live node: match every face of the source, alert on likely matches, until the
    source ends, a signal arrives or the watchlist's window closes."""
    report = hardening.harden_process(lock_memory=cfg.privacy.lock_memory)
    for line in report.lines():
        notify(f"[edge] {line}")

    destroy_if_due(req, notify)
    wl = Watchlist.load(req.watchlist_dir, req.key())
    wl.check_window()
    lifecycle.check_model(wl, cfg)  # a list made with another recogniser matches nothing sensibly

    audit = AuditLog(Path(cfg.audit.path))
    node = build_node(cfg, wl, audit=audit)
    locked = node.bufs.lock_report
    if cfg.privacy.lock_memory and locked.failures:
        notify(f"[edge] face buffers NOT locked in RAM: {locked.failures[0]}")

    curve = None
    if cfg.alerts.hub_public_key and cfg.alerts.node_secret_key:
        curve = CurveConfig(Path(cfg.alerts.node_secret_key), Path(cfg.alerts.hub_public_key))
    metrics_server: MetricsServer | None = None
    link_metrics: LinkMetrics | None = None
    if cfg.metrics.port:
        link_metrics = LinkMetrics()
        link_metrics.registry.register(PipelineCollector(node.stats))
        metrics_server = serve_metrics(link_metrics.registry, cfg.metrics.port)
    # open the source before any thread starts: a bad camera or URL stops start-up cleanly
    try:
        src = open_source(req.source, node.ring, cfg.source.max_width, cfg.source.realtime,
                          cfg.source.reconnect_initial_s, cfg.source.reconnect_max_s,
                          cfg.source.max_reconnects)
    except EdgeError:
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
        raise
    sender = ZmqSender(Path(cfg.alerts.outbox), cfg.alerts.endpoint, cfg.node.node_id, curve,
                       audit=audit, metrics=link_metrics, camera=cfg.node.camera,
                       counts=lambda: ledger_counts(node.stats))
    sender.start()
    node.sinks.append(sender)
    audit.append("node.start", {
        "node_id": cfg.node.node_id, "camera": cfg.node.camera,
        "deployment_id": wl.meta.deployment_id, "watchlist_entries": len(wl),
        "threshold": cfg.match.threshold, "zeroize": cfg.privacy.zeroize,
        "hardening": report.to_dict(), "memory_locked": not locked.failures,
    })

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        node.stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    notify(f"[edge] node {cfg.node.node_id} on {src.__class__.__name__}; watchlist "
           f"{wl.meta.deployment_id}: {len(wl.subjects)} subjects; threshold {cfg.match.threshold}")
    try:
        stats = node.run(src, max_frames=req.max_frames)
        notify(f"[edge] {node.stopped_reason}: {stats.frames} frames, {stats.faces_seen} "
               f"faces seen, {stats.alerts} alerts, {stats.faces_discarded} discarded; "
               f"bad frames {src.stats.bad_frames}")
        if req.hold_after_end:
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
        destroy_if_due(req, notify)
    return stats
