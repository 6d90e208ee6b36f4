"""The hub's ZeroMQ thread: owns the ROUTER, hands each node message to the service core.

One thread owns the socket (ZeroMQ sockets are not thread-safe): it receives messages, lets
the handler (:class:`edge.hub.service.Hub`) act on them, and sends whatever the handler sends
back through :meth:`HubRouter.send`. Other threads (the web app deciding on an alert) reach it
through :meth:`HubRouter.wake`, a pipe in the same poller.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import zmq

from edge.link.zeromq import CurveServerConfig, HubSocket

log = logging.getLogger(__name__)

_POLL_MS = 250  # also the period of the handler's tick()
_MAX_BATCH = 1000  # messages taken per wake-up, so the monitor and wake pipe are not starved


@dataclass(frozen=True)
class Incoming:
    """One message from a node: its frames (tag first), who sent it, where to answer."""

    frames: list[bytes]
    peer: str | None  # the node name its CURVE key authenticates; None without CURVE
    route: bytes  # opaque return address for HubRouter.send
    # on the NATS fabric: the deployment of the subject it came on (authorised by NATS
    # permissions, like ``peer``) and its sequence number in the alerts stream
    deployment: str | None = None
    seq: int = 0


class NodeMessages(Protocol):
    """What the router drives: the hub's service core."""

    def handle(self, msg: Incoming) -> None:
        """Act on one node message (must not raise)."""

    def woken(self) -> None:
        """Another thread called HubRouter.wake (e.g. a decision is waiting to go out)."""

    def tick(self, now: float) -> None:
        """Periodic work on the router thread (gauges, retention)."""

    def handshake_refused(self, reason: str) -> None:
        """A connection was refused before any message (unknown key, wrong hub key...)."""


class HubRouter:
    """The ROUTER socket and the thread that serves it; ``start()`` after construction."""

    def __init__(self, endpoint: str, curve: CurveServerConfig | None,
                 handler: NodeMessages) -> None:
        self.handler = handler
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            self._hs = HubSocket(self._ctx, endpoint, curve, on_refused=handler.handshake_refused)
        except BaseException:
            self._ctx.term()
            raise
        self.endpoint = self._hs.endpoint
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def start(self) -> HubRouter:
        self._thread = threading.Thread(target=self._run, name="hub-zmq", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Make the router thread call ``handler.woken()`` soon; safe from any thread."""
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def send(self, route: bytes, frames: list[bytes]) -> bool:
        """Send to the node at ``route`` without blocking (router thread only); False if gone."""
        try:
            self._hs.sock.send_multipart([route, *frames], zmq.NOBLOCK)
            return True
        except (zmq.Again, zmq.ZMQError):
            return False  # node gone; it will resend / we will re-push on its next heartbeat

    def stop(self) -> None:
        """Stop the thread (it closes the socket) and release the wake-up pipe."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        else:
            self._close_socket()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def _close_socket(self) -> None:
        self._hs.close()
        self._ctx.term()

    def _run(self) -> None:
        hs = self._hs
        poller = zmq.Poller()
        poller.register(hs.sock, zmq.POLLIN)
        if hs.monitor is not None:
            poller.register(hs.monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(_POLL_MS))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except OSError:
                        pass
                    self.handler.woken()
                if hs.monitor is not None and hs.monitor in events:
                    hs.handle_monitor()
                if hs.sock in events:
                    self._receive()
                self.handler.tick(time.time())
        finally:
            self._close_socket()

    def _receive(self) -> None:
        for _ in range(_MAX_BATCH):
            try:
                msg = self._hs.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            # msg[0] is the ROUTER's routing id; the CURVE identity rides on the first frame.
            peer = self._hs.peer_name(msg[1]) if len(msg) > 1 else None
            self.handler.handle(Incoming([f.bytes for f in msg[1:]], peer, msg[0].bytes))
