"""Builds a node from its config and runs it: the one place where cameras, models, watchlist,
link, audit log, metrics and signals are wired together. ``edge run`` is a thin layer over
:func:`run_node`; tests and benchmarks build one camera's pipeline with :func:`build_node`
or a whole site with :func:`build_site`.
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
from edge.audit_signing import AuditSigner
from edge.config import Config
from edge.errors import ConfigError, EdgeError, SourceError
from edge.exporter import Health, MetricsServer, serve_metrics
from edge.face.registry import FaceModels, load_face_models
from edge.link.metrics import LinkMetrics
from edge.link.nats_fabric import NatsSettings
from edge.link.nats_sender import NatsSender
from edge.link.schema import DeploymentInfo
from edge.link.sender import OutboxSender
from edge.link.zeromq import CurveConfig
from edge.link.zmq_sender import ZmqSender
from edge.node.camera import CameraSpec, camera_specs
from edge.node.metrics import CameraCollector, NodeReadiness, PipelineCollector
from edge.node.pipeline import Node
from edge.node.sinks import AlertSink, AuditSink, ConsoleSink
from edge.node.site import Site
from edge.node.sources import CaptureSource, FrameSource, ImageFolderSource
from edge.node.stats import NodeStats
from edge.node.track import tracking_config
from edge.watchlist import lifecycle
from edge.watchlist.index import Watchlist
from edge.watchlist.vault import VaultKey

Notify = Callable[[str], None]
HEALTH_STALE_S = 10.0  # /healthz fails when the main loop (4 ticks a second) has not ticked for this


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
    return Node(cfg, watchlist, models or load_face_models(tracking_config(cfg)), sinks=sinks, audit=audit,
                clock=clock)


def build_site(cfg: Config, watchlist: Watchlist, cameras: list[CameraSpec],
               models: FaceModels | None = None, sinks: list[AlertSink] | None = None,
               audit: AuditSink | None = None, clock: Callable[[], float] = time.time) -> Site:
    """Every camera of a node around one loaded pair of models (console line first)."""
    all_sinks: list[AlertSink] = [ConsoleSink()] if cfg.alerts.console else []
    all_sinks += sinks or []
    return Site(cfg, watchlist, models or load_face_models(tracking_config(cfg)), cameras, sinks=all_sinks,
                audit=audit, clock=clock)


def cameras_to_run(cfg: Config, source: str | None) -> list[CameraSpec]:
    """``--source`` or the config's ``[[cameras]]``: exactly one of them (one line if not)."""
    if source is not None and cfg.cameras:
        raise ConfigError("give --source or [[cameras]] in the config, not both")
    specs = camera_specs(cfg, source)
    if not specs:
        raise ConfigError("no camera: give --source or declare [[cameras]] in the config")
    return specs


@dataclass(frozen=True)
class RunRequest:
    """What ``edge run`` was asked to do (the config says how)."""

    source: str | None  # one camera (webcam index, file, URL, folder); None: cfg.cameras
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


