"""The Prometheus HTTP endpoint that node and hub each expose: counts, latencies and health.

Metrics are scraped by systems outside the privacy boundary, so labels are restricted to
fixed vocabularies (reason codes, decision values); never ids, names, scores or pixels.
Each process part owns its own ``CollectorRegistry`` so tests can run several in one process.

Beside ``/metrics`` the endpoint answers ``/healthz`` (the process is up and its main loop
ticked recently) and ``/readyz`` (200 when every readiness check passes, else 503 with the
names of the checks that failed), for orchestrators' probes. Check names and booleans only.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from edge.errors import EdgeError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)

Checks = Callable[[], Mapping[str, bool]]
HealthAnswer = tuple[int, str, bytes]  # status, content type, body


class Health:
    """Liveness and readiness of one process, as ``/healthz`` and ``/readyz`` answer them.

    ``tick()`` is called by the process's main loop; once it has ticked, no tick for
    ``stale_after_s`` means hung (``/healthz`` 503). Before the first tick (models loading)
    the process counts as up and readiness says what is missing. ``watch_loop=False``:
    answering is enough (a web app whose server answers is up). ``checks`` returns
    ``{name: passed}``; a check that raises counts as failed (its exception type is logged,
    never its message).
    """

    def __init__(self, checks: Checks | None = None, stale_after_s: float = 5.0,
                 watch_loop: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.checks = checks
        self.stale_after_s = stale_after_s
        self.watch_loop = watch_loop
        self.clock = clock
        self._last_tick: float | None = None  # the loop has not begun yet

    def tick(self) -> None:
        self._last_tick = self.clock()

    def alive(self) -> bool:
        last = self._last_tick
        return not self.watch_loop or last is None or self.clock() - last <= self.stale_after_s

    def results(self) -> dict[str, bool]:
        """Every readiness check's result (liveness first)."""
        out = {"alive": self.alive()}
        if self.checks is not None:
            try:
                out.update({str(k): bool(v) for k, v in self.checks().items()})
            except Exception as exc:  # a broken check means not ready, never a dead endpoint
                log.warning("readiness checks failed: %s", type(exc).__name__)
                out["checks"] = False
        return out

    def healthz(self) -> HealthAnswer:
        if self.alive():
            return 200, "text/plain; charset=utf-8", b"ok\n"
        return 503, "text/plain; charset=utf-8", b"main loop stalled\n"

    def readyz(self) -> HealthAnswer:
        res = self.results()
        failed = sorted(k for k, ok in res.items() if not ok)
        body = {"ready": not failed, "failed": failed, "checks": res}
        return (503 if failed else 200), "application/json", json.dumps(body).encode() + b"\n"


def health_answer(health: Health, path: str) -> HealthAnswer | None:
    """The answer to ``/healthz`` or ``/readyz``; None for any other path."""
    if path == "/healthz":
        return health.healthz()
    if path == "/readyz":
        return health.readyz()
    return None


class _QuietHandler(WSGIRequestHandler):
    """No access log lines on stderr (a scrape every few seconds would flood it)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _app(registry: CollectorRegistry, health: Health | None) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = health_answer(health, environ.get("PATH_INFO", "")) if health else None
        if answer is None:
            return metrics(environ, start_response)
        status, ctype, body = answer
        reason = "OK" if status == 200 else "Service Unavailable"
        start_response(f"{status} {reason}", [("Content-Type", ctype),
                                              ("Content-Length", str(len(body))),
                                              ("Cache-Control", "no-store")])
        return [body]

    return app


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


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1",
                  health: Health | None = None) -> MetricsServer:
    """Expose ``registry`` at http://host:port/metrics (port 0 picks a free port), and with
    ``health`` also ``/healthz`` and ``/readyz``."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = make_server(host, port, _app(registry, health), Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise EdgeError(f"cannot start metrics endpoint on {host}:{port}: {exc.strerror}") from None
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    real_port = server.server_address[1]
    log.info("metrics at http://%s:%d/metrics", host, real_port)
    return MetricsServer(server, thread, real_port)
