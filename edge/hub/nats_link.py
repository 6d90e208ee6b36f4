"""The hub's side of the NATS JetStream fabric, in place of the ZeroMQ router.

Per deployment it serves, a durable pull consumer (explicit ack) on the alerts stream reads
that deployment's alerts and officers' decisions in stream order; a core subscription reads
its nodes' heartbeats. A worker thread hands each message to the service core
(:meth:`edge.hub.service.Hub.handle_fabric`) and acks it only after the store has committed
it, so a hub killed mid-way reads it again (the store keeps each alert id once).

The store is a view of the stream: it records how far it has read each consumer, and at
start the consumer is re-created from there (from the start of the stream for an empty
store), so a hub restarted, added later or rebuilt from an empty disk catches up.

nats-py is asyncio: an I/O thread runs its event loop; SQLite work never runs on it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from edge.errors import EdgeError
from edge.hub.config import NatsSection
from edge.hub.router import Incoming
from edge.link.nats_fabric import (
    ALERTS_STREAM,
    MSG_ID_HEADER,
    error_reason,
    hub_consumer,
    hub_inbox,
    pack,
    parse_subject,
    stream_configs,
    subject,
    unpack,
)
from edge.link.schema import MessageError

log = logging.getLogger(__name__)

_POLL_S = 0.25  # also the period of the handler's tick()
_FETCH_BATCH = 64
_ACK_WAIT_S = 30.0
_MAX_ACK_PENDING = 1024  # bounds what waits in the worker's queue
_POSITION_EVERY_S = 0.5
_LOG_EVERY_S = 60.0


class FabricMessages(Protocol):
    """What the link drives: the hub's service core."""

    def handle_fabric(self, msg: Incoming) -> bool:
        """Act on one message; False: not done (not acked: it comes again)."""

    def woken(self) -> None: ...

    def tick(self, now: float) -> None: ...

    def fabric_error(self, reason: str) -> None: ...


@dataclass
class _Item:
    msg: Incoming
    nats_msg: Msg | None  # None for heartbeats (core NATS: nothing to ack)
    consumer: str = ""
    seq: int = 0


