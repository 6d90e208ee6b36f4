"""The node's ZeroMQ transport: one DEALER to the hub's ROUTER, woken through a pipe.

Everything about queueing, acks, re-sends, heartbeats and decisions is in
:class:`edge.link.sender.OutboxSender`; this class only moves frames. The DEALER is created in
``start()`` (so a bad endpoint or key fails there, in the caller's thread) and is used and
closed only by the sender thread afterwards. A pipe registered in the same poller lets
``send()`` and ``close()`` wake that thread at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq

from edge.link.metrics import LinkMetrics
from edge.link.schema import DeploymentInfo
from edge.link.sender import (
    AuditHeadProvider,
    AuditRecorder,
    CountsProvider,
    HealthProvider,
    OutboxSender,
)
from edge.link.zeromq import CurveConfig, node_socket


class ZmqSender(OutboxSender):
    """Deliver the outbox to the hub at ``endpoint`` over ZeroMQ (CURVE when ``curve`` is set)."""

    def __init__(
        self,
        outbox_path: Path,
        endpoint: str,
        node_id: str,
        curve: CurveConfig | None = None,
        audit: AuditRecorder | None = None,
        metrics: LinkMetrics | None = None,
        *,
        camera: str = "",
        ack_timeout: float = 2.0,
        max_backoff: float = 10.0,
        heartbeat_interval: float = 1.0,
        max_in_flight: int = 64,
        counts: CountsProvider | None = None,
        health: HealthProvider | None = None,
        audit_head: AuditHeadProvider | None = None,
        deployment: DeploymentInfo | None = None,
    ) -> None:
        super().__init__(
            outbox_path, node_id, audit, metrics, hub=endpoint, camera=camera,
            ack_timeout=ack_timeout, max_backoff=max_backoff,
            heartbeat_interval=heartbeat_interval, max_in_flight=max_in_flight, counts=counts,
            health=health, audit_head=audit_head, deployment=deployment,
        )
        self.endpoint = endpoint
        self.curve = curve
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

    def _open(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            sock = node_socket(ctx, self.endpoint, self.curve)
        except BaseException:
            ctx.term()
            raise
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._ctx, self._sock = ctx, sock

    def _transmit(self, frames: list[bytes]) -> bool:
        assert self._sock is not None
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # IMMEDIATE: no connection to the hub yet
            return False
        return True

    def _wait(self, timeout: float) -> list[list[bytes]]:
        sock = self._sock
        assert sock is not None
        events = dict(self._poller.poll(max(0, min(1000, int(timeout * 1000) + 1))))
        if self._wake_r in events:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass
        received: list[list[bytes]] = []
        if sock in events:
            while True:
                try:
                    received.append(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        return received

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are closing)

    def _close_link(self) -> None:
        if self._sock is not None:
            # a moment for the stop heartbeat queued last to leave; never longer
            self._sock.close(linger=300 if self._stop_reason is not None else 0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def close(self, timeout: float = 5.0, reason: str | None = "stopped") -> None:
        """Stop delivering (see :meth:`OutboxSender.close`), then release the wake-up pipe."""
        super().close(timeout, reason)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
