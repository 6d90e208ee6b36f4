"""The node's NATS JetStream transport: alerts and heartbeats into streams, decisions back.

Everything about queueing, re-sends, heartbeats and the audit log is in
:class:`edge.link.sender.OutboxSender`; this class moves frames between it and the fabric
(``edge.link.nats_fabric``). nats-py is asyncio, so an I/O thread runs an event loop: the
sender thread hands it publishes (``_transmit`` never blocks) and reads what comes back from a
queue (``_wait``). What comes back is phrased in the link's own vocabulary, so the base class
needs no change:

- the stream's PubAck of an alert (Nats-Msg-Id = alert id: the server de-duplicates re-sends)
  becomes an ``edge.ack.v1``, ``duplicate`` when the stream already held it; only then is the
  alert removed from the outbox;
- the PubAck of a heartbeat becomes an ``edge.heartbeat-ack.v1`` (the fabric answers);
- a decision read from the node's durable consumer is handed over as it is; its
  ``edge.decision-ack.v1`` (sent after the audit record is written) acks the JetStream message,
  so a decision not yet in the audit log is redelivered, and one already there is not
  written twice (the outbox remembers decision ids).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from edge.link.metrics import LinkMetrics
from edge.link.nats_fabric import (
    ALERTS_STREAM,
    MSG_ID_HEADER,
    NatsSettings,
    check_token,
    error_reason,
    node_consumer,
    node_inbox,
    pack,
    subject,
    unpack,
)
from edge.link.schema import (
    ALERT,
    DECISION_ACK,
    HEARTBEAT,
    Ack,
    DeploymentInfo,
    HeartbeatAck,
    MessageError,
    Nack,
    parse_decision,
    parse_decision_ack,
)
from edge.link.sender import (
    AuditHeadProvider,
    AuditRecorder,
    CountsProvider,
    HealthProvider,
    OutboxSender,
)

log = logging.getLogger(__name__)

_FETCH_BATCH = 32
_FETCH_TIMEOUT_S = 1.0
_DECISION_ACK_WAIT_S = 30.0  # a decision not acked (not in the audit log) comes back after this
_LOG_EVERY_S = 60.0


class NatsSender(OutboxSender):
    """Deliver the outbox to the JetStream fabric as node ``node_id`` of ``fabric_deployment``."""

    def __init__(
        self,
        outbox_path: Path,
        settings: NatsSettings,
        node_id: str,
        fabric_deployment: str,
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
            outbox_path, node_id, audit, metrics, hub=f"NATS {','.join(settings.servers)}",
            camera=camera, ack_timeout=ack_timeout, max_backoff=max_backoff,
            heartbeat_interval=heartbeat_interval, max_in_flight=max_in_flight, counts=counts,
            health=health, audit_head=audit_head, deployment=deployment,
        )
        self.settings = settings
        self.fabric_deployment = fabric_deployment
        self._inbox: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._io: threading.Thread | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._closing = False
        self._main: concurrent.futures.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[concurrent.futures.Future[None]] = set()
        self._flight_lock = threading.Lock()
        self._decision_msgs: dict[str, Msg] = {}  # decision id -> the message to ack
        self._decision_lock = threading.Lock()
        self._logged: dict[str, float] = {}
        self._connect_kwargs: dict[str, Any] = {}

    # -- the transport hooks ------------------------------------------------------------

    def _open(self) -> None:
        check_token(self.node_id, "node_id")
        check_token(self.fabric_deployment, "deployment_id")
        self._connect_kwargs = self.settings.connect_kwargs()  # bad files stop start() here
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._io = threading.Thread(target=loop.run_forever, name="alert-sender-nats",
                                    daemon=True)
        self._io.start()
        self._main = asyncio.run_coroutine_threadsafe(self._run_fabric(), loop)

    def _transmit(self, frames: list[bytes]) -> bool:
        nc, loop = self._nc, self._loop
        if not frames or loop is None:
            return False
        tag = frames[0]
        if tag == DECISION_ACK:
            return self._ack_decision(frames)
        if nc is None or not nc.is_connected:
            return False
        if tag == ALERT:
            try:
                alert_id = str(json.loads(frames[1])["alert_id"])
            except (ValueError, KeyError, IndexError, TypeError):
                return True  # cannot happen for outbox rows (validated at send); nothing to do
            coro = self._publish("alert", alert_id, None, frames)
        elif tag == HEARTBEAT:
            try:
                sent_at = json.loads(frames[1]).get("sent_at")
            except (ValueError, IndexError, AttributeError):
                sent_at = None
            coro = self._publish("health", None, sent_at, frames)
        else:
            return True  # nothing else travels node -> fabric
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        with self._flight_lock:
            self._in_flight.add(fut)
        fut.add_done_callback(self._landed)
        return True

    def _landed(self, fut: concurrent.futures.Future[None]) -> None:
        with self._flight_lock:
            self._in_flight.discard(fut)

    def _wait(self, timeout: float) -> list[list[bytes]]:
        out: list[list[bytes]] = []
        try:
            item = self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return out
        while True:
            if item is not None:
                out.append(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return out

    def _wake(self) -> None:
        self._inbox.put(None)

    def _close_link(self) -> None:
        loop = self._loop
        if loop is None:
            return
        deadline = time.monotonic() + (0.5 if self._stop_reason is not None else 0.0)
        while time.monotonic() < deadline:  # the stop heartbeat queued last, a moment to land
            with self._flight_lock:
                if not self._in_flight:
                    break
            time.sleep(0.01)
        self._closing = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=3)
        except Exception:
            log.debug("NATS connection did not close cleanly", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._io is not None:
            self._io.join(timeout=3)
        if not loop.is_running():
            loop.close()
        self._loop = None

    # -- on the I/O thread ----------------------------------------------------------------

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.fabric_errors.labels(reason).inc()

    def _log_limited(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -1e9) >= _LOG_EVERY_S:
            self._logged[key] = now
            log.warning(msg + " (repeats counted in metrics, logged once a minute)", *args)

    async def _on_error(self, exc: Exception) -> None:
        reason = error_reason(exc)
        self._count(reason)
        self._log_limited("err:" + reason, "NATS fabric error (%s): %s", reason,
                          str(exc)[:200])

    async def _run_fabric(self) -> None:
        self._task = asyncio.current_task()
        backoff = 0.25
        while not self._closing:
            try:
                nc = await nats.connect(
                    **self._connect_kwargs, inbox_prefix=node_inbox(self.node_id),
                    allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                    error_cb=self._on_error,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = error_reason(exc)
                self._count(reason)
                self._log_limited("connect:" + reason, "cannot connect to the NATS fabric "
                                  "(%s): %s; alerts wait in the outbox", reason, str(exc)[:200])
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            self._nc, self._js = nc, nc.jetstream(timeout=self.ack_timeout)
            log.info("connected to the NATS fabric as node %s (deployment %s)", self.node_id,
                     self.fabric_deployment)
            self._wake()  # the sender thread retries what was blocked at once
            await self._read_decisions(nc, self._js)
            return

    async def _shutdown(self) -> None:
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), timeout=2)
            except Exception:
                log.debug("NATS close failed", exc_info=True)
        # everything still running on this loop (publishes in flight, the consumers) ends here
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _publish(self, kind: str, alert_id: str | None, sent_at: Any,
                       frames: list[bytes]) -> None:
        js = self._js
        if js is None:
            return
        headers, payload = pack(frames)
        if alert_id is not None:
            headers[MSG_ID_HEADER] = alert_id  # server-side de-duplication of re-sends
        subj = subject(self.fabric_deployment, self.node_id, kind)
        try:
            ack = await js.publish(subj, payload, timeout=self.ack_timeout, headers=headers)
        except nats.errors.MaxPayloadError:
            if alert_id is not None:  # the fabric can never take it: as a hub's refusal
                self._inbox.put(Nack(alert_id, "max_payload").to_frames())
            self._count("max_payload")
            return
        except Exception as exc:  # not stored (no ack): the outbox re-sends it after back-off
            reason = error_reason(exc)
            self._count(reason)
            self._log_limited("pub:" + reason, "NATS publish of %s not acknowledged (%s)",
                              kind, reason)
            return
        if alert_id is not None:
            self._inbox.put(Ack(alert_id, "duplicate" if ack.duplicate else "stored")
                            .to_frames())
        else:
            self._inbox.put(HeartbeatAck(sent_at, time.time()).to_frames())

    async def _read_decisions(self, nc: NatsClient, js: JetStreamContext) -> None:
        """Fetch this node's decisions from its durable consumer until closing."""
        name = node_consumer(self.node_id)
        filt = subject(self.fabric_deployment, self.node_id, "decision")
        psub: JetStreamContext.PullSubscription | None = None
        while not self._closing:
            if not nc.is_connected:
                await asyncio.sleep(0.2)
                continue
            if psub is None:
                try:
                    await js.add_consumer(ALERTS_STREAM, ConsumerConfig(
                        name=name, durable_name=name, filter_subject=filt,
                        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=_DECISION_ACK_WAIT_S, max_ack_pending=256))
                    psub = await js.pull_subscribe_bind(
                        durable=name, stream=ALERTS_STREAM,
                        inbox_prefix=(node_inbox(self.node_id) + ".").encode())
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reason = error_reason(exc)
                    self._count(reason)
                    self._log_limited("consumer:" + reason, "cannot open the decisions "
                                      "consumer %s (%s)", name, reason)
                    await asyncio.sleep(1.0)
                    continue
            try:
                msgs = await psub.fetch(_FETCH_BATCH, timeout=_FETCH_TIMEOUT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._count(error_reason(exc))
                await asyncio.sleep(0.5)
                continue
            for m in msgs:
                await self._on_decision_msg(m)

    async def _on_decision_msg(self, m: Msg) -> None:
        try:
            frames = unpack(m.headers, m.data)
            decision = parse_decision(frames)
        except MessageError as exc:
            await m.term()  # can never be handled: ended for good, not redelivered
            self._refused(exc.reason)
            return
        with self._decision_lock:
            self._decision_msgs[decision.decision_id] = m
        self._inbox.put(frames)

    def _ack_decision(self, frames: list[bytes]) -> bool:
        try:
            did = parse_decision_ack(frames).decision_id
        except MessageError:
            return True
        with self._decision_lock:
            m = self._decision_msgs.pop(did, None)
        if m is None or self._loop is None:
            return True
        asyncio.run_coroutine_threadsafe(m.ack(), self._loop)
        return True
