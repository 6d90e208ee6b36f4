"""Builds a node from its config: the one place where models, watchlist, link and audit meet."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.config import Config
from edge.face.registry import FaceModels, load_face_models
from edge.node.pipeline import AlertSink, AuditSink, Node
from edge.watchlist.index import Watchlist


def build_node(cfg: Config, watchlist: Watchlist, models: FaceModels | None = None,
               sink: AlertSink | None = None, audit: AuditSink | None = None,
               clock: Callable[[], float] = time.time) -> Node:
    """One camera's pipeline; pass ``models`` to share one loaded pair between pipelines."""
    return Node(cfg, watchlist, models or load_face_models(cfg), sink=sink, audit=audit, clock=clock)