class NatsHubLink:
    """The fabric connection, its consumers and the worker thread; ``start()`` after init."""

    def __init__(self, cfg: NatsSection, handler: FabricMessages,
                 position: Callable[[str], int], save_position: Callable[[str, int], None]
                 ) -> None:
        self.cfg = cfg
        self.handler = handler
        self._position = position
        self._save_position = save_position
        self.endpoint = ",".join(cfg.servers)
        self._kwargs = cfg.settings().connect_kwargs()  # bad files stop the hub here
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._io = threading.Thread(target=self._loop.run_forever, name="hub-nats-io",
                                    daemon=True)
        self._thread: threading.Thread | None = None  # the worker (readiness checks it)
        self._stop = threading.Event()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._logged: dict[str, float] = {}
        self._positions: dict[str, int] = {}  # consumer -> last seq handled, not yet saved
        self._held: dict[str, int] = {}  # consumer -> lowest seq not handled (not past it)
        self._connected = threading.Event()
        self._first_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> NatsHubLink:
        self._io.start()
        asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        # Wait a moment for the first connection, so wrong credentials or TLS files stop the
        # hub with one line; a fabric that is merely down is retried in the background.
        self._connected.wait(self.cfg.connect_timeout_s + 1.0)
        if self._first_error == "auth":
            self.stop()
            raise EdgeError(f"NATS fabric {self.endpoint} refused this hub's credentials")
        if self._first_error == "tls":
            self.stop()
            raise EdgeError(f"NATS fabric {self.endpoint}: TLS handshake failed (check "
                            "nats.tls_ca, and nats.tls_cert/tls_key if the servers ask for "
                            "a client certificate)")
        self._thread = threading.Thread(target=self._work, name="hub-nats", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            except Exception:
                log.debug("NATS connection did not close cleanly", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._io.join(timeout=5)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    def wake(self) -> None:
        """Make the worker call ``handler.woken()`` soon; safe from any thread."""
        self._queue.put(None)

    def send(self, route: bytes, frames: list[bytes]) -> bool:
        """Nothing is answered on the fabric (the stream's acks are the nodes' receipts)."""
        return False

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected

    def publish(self, deployment: str, node: str, kind: str, frames: list[bytes],
                msg_id: str) -> bool:
        """Publish an event (a decision) to the stream without waiting; False if not now."""
        if not self.connected or self._stop.is_set():
            return False
        asyncio.run_coroutine_threadsafe(
            self._publish(subject(deployment, node, kind), frames, msg_id), self._loop)
        return True

    def delete_from_stream(self, seq: int) -> None:
        """Remove one message (a rejected alert, with its probe) from the alerts stream."""
        if self.connected:
            asyncio.run_coroutine_threadsafe(self._delete(seq), self._loop)

    # -- worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        next_save = next_tick = 0.0
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                item = None
            if item is None:
                self.handler.woken()
            else:
                self._handle(item)
            now = time.time()
            if now >= next_tick:  # not after every message: a burst is stored first
                next_tick = now + _POLL_S
                self.handler.tick(now)
            if now >= next_save:
                next_save = now + _POSITION_EVERY_S
                self._flush_positions()
        self._flush_positions()

    def _handle(self, item: _Item) -> None:
        ok = self.handler.handle_fabric(item.msg)
        if item.nats_msg is None:
            return
        m = item.nats_msg
        if ok:
            self._call(m.ack())
            held = self._held.get(item.consumer)
            if held == item.seq:
                del self._held[item.consumer]
            if item.consumer not in self._held:
                self._positions[item.consumer] = max(self._positions.get(item.consumer, 0),
                                                     item.seq)
        else:  # e.g. the disk is full: read it again later, never skip it
            self._call(m.nak(delay=1.0))
            self._held[item.consumer] = min(self._held.get(item.consumer, item.seq), item.seq)

    def _flush_positions(self) -> None:
        for consumer, seq in list(self._positions.items()):
            try:
                self._save_position(consumer, seq)
            except Exception:
                log.exception("cannot record the fabric position of %s", consumer)
                return
            del self._positions[consumer]

    def _call(self, coro: Any) -> None:
        try:
            asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # loop closed while stopping: redelivered next time
            coro.close()

    # -- I/O thread -------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.handler.fabric_error(reason)

    def _log_limited(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -1e9) >= _LOG_EVERY_S:
            self._logged[key] = now
            log.warning(msg + " (repeats counted in metrics, logged once a minute)", *args)

    async def _on_error(self, exc: Exception) -> None:
        reason = error_reason(exc)
        self._count(reason)
        if reason in ("auth", "tls") and self._nc is None and self._first_error is None:
            self._first_error = reason  # refused before the first connection: start() says so
            self._connected.set()
        self._log_limited("err:" + reason, "NATS fabric error (%s): %s", reason, str(exc)[:200])

    async def _run(self) -> None:
        self._task = asyncio.current_task()
        backoff = 0.25
        while not self._stop.is_set():
            try:
                nc = await nats.connect(**self._kwargs, inbox_prefix=hub_inbox(self.cfg.hub_name),
                                        allow_reconnect=True, max_reconnect_attempts=-1,
                                        reconnect_time_wait=0.5, error_cb=self._on_error)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = error_reason(exc)
                self._count(reason)
                if self._first_error is None:
                    self._first_error = reason
                self._connected.set()
                self._log_limited("connect:" + reason, "cannot connect to the NATS fabric "
                                  "%s (%s): %s", self.endpoint, reason, str(exc)[:200])
                await asyncio.sleep(backoff)
                backoff = min(10.0, backoff * 2)
                continue
            break
        else:
            return
        self._nc, self._js = nc, nc.jetstream(timeout=5.0)
        self._connected.set()
        log.info("hub %s on the NATS fabric %s, deployments %s", self.cfg.hub_name,
                 self.endpoint, ", ".join(self.cfg.deployments))
        if self.cfg.create_streams:
            await self._create_streams(self._js)
        for dep in self.cfg.deployments:
            await nc.subscribe(subject(dep, "*", "health"), cb=self._on_health)
        await asyncio.gather(*(self._consume(nc, self._js, dep)
                               for dep in self.cfg.deployments))

    async def _create_streams(self, js: JetStreamContext) -> None:
        for cfg in stream_configs(replicas=self.cfg.replicas):
            try:
                await js.add_stream(**cfg)
            except Exception as exc:
                self._count(error_reason(exc))
                log.warning("cannot create stream %s: %s", cfg["name"], str(exc)[:200])

    async def _on_health(self, m: Msg) -> None:
        parsed = parse_subject(m.subject)
        if parsed is None:
            return
        dep, node, _ = parsed
        try:
            frames = unpack(m.headers, m.data)
        except MessageError as exc:
            frames = [b"", exc.reason.encode()]  # refused and counted by the core
        self._queue.put(_Item(Incoming(frames, node, b"", dep), None))

    async def _consume(self, nc: NatsClient, js: JetStreamContext, dep: str) -> None:
        """Read one deployment's alerts and decisions until stopping."""
        name = hub_consumer(self.cfg.hub_name, dep)
        inbox = (hub_inbox(self.cfg.hub_name) + ".").encode()
        psub: JetStreamContext.PullSubscription | None = None
        created = False
        while not self._stop.is_set():
            if not nc.is_connected:
                await asyncio.sleep(0.2)
                continue
            if psub is None:
                try:
                    if not created:
                        await self._create_consumer(js, name, dep)
                        created = True
                    psub = await js.pull_subscribe_bind(durable=name, stream=ALERTS_STREAM,
                                                        inbox_prefix=inbox)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reason = error_reason(exc)
                    self._count(reason)
                    self._log_limited(f"consumer:{dep}:{reason}", "cannot read deployment %s "
                                      "from the fabric (%s): %s", dep, reason, str(exc)[:200])
                    await asyncio.sleep(2.0)
                    continue
            try:
                msgs = await psub.fetch(_FETCH_BATCH, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._count(error_reason(exc))
                await asyncio.sleep(0.5)
                continue
            for m in msgs:
                self._queue.put(self._item(m, dep, name))

    async def _create_consumer(self, js: JetStreamContext, name: str, dep: str) -> None:
        """(Re-)create the durable from where this store stands (all of it when empty)."""
        pos = self._position(name)
        try:
            await js.delete_consumer(ALERTS_STREAM, name)
        except nats.js.errors.NotFoundError:
            pass
        if pos > 0:
            policy: dict[str, Any] = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                                      "opt_start_seq": pos + 1}
        else:
            policy = {"deliver_policy": DeliverPolicy.ALL}
        await js.add_consumer(ALERTS_STREAM, ConsumerConfig(
            name=name, durable_name=name, filter_subject=f"edge.{dep}.>",
            ack_policy=AckPolicy.EXPLICIT, ack_wait=_ACK_WAIT_S,
            max_ack_pending=_MAX_ACK_PENDING, **policy))
        log.info("reading deployment %s from the fabric from stream sequence %d", dep, pos + 1)

    def _item(self, m: Msg, dep: str, consumer: str) -> _Item:
        parsed = parse_subject(m.subject)
        node = parsed[1] if parsed is not None else ""
        try:
            frames = unpack(m.headers, m.data)
        except MessageError as exc:
            frames = [b"", exc.reason.encode()]
        try:
            seq = m.metadata.sequence.stream
        except Exception:  # not a JetStream message: cannot happen on a pull consumer
            seq = 0
        return _Item(Incoming(frames, node, b"", dep, seq), m, consumer, seq)

    async def _publish(self, subj: str, frames: list[bytes], msg_id: str) -> None:
        js = self._js
        if js is None:
            return
        headers, payload = pack(frames)
        headers[MSG_ID_HEADER] = msg_id
        try:
            await js.publish(subj, payload, headers=headers)
        except Exception as exc:  # published again by the next tick
            reason = error_reason(exc)
            self._count(reason)
            self._log_limited("pub:" + reason, "decision not published (%s)", reason)

    async def _delete(self, seq: int) -> None:
        js = self._js
        if js is None:
            return
        try:
            await js.delete_msg(ALERTS_STREAM, seq)
        except nats.js.errors.NotFoundError:
            pass  # another hub deleted it first
        except Exception as exc:
            self._count(error_reason(exc))
            log.warning("could not delete a rejected alert from the stream (%s)",
                        error_reason(exc))

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