def run_node(cfg: Config, req: RunRequest, notify: Notify = _stderr) -> dict[str, NodeStats]:
    """The live node: match every face of every camera, alert on likely matches, until the
    sources end, a signal arrives or the watchlist's window closes."""
    specs = cameras_to_run(cfg, req.source)  # config mistakes stop us before anything opens
    report = hardening.harden_process(lock_memory=cfg.privacy.lock_memory)
    for line in report.lines():
        notify(f"[edge] {line}")

    destroy_if_due(req, notify)
    wl = Watchlist.load(req.watchlist_dir, req.key())
    wl.check_window()
    lifecycle.check_model(wl, cfg)  # a list made with another recogniser matches nothing sensibly

    signer = AuditSigner.from_file(Path(cfg.audit.signing_key)) if cfg.audit.signing_key else None
    audit = AuditLog(Path(cfg.audit.path), signer)
    if signer is None:
        notify("[edge] audit log is unsigned: anyone with write access to it can rewrite it "
               "undetected; set audit.signing_key (edge keys audit)")
    if audit.recovered is not None:
        notify(f"[edge] audit log ended in a torn line: {audit.recovered[1]} bytes moved to "
               f"{audit.recovered[0]}")
    # the metrics endpoint starts before the models load: /healthz answers and /readyz says
    # "models_loaded": false meanwhile (probes see a starting node, not a dead one)
    metrics_server: MetricsServer | None = None
    link_metrics: LinkMetrics | None = None
    health = Health(stale_after_s=HEALTH_STALE_S)
    readiness = NodeReadiness(wl.in_window)
    health.checks = readiness.checks
    if cfg.metrics.port:
        link_metrics = LinkMetrics()
        try:
            metrics_server = serve_metrics(link_metrics.registry, cfg.metrics.port, health=health)
        except EdgeError:
            audit.close()
            raise
    try:
        site = build_site(cfg, wl, specs, audit=audit)
    except BaseException:
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
        raise
    readiness.models_loaded = True
    readiness.cameras = site.health
    site.on_tick = health.tick  # the main loop's heartbeat: /healthz fails if it stops
    locked = site.bufs.lock_report
    if cfg.privacy.lock_memory and locked.failures:
        notify(f"[edge] face buffers NOT locked in RAM: {locked.failures[0]}")

    curve = None
    if cfg.alerts.hub_public_key and cfg.alerts.node_secret_key:
        curve = CurveConfig(Path(cfg.alerts.node_secret_key), Path(cfg.alerts.hub_public_key))
    if link_metrics is not None:
        link_metrics.registry.register(
            PipelineCollector(lambda: {n: node.stats for n, node in site.nodes.items()}))
        link_metrics.registry.register(CameraCollector(site.health))
    # open the sources before any thread starts: a missing file stops start-up cleanly
    try:
        site.open_sources()
    except EdgeError:
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
        raise
    names = ", ".join(spec.name for spec in specs)
    deployment = DeploymentInfo(
        wl.meta.deployment_id[:64] or "unspecified", wl.meta.authorising_officer[:256],
        wl.meta.window_start, wl.meta.window_end, len(wl.subjects))
    sender: OutboxSender
    if cfg.alerts.transport == "nats":
        # the subject's deployment is the watchlist's: alerts carry it, the hub checks both
        sender = NatsSender(Path(cfg.alerts.outbox), nats_settings(cfg), cfg.node.node_id,
                            wl.meta.deployment_id, audit=audit, metrics=link_metrics,
                            camera=names[:128], counts=site.totals, health=site.health,
                            audit_head=audit.anchor, deployment=deployment)
    else:
        sender = ZmqSender(Path(cfg.alerts.outbox), cfg.alerts.endpoint, cfg.node.node_id,
                           curve, audit=audit, metrics=link_metrics, camera=names[:128],
                           counts=site.totals, health=site.health, audit_head=audit.anchor,
                           deployment=deployment)
    try:
        sender.start()
    except BaseException:
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
        raise
    readiness.hub_connected = lambda: sender.hub_connected
    site.sinks.append(sender)
    audit.append("node.start", {
        "node_id": cfg.node.node_id, "cameras": [{"name": s.name, "label": s.label} for s in specs],
        "deployment_id": wl.meta.deployment_id, "watchlist_entries": len(wl),
        "threshold": cfg.match.threshold, "zeroize": cfg.privacy.zeroize,
        "hardening": report.to_dict(), "memory_locked": not locked.failures,
        "recogniser": wl.meta.model, "fusion": wl.stats()["fusion"],
        "normalisation": wl.stats()["normalisation"],
    })

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        site.stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    kinds = ", ".join(f"{n} ({site.sources[n].__class__.__name__})" for n in site.nodes)
    notify(f"[edge] node {cfg.node.node_id}, cameras: {kinds}; watchlist "
           f"{wl.meta.deployment_id}: {len(wl.subjects)} subjects; threshold {cfg.match.threshold}")
    undecodable: list[str] = []
    try:
        stats = site.run(max_frames=req.max_frames)
        for name, st in stats.items():
            src = site.sources[name].stats
            notify(f"[edge] camera {name}: {st.frames} frames, {st.faces_seen} faces seen, "
                   f"{st.alerts} alerts, {st.faces_discarded} discarded; bad frames "
                   f"{src.bad_frames}, reconnects {src.reconnects}")
            if _is_file_source(site.sources[name]) and st.frames == 0 and not stop.is_set():
                why = ", ".join(sorted(src.reasons)) or src.reason or "no frame decoded"
                undecodable.append(f"camera {name}: not one frame could be decoded "
                                   f"({why}; bad frames {src.bad_frames})")
        notify(f"[edge] {site.stopped_reason}")
        if req.hold_after_end and not stop.is_set():
            print("[edge] holding after end of source", flush=True)
            while not stop.wait(0.2):
                health.tick()
    finally:
        audit.append("node.stop", {"reason": site.stopped_reason or "error", **site.totals()})
        # what is not acked stays in the outbox for the next start; the hub hears we stopped
        sender.close(timeout=1.0, reason=site.stopped_reason or "error")
        if metrics_server is not None:
            metrics_server.close()
        audit.close()
    if site.stopped_reason == "watchlist window closed":
        destroy_if_due(req, notify)
    if undecodable:  # a file that gives nothing is an error, not an empty success
        raise SourceError("; ".join(undecodable))
    return stats


def nats_settings(cfg: Config) -> NatsSettings:
    """The node's ``[alerts.nats]`` as connection settings (files are read at start)."""
    n = cfg.alerts.nats

    def p(v: str | None) -> Path | None:
        return Path(v) if v else None

    return NatsSettings(
        servers=tuple(n.servers), user=n.user, password_file=p(n.password_file),
        nkey_seed_file=p(n.nkey_seed_file), creds_file=p(n.creds_file), tls_ca=p(n.tls_ca),
        tls_cert=p(n.tls_cert), tls_key=p(n.tls_key), connect_timeout_s=n.connect_timeout_s,
        name=f"node {cfg.node.node_id}")


def _is_file_source(src: FrameSource) -> bool:
    return isinstance(src, ImageFolderSource) or (
        isinstance(src, CaptureSource) and src.kind == "file")
