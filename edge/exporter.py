"""The Prometheus HTTP endpoint that node and hub each expose: counts and latencies only.

Metrics are scraped by systems outside the privacy boundary, so labels are restricted to
fixed vocabularies (reason codes, decision values); never ids, names, scores or pixels.
Each process part owns its own ``CollectorRegistry`` so tests can run several in one process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from edge.errors import EdgeError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)


class MetricsServer:
    """A running Prometheus HTTP endpoint; ``close()`` stops it (tests start several)."""

    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self._server = server
        self._thread = thread
        self.port = port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Expose ``registry`` at http://host:port/metrics (port 0 picks a free port)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise EdgeError(f"cannot start metrics endpoint on {host}:{port}: {exc.strerror}") from None
    real_port = server.server_address[1]
    log.info("metrics at http://%s:%d/metrics", host, real_port)
    return MetricsServer(server, thread, real_port)
