"""The hub's core: ZeroMQ ROUTER loop, store, decision dispatch, retention, live event bus.

Threads: one ZeroMQ thread owns the ROUTER (alerts in, acks/decisions out); the web app
(uvicorn, asyncio) reads the store and pushes decisions through :meth:`Hub.decide`, which
wakes the ZeroMQ thread through a pipe. New alerts reach open tablet streams through
:class:`EventBus`, which hands events from the ZeroMQ thread to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from edge.hub.config import HubConfig
from edge.hub.metrics import HubMetrics
from edge.hub.officers import Officers
from edge.hub.store import HubStore
from edge.link import zeromq as tp
from edge.link.schema import AlertFormatError, decode_with_reference

log = logging.getLogger(__name__)

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_DECISION_RESEND_S = 2.0


class EventBus:
    """Fan-out of live events to SSE streams; safe to publish from any thread."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._subs: dict[asyncio.Queue[dict[str, Any] | None], asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self.max_queue = max_queue

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """Call from the event loop; returns the queue the stream reads."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self.max_queue)
        with self._lock:
            self._subs[q] = asyncio.get_running_loop()
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        with self._lock:
            self._subs.pop(q, None)

    def count(self) -> int:
        with self._lock:
            return len(self._subs)

    @staticmethod
    def _put(q: asyncio.Queue[dict[str, Any] | None], event: dict[str, Any] | None) -> None:
        try:
            q.put_nowait(event)
        except asyncio.QueueFull:
            # A stuck client: it will reload the full list when it reconnects.
            pass

    def publish(self, event: dict[str, Any] | None) -> None:
        with self._lock:
            subs = list(self._subs.items())
        for q, loop in subs:
            try:
                loop.call_soon_threadsafe(self._put, q, event)
            except RuntimeError:  # loop closed
                self.unsubscribe(q)


def card_event(card: dict[str, Any]) -> dict[str, Any]:
    """An alert card as the browser sees it (image URLs, never image bytes)."""
    out = dict(card)
    aid = card["alert_id"]
    out["probe_url"] = f"/api/alerts/{aid}/probe.jpg" if card.get("has_probe") else None
    out["reference_url"] = (
        f"/api/alerts/{aid}/reference.jpg" if card.get("has_reference") else None
    )
    return out


class Hub:
    """Alert hub service: start(), then serve ``edge.hub.web.create_app(hub)``."""

    def __init__(self, cfg: HubConfig, metrics: HubMetrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or HubMetrics()
        self.bus = EventBus()
        self.store: HubStore | None = None
        self.officers = Officers(Path(cfg.store.officers_file))
        self._ctx: zmq.Context | None = None
        self._hs: tp.HubSocket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._routes: dict[str, bytes] = {}
        self._last_seen: dict[str, float] = {}
        self._next_purge = 0.0
        self.endpoint: str | None = None
        self.stopping = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Hub:
        self.store = HubStore(Path(self.cfg.store.path))
        for n in self.store.nodes():
            self._last_seen[n["node_id"]] = 0.0  # known, but not heard since this start
        self._ctx = zmq.Context()
        try:
            self._hs = tp.HubSocket(
                self._ctx, self.cfg.zmq.bind, self.cfg.curve(), on_refused=self._handshake_refused
            )
        except Exception:
            self._ctx.term()
            self.store.close()
            raise
        self.endpoint = self._hs.endpoint
        self.purge()
        self._thread = threading.Thread(target=self._run, name="hub-zmq", daemon=True)
        self._thread.start()
        log.info("hub listening for nodes on %s", self.endpoint)
        return self

    def stop(self) -> None:
        self.stopping = True
        self.bus.publish(None)
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.store is not None:
            self.store.close()
            self.store = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # -- used by the web app ------------------------------------------------------------

    def decide(self, alert_id: str, decision: str, officer: str) -> tuple[str, dict[str, Any] | None]:
        """Record an officer's decision and queue it for the node; ("ok"|..., card)."""
        assert self.store is not None
        if decision not in tp.DECISIONS:
            raise ValueError("decision must be one of " + ", ".join(tp.DECISIONS))
        now = time.time()
        status, card = self.store.decide(
            alert_id, decision, officer, now, self.cfg.retention.purge_rejected_probe
        )
        if status == "ok" and card is not None:
            self.metrics.decisions.labels(decision).inc()
            self.metrics.decision_latency.observe(max(0.0, now - card["received_at"]))
            self.bus.publish({"type": "decision", "card": card_event(card)})
            self._wake()
        return status, card

    def node_status(self) -> list[dict[str, Any]]:
        """Every known node with whether it was heard within ``node_lost_after_s``."""
        now = time.time()
        lost_after = self.cfg.ui.node_lost_after_s
        seen = dict(self._last_seen)  # a copy: the ZeroMQ thread updates it
        names = set(seen) | set(self.cfg.ui.expected_nodes)
        cams = {}
        if self.store is not None:
            cams = {n["node_id"]: n["camera"] for n in self.store.nodes()}
        out = []
        for name in sorted(names):
            last = seen.get(name, 0.0)
            out.append(
                {
                    "node_id": name,
                    "camera": cams.get(name, ""),
                    "last_seen": last or None,
                    "online": bool(last) and now - last <= lost_after,
                }
            )
        return out

    def purge(self, now: float | None = None) -> dict[str, int]:
        """Apply the retention policy now (also runs periodically)."""
        assert self.store is not None
        res = self.store.purge(now or time.time(), self.cfg.retention.days * 86400)
        for what, n in res.items():
            if n:
                self.metrics.purged.labels(what).inc(n)
        if res["alerts"]:
            log.info("retention: purged %d alert(s)", res["alerts"])
            self.bus.publish({"type": "purged"})
        return res

    # -- ZeroMQ thread ------------------------------------------------------------------

    def _handshake_refused(self, reason: str) -> None:
        self.metrics.handshakes_refused.labels(reason).inc()

    def _refuse(self, reason: str) -> None:
        self.metrics.messages_refused.labels(reason).inc()

    def _run(self) -> None:
        assert self._hs is not None and self._ctx is not None
        hs = self._hs
        poller = zmq.Poller()
        poller.register(hs.sock, zmq.POLLIN)
        poller.register(hs.monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(250))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except OSError:
                        pass
                    self._push_decisions(only_new=True)
                if hs.monitor in events:
                    hs.handle_monitor()
                if hs.sock in events:
                    for _ in range(1000):
                        try:
                            frames = hs.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        try:
                            self._handle(frames)
                        except Exception:
                            # Whatever a node sends, the hub keeps running.
                            self._refuse("internal")
                            log.exception("error handling a node message")
                now = time.time()
                self.metrics.nodes_online.set(
                    sum(1 for t in self._last_seen.values()
                        if now - t <= self.cfg.ui.node_lost_after_s)
                )
                if now >= self._next_purge:
                    self._next_purge = now + self.cfg.retention.purge_interval_s
                    try:
                        self.purge(now)
                    except Exception:
                        log.exception("retention purge failed")
        finally:
            hs.close()
            self._ctx.term()

    def _send(self, ident: bytes, frames: list[bytes]) -> bool:
        assert self._hs is not None
        try:
            self._hs.sock.send_multipart([ident, *frames], zmq.NOBLOCK)
            return True
        except (zmq.Again, zmq.ZMQError):
            return False  # node gone; it will resend / we will re-push on its next heartbeat

    def _handle(self, msg: list[zmq.Frame]) -> None:
        assert self._hs is not None and self.store is not None
        if len(msg) < 2:
            self._refuse("frames")
            return
        ident = msg[0].bytes
        peer = self._hs.peer_name(msg[1])
        frames = [f.bytes for f in msg[1:]]
        tag = frames[0]
        if tag == tp.ALERT:
            self._on_alert(ident, peer, frames)
        elif tag == tp.HEARTBEAT:
            self._on_heartbeat(ident, peer, frames)
        elif tag == tp.DECISION_ACK:
            self._on_decision_ack(ident, peer, frames)
        else:
            self._refuse("unknown_type")

    def _on_alert(self, ident: bytes, peer: str | None, frames: list[bytes]) -> None:
        assert self.store is not None
        now = time.time()
        try:
            alert, probe, ref = decode_with_reference(frames)
        except AlertFormatError as exc:
            self._refuse(exc.reason)
            log.warning("refused malformed alert (%s)", exc.reason)
            return
        if peer is not None and alert.node_id != peer:
            self._refuse("node_id_mismatch")
            log.warning("refused alert: node_id does not match the sender's key (%s)", peer)
            self._send(ident, tp.control(tp.NACK, {"alert_id": alert.alert_id,
                                                    "reason": "node_id_mismatch"}))
            return
        was_online = (now - self._last_seen.get(alert.node_id, 0.0)
                      <= self.cfg.ui.node_lost_after_s)
        self._routes[alert.node_id] = ident
        self._last_seen[alert.node_id] = now
        if not was_online:
            self.bus.publish({"type": "nodes"})
        new = self.store.insert_alert(alert, probe, ref, now)
        if new:
            self.metrics.alerts_received.inc()
            self.metrics.capture_to_hub.observe(max(0.0, now - alert.captured_at))
        else:
            self.metrics.alerts_duplicate.inc()
        # Ack only after the row is committed: a crash before this means a re-send.
        self._send(ident, tp.control(tp.ACK, {"alert_id": alert.alert_id,
                                              "status": "stored" if new else "duplicate"}))
        if new:
            card = self.store.get_alert(alert.alert_id)
            if card is not None:
                self.bus.publish({"type": "alert", "card": card_event(card)})

    def _on_heartbeat(self, ident: bytes, peer: str | None, frames: list[bytes]) -> None:
        assert self.store is not None
        try:
            body = tp.parse_control(frames, ("node_id", "run_id", "sent_at"))
        except tp.MessageError as exc:
            self._refuse(exc.reason)
            return
        node_id, run_id = body["node_id"], body["run_id"]
        camera = body.get("camera", "")
        counts = body.get("counts", {})
        pending = body.get("pending", 0)
        if not (isinstance(node_id, str) and 0 < len(node_id) <= 64):
            self._refuse("field")
            return
        if not (isinstance(run_id, str) and _HEX32.match(run_id)):
            self._refuse("field")
            return
        if not isinstance(camera, str) or len(camera) > 256:
            self._refuse("field")
            return
        if not isinstance(counts, dict) or len(counts) > 32 or not all(
            isinstance(k, str) and len(k) <= 32 and isinstance(v, int) and not isinstance(v, bool)
            and 0 <= v < 2**53
            for k, v in counts.items()
        ):
            self._refuse("field")
            return
        if not isinstance(pending, int) or isinstance(pending, bool):
            pending = 0
        if peer is not None and node_id != peer:
            self._refuse("node_id_mismatch")
            return
        now = time.time()
        was_online = now - self._last_seen.get(node_id, 0.0) <= self.cfg.ui.node_lost_after_s
        self._routes[node_id] = ident
        self._last_seen[node_id] = now
        self.metrics.heartbeats.inc()
        self.store.node_heartbeat(node_id, camera, run_id, counts, pending, now)
        self._send(ident, tp.control(tp.HEARTBEAT_ACK, {"sent_at": body["sent_at"],
                                                        "hub_time": now}))
        if not was_online:
            log.info("node %s connected", node_id)
            self.bus.publish({"type": "nodes"})
        self._push_decisions(node_id=node_id)

    def _on_decision_ack(self, ident: bytes, peer: str | None, frames: list[bytes]) -> None:
        assert self.store is not None
        try:
            body = tp.parse_control(frames, ("decision_id",))
        except tp.MessageError as exc:
            self._refuse(exc.reason)
            return
        did = body["decision_id"]
        if not (isinstance(did, str) and _HEX32.match(did)):
            self._refuse("field")
            return
        if self.store.mark_decision_delivered(did, peer):
            self.metrics.decisions_delivered.inc()

    def _push_decisions(self, node_id: str | None = None, only_new: bool = False) -> None:
        """Send decisions not yet acked by their node (re-sent at most every 2 s)."""
        assert self.store is not None
        now = time.time()
        sent_before = 0.0 if only_new else now - _DECISION_RESEND_S
        for d in self.store.undelivered_decisions(node_id, sent_before=sent_before):
            ident = self._routes.get(d["node_id"])
            if ident is None:
                continue
            body = {
                "decision_id": d["decision_id"],
                "alert_id": d["alert_id"],
                "decision": d["decision"],
                "officer": d["officer"],
                "decided_at": d["decision_at"],
            }
            if self._send(ident, tp.control(tp.DECISION, body)):
                self.store.mark_decision_sent(d["decision_id"], now)
