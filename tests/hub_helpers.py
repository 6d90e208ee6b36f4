"""Helpers shared by the hub / transport / outbox / browser tests (real sockets, no mocks)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edge.hub.config import HubConfig, load_hub_config
from edge.hub.officers import add_officer
from edge.hub.service import Hub
from edge.hub.web import HubServer, config_tls

PASSWORD = "correct horse battery"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def hub_config(tmp: Path, **over: Any) -> HubConfig:
    """A hub config in ``tmp`` (random ZeroMQ port unless zmq.bind is given); decisions are
    final at once (``ui.undo_s`` 0) unless a test asks for an undo window."""
    o: dict[str, Any] = {
        "zmq.bind": "tcp://127.0.0.1:0",
        "store.path": str(tmp / "hub" / "hub.sqlite"),
        "store.officers_file": str(tmp / "hub" / "officers.json"),
        "metrics.port": 0,
        "ui.node_lost_after_s": 2,
        "ui.undo_s": 0,
    }
    o.update(over)
    return load_hub_config(None, o)


class RunningHub:
    """Hub + web server in this process; ``close()`` stops both."""

    def __init__(self, cfg: HubConfig, officers: tuple[str, ...] = ("pc1",)) -> None:
        for name in officers:
            if not Path(cfg.store.officers_file).exists() or name not in Path(
                cfg.store.officers_file
            ).read_text():
                add_officer(Path(cfg.store.officers_file), name, PASSWORD)
        self.hub = Hub(cfg).start()
        self.server = HubServer(self.hub, tls=config_tls(cfg)).start()  # random port on 127.0.0.1
        self.endpoint = self.hub.endpoint
        self.url = self.server.url

    @property
    def store(self):  # noqa: ANN201
        return self.hub.store

    def client(self, officer: str | None = "pc1", verify: Any = True) -> httpx.Client:
        """A client, signed in as ``officer``; ``verify``: an ssl.SSLContext trusting the CA."""
        c = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10, verify=verify)
        if officer:
            r = c.post("/login", data={"officer": officer, "password": PASSWORD})
            assert r.status_code == 303, r.text
        return c

    def close(self) -> None:
        self.server.stop()
        self.hub.stop()


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def metric(registry: Any, name: str, labels: dict[str, str] | None = None) -> float:
    v = registry.get_sample_value(name, labels or {})
    return 0.0 if v is None else v
