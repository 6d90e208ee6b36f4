"""The hub's core: alerts stored and acked, decisions dispatched, retention, live event bus.

Threads: the router thread (``edge.hub.router``) owns the ZeroMQ socket and hands every node
message to :meth:`Hub.handle`; the web app (uvicorn, asyncio) reads the store and pushes
decisions through :meth:`Hub.decide`, which wakes the router thread. New alerts reach open
tablet streams through :class:`EventBus`, which hands events from the router thread to the
asyncio loop. Messages are built and validated by ``edge.link.schema``; this module never
touches a socket.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from edge.hub.cameras import CameraBoard
from edge.hub.config import HubConfig
from edge.hub.images import check_jpeg
from edge.hub.metrics import HubMetrics
from edge.hub.nats_link import NatsHubLink
from edge.hub.officers import Officers
from edge.hub.push import PushNotifier
from edge.hub.router import HubRouter, Incoming
from edge.hub.store import HubStore
from edge.link.schema import (
    ALERT,
    DECISION,
    DECISION_ACK,
    DECISIONS,
    HEARTBEAT,
    Ack,
    AlertFormatError,
    Decision,
    HeartbeatAck,
    MessageError,
    Nack,
    decode_with_reference,
    parse_decision,
    parse_decision_ack,
    parse_heartbeat,
)

log = logging.getLogger(__name__)

_DECISION_RESEND_S = 2.0
_REPUBLISH_S = 5.0  # a decision published to the fabric but not read back yet goes again
_REFUSAL_LOG_S = 60.0  # a refused heartbeat is logged at most this often per reason


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
    # a decision not final yet can be undone until this (hub clock)
    out["undo_until"] = (card.get("final_at") if card.get("decision") and not card.get("finalized")
                         else None)
    return out


class Hub:
    """Alert hub service: start(), then serve ``edge.hub.web.create_app(hub)``."""

    def __init__(self, cfg: HubConfig, metrics: HubMetrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or HubMetrics()
        self.bus = EventBus()
        self.store: HubStore | None = None
        self.officers = Officers(Path(cfg.store.officers_file))
        self._router: HubRouter | None = None
        self.fabric: NatsHubLink | None = None  # transport "nats": the JetStream fabric
        self._published: dict[str, float] = {}  # decision/outcome id -> when published
        self._next_stream_purge = 0.0
        self._node_deployment: dict[str, str] = {}  # node -> deployment it was heard on
        self._routes: dict[str, bytes] = {}  # node_id -> where the router reaches it
        self._last_seen: dict[str, float] = {}
        self.cameras = CameraBoard(self.metrics)
        self._online: set[str] = set()  # nodes online at the last tick (to log them lost)
        self._refusal_logged: dict[str, float] = {}
        self._audit_warned: set[tuple[str, str]] = set()  # (node, run): warned once each
        # node -> (when, why) of its clean stop; cleared by its next ordinary heartbeat
        self._stopped: dict[str, tuple[float, str]] = {}
        self._next_purge = 0.0
        self.endpoint: str | None = None
        self.stopping = False
        self.push: PushNotifier | None = None  # web push, when [push] enabled

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Hub:
        self.store = HubStore(Path(self.cfg.store.path))
        for n in self.store.nodes():
            self._last_seen[n["node_id"]] = 0.0  # known, but not heard since this start
        try:
            if self.cfg.push.enabled:
                self.push = PushNotifier(self.cfg.push, self.store, self.metrics).start()
            if self.cfg.transport == "nats":
                store = self.store
                self.fabric = NatsHubLink(self.cfg.nats, self, store.fabric_position,
                                          store.set_fabric_position)
            else:
                self._router = HubRouter(self.cfg.zmq.bind, self.cfg.curve(), self)
        except Exception:
            if self.push is not None:
                self.push.stop()
                self.push = None
            self.store.close()
            raise
        self.purge()
        if self.fabric is not None:
            self.endpoint = self.fabric.endpoint
            try:
                self.fabric.start()
            except Exception:
                self.fabric = None
                if self.push is not None:
                    self.push.stop()
                    self.push = None
                self.store.close()
                self.store = None
                raise
            log.info("hub reading deployments %s from the NATS fabric %s",
                     ", ".join(self.cfg.nats.deployments), self.endpoint)
            return self
        assert self._router is not None
        self.endpoint = self._router.endpoint
        self._router.start()
        log.info("hub listening for nodes on %s", self.endpoint)
        return self

    def stop(self) -> None:
        self.stopping = True
        self.bus.publish(None)
        if self._router is not None:
            self._router.stop()
            self._router = None
        if self.fabric is not None:
            self.fabric.stop()
            self.fabric = None
        if self.push is not None:
            self.push.stop()
            self.push = None
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- used by the web app ------------------------------------------------------------

    def decide(self, alert_id: str, decision: str, officer: str) -> tuple[str, dict[str, Any] | None]:
        """Record an officer's decision; final (counted, sent to the node) after ``ui.undo_s``."""
        assert self.store is not None
        if decision not in DECISIONS:
            raise ValueError("decision must be one of " + ", ".join(DECISIONS))
        now = time.time()
        status, card = self.store.decide(
            alert_id, decision, officer, now, self.cfg.retention.purge_rejected_probe,
            undo_s=self.cfg.ui.undo_s, defer=self.fabric is not None,
        )
        if status == "ok" and card is not None:
            self.bus.publish({"type": "decision", "card": card_event(card)})
            if card["finalized"]:
                self._finalized([card])
            elif self.fabric is not None and self.cfg.ui.undo_s <= 0:
                self.fabric.wake()  # no undo window: publish it at once
        return status, card

    def undo(self, alert_id: str, officer: str) -> tuple[str, dict[str, Any] | None]:
        """Take a decision back inside its undo window (see HubStore.undo for the statuses)."""
        assert self.store is not None
        status, card = self.store.undo(alert_id, officer, time.time())
        if status == "ok" and card is not None:
            log.info("officer %s undid the decision on alert %s", officer, alert_id)
            self.bus.publish({"type": "decision", "card": card_event(card)})
        return status, card

    def set_outcome(self, alert_id: str, outcome: str, officer: str
                    ) -> tuple[str, dict[str, Any] | None]:
        assert self.store is not None
        status, card = self.store.set_outcome(alert_id, outcome, officer, time.time())
        if status == "ok" and card is not None:
            self.metrics.outcomes.labels(outcome).inc()
            self.bus.publish({"type": "decision", "card": card_event(card)})
            if self._router is not None:
                self._router.wake()
            if self.fabric is not None:
                self.fabric.wake()
        return status, card

    def _finalized(self, cards: list[dict[str, Any]]) -> None:
        """Decisions whose undo window closed: count them, tell tablets, release to nodes."""
        for card in cards:
            self.metrics.decisions.labels(card["decision"]).inc()
            self.metrics.decision_latency.observe(
                max(0.0, card["decision_at"] - card["received_at"]))
            self.bus.publish({"type": "decision", "card": card_event(card)})
        if cards and self._router is not None:
            self._router.wake()

    def node_status(self) -> list[dict[str, Any]]:
        """Every known node: heard within ``node_lost_after_s``? and its cameras' health.

        A camera's ``state`` is ``unknown`` while its node is lost (never its last reported
        ``up``); ``last_frame_age_s`` keeps growing from the heartbeat that carried it.
        """
        now = time.time()
        lost_after = self.cfg.ui.node_lost_after_s
        seen = dict(self._last_seen)  # a copy: the router thread updates it
        names = set(seen) | set(self.cfg.ui.expected_nodes)
        cams = {}
        if self.store is not None:
            cams = {n["node_id"]: n["camera"] for n in self.store.nodes()}
        out = []
        for name in sorted(names):
            last = seen.get(name, 0.0)
            stopped = self._stopped.get(name)
            online = bool(last) and now - last <= lost_after and stopped is None
            out.append(
                {
                    "node_id": name,
                    "deployment": self._node_deployment.get(name),
                    "camera": cams.get(name, ""),
                    "last_seen": last or None,
                    "online": online,
                    # a clean stop the node announced: shown as stopped, never as lost
                    "stopped": ({"at": stopped[0], "reason": stopped[1]}
                                if stopped is not None else None),
                    "cameras": self.cameras.cameras(name, online, last or None, now),
                }
            )
        return out

    def deployments_overview(self) -> list[dict[str, Any]]:
        """Per deployment (the ones served, and any an alert or node names): open and total
        alerts, its nodes online, and their cameras' health."""
        counts = self.store.alert_counts() if self.store is not None else {}
        names = set(counts)
        if self.cfg.transport == "nats":
            names |= set(self.cfg.nats.deployments)
        nodes = self.node_status()
        names |= {n["deployment"] for n in nodes if n["deployment"]}
        out = []
        for dep in sorted(names):
            mine = [n for n in nodes if n["deployment"] == dep]
            c = counts.get(dep, {"total": 0, "open": 0})
            out.append({"deployment_id": dep, "alerts": c["total"], "open_alerts": c["open"],
                        "nodes": len(mine), "nodes_online": sum(n["online"] for n in mine),
                        "node_status": mine})
        return out

    def _is_online(self, node_id: str, now: float) -> bool:
        last = self._last_seen.get(node_id, 0.0)
        return (bool(last) and now - last <= self.cfg.ui.node_lost_after_s
                and node_id not in self._stopped)

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

    # -- called on the router thread (edge.hub.router.NodeMessages) ---------------------

    def handshake_refused(self, reason: str) -> None:
        self.metrics.handshakes_refused.labels(reason).inc()

    def woken(self) -> None:
        self._push_decisions(only_new=True)

    def tick(self, now: float) -> None:
        online = {n for n in self._last_seen if self._is_online(n, now)}
        for node_id in sorted(self._online - online):
            if node_id not in self._stopped:
                log.warning("node %s lost: not heard for %.0f s", node_id,
                            now - self._last_seen.get(node_id, now))
            self.cameras.node_lost(node_id)
        self._online = online
        self.metrics.nodes_online.set(len(online))
        self.cameras.update_metrics(lambda n: n in online)
        if self.store is not None:
            if self.fabric is not None:
                self._publish_decisions(now)
            else:
                self._finalized(self.store.finalize_due(now,
                                                        self.cfg.retention.purge_rejected_probe))
        if now >= self._next_purge:
            self._next_purge = now + self.cfg.retention.purge_interval_s
            try:
                self.purge(now)
            except Exception:
                log.exception("retention purge failed")

    def handle(self, msg: Incoming) -> None:
        try:
            self._dispatch(msg)
        except Exception:
            # Whatever a node sends, the hub keeps running.
            self._refuse("internal")
            log.exception("error handling a node message")

    # -- on the fabric's worker thread (edge.hub.nats_link.NatsHubLink) ------------------

    def handle_fabric(self, msg: Incoming) -> bool:
        """One message read from the fabric; False when it could not be handled now (the
        store failed): it is not acked, so it comes again."""
        try:
            if msg.frames and msg.frames[0] == DECISION:
                self._on_fabric_decision(msg)
            else:
                self._dispatch(msg)
        except Exception:
            self._refuse("internal")
            log.exception("error handling a fabric message")
            return False
        return True

    def fabric_error(self, reason: str) -> None:
        self.metrics.fabric_errors.labels(reason).inc()

    def _publish_decisions(self, now: float) -> None:
        """Decisions past their undo window, and outcomes, go to the stream as events; they
        are final here (as on every hub) when read back from it."""
        assert self.store is not None and self.fabric is not None
        for key, at in list(self._published.items()):
            if now - at > 10 * _REPUBLISH_S:
                del self._published[key]
        for d in self.store.due_decisions(now):
            if now - self._published.get(d["decision_id"], 0.0) < _REPUBLISH_S:
                continue
            frames = Decision(d["decision_id"], d["alert_id"], d["decision"], d["officer"],
                              d["decision_at"]).to_frames()
            if self.fabric.publish(d["deployment_id"], d["node_id"], "decision", frames,
                                   d["decision_id"]):
                self._published[d["decision_id"]] = now
        if self.cfg.retention.purge_rejected_probe and now >= self._next_stream_purge:
            # A rejected alert's probe leaves the stream too, once hubs that were away (a
            # restart) have had time to read the alert and its decision in order.
            self._next_stream_purge = now + _REPUBLISH_S
            grace = self.cfg.nats.rejected_stream_grace_s
            for alert_id, seq in self.store.rejected_in_stream(now - grace):
                self.fabric.delete_from_stream(seq)
                self.store.forget_fabric_seq(alert_id)
        for o in self.store.undelivered_outcomes(sent_before=now - _REPUBLISH_S):
            row = self.store.get_alert(o["alert_id"])
            if row is None:
                continue
            frames = Decision(o["outcome_id"], o["alert_id"], o["decision"], o["outcome_officer"],
                              o["outcome_at"], outcome=o["outcome"]).to_frames()
            if self.fabric.publish(row["deployment_id"], o["node_id"], "decision", frames,
                                   o["outcome_id"]):
                self.store.mark_outcome_sent(o["outcome_id"], now)

    def _on_fabric_decision(self, msg: Incoming) -> None:
        assert self.store is not None
        try:
            d = parse_decision(msg.frames)
        except MessageError as exc:
            self._refuse(exc.reason)
            self._log_refusal(exc.reason, f"refused a decision event on the fabric: {exc}")
            return
        if d.outcome is not None:
            status, card = self.store.apply_outcome(d.alert_id, d.decision_id, d.outcome,
                                                    d.officer, d.decided_at)
            if status == "ok" and card is not None:
                self.metrics.outcomes.labels(d.outcome).inc()
                self.bus.publish({"type": "decision", "card": card_event(card)})
            return
        status, card = self.store.apply_decision(
            d.alert_id, d.decision_id, d.decision, d.officer, d.decided_at,
            self.cfg.retention.purge_rejected_probe)
        self._published.pop(d.decision_id, None)
        if status == "ok" and card is not None:
            self._finalized([card])

    def _refuse(self, reason: str) -> None:
        self.metrics.messages_refused.labels(reason).inc()

    def _reply(self, route: bytes, frames: list[bytes]) -> bool:
        return self._router is not None and self._router.send(route, frames)

    def _dispatch(self, msg: Incoming) -> None:
        if not msg.frames:
            self._refuse("frames")
            return
        tag = msg.frames[0]
        if tag == ALERT:
            self._on_alert(msg)
        elif tag == HEARTBEAT:
            self._on_heartbeat(msg)
        elif tag == DECISION_ACK:
            self._on_decision_ack(msg)
        else:
            self._refuse("unknown_type")

    def _heard(self, node_id: str, route: bytes, now: float) -> bool:
        """Remember where the node is; True if it was not online before this message."""
        was_online = now - self._last_seen.get(node_id, 0.0) <= self.cfg.ui.node_lost_after_s
        self._routes[node_id] = route
        self._last_seen[node_id] = now
        return not was_online

    def _on_alert(self, msg: Incoming) -> None:
        assert self.store is not None
        now = time.time()
        try:
            alert, probe, ref = decode_with_reference(msg.frames)
        except AlertFormatError as exc:
            self._refuse(exc.reason)
            log.warning("refused malformed alert (%s)", exc.reason)
            return
        if msg.peer is not None and alert.node_id != msg.peer:
            self._refuse("node_id_mismatch")
            log.warning("refused alert: node_id does not match the sender's key (%s)", msg.peer)
            self._reply(msg.route, Nack(alert.alert_id, "node_id_mismatch").to_frames())
            return
        if msg.deployment is not None and alert.deployment_id != msg.deployment:
            self._refuse("deployment_mismatch")
            self._log_refusal("deployment_mismatch", f"refused alert from {msg.peer}: its "
                              f"deployment is not the subject's ({msg.deployment})")
            return
        try:  # really decoded, within size limits: tablets are served only real images
            check_jpeg(probe, "jpeg")
            if ref is not None:
                check_jpeg(ref, "reference")
        except AlertFormatError as exc:
            self._refuse(exc.reason)
            log.warning("refused alert %s: %s", alert.alert_id, exc)
            self._reply(msg.route, Nack(alert.alert_id, exc.reason).to_frames())
            return
        if self._heard(alert.node_id, msg.route, now):
            self.bus.publish({"type": "nodes"})
        if msg.deployment is not None:
            self._node_deployment[alert.node_id] = msg.deployment
        new = self.store.insert_alert(alert, probe, ref, now, fabric_seq=msg.seq or None)
        if new:
            self.metrics.alerts_received.inc()
            self.metrics.capture_to_hub.observe(max(0.0, now - alert.captured_at))
        else:
            self.metrics.alerts_duplicate.inc()
        # Ack only after the row is committed: a crash before this means a re-send.
        self._reply(msg.route, Ack(alert.alert_id, "stored" if new else "duplicate").to_frames())
        if new:
            card = self.store.get_alert(alert.alert_id)
            if card is not None:
                self.bus.publish({"type": "alert", "card": card_event(card)})
                if self.push is not None:
                    self.push.notify(card, self.cameras.label_of(alert.node_id, alert.camera))

    def _on_heartbeat(self, msg: Incoming) -> None:
        assert self.store is not None
        try:
            beat = parse_heartbeat(msg.frames)
        except MessageError as exc:
            self._refuse(exc.reason)
            self._log_refusal(exc.reason, f"refused heartbeat from {msg.peer or 'a node'}: {exc}")
            return
        if msg.peer is not None and beat.node_id != msg.peer:
            self._refuse("node_id_mismatch")
            self._log_refusal("node_id_mismatch", f"refused heartbeat: node_id does not match "
                              f"the sender's key ({msg.peer})")
            return
        if msg.deployment is not None:
            if beat.deployment is not None and beat.deployment.deployment_id != msg.deployment:
                self._refuse("deployment_mismatch")
                self._log_refusal("deployment_mismatch", f"refused heartbeat from {msg.peer}: "
                                  f"its deployment is not the subject's ({msg.deployment})")
                return
            self._node_deployment[beat.node_id] = msg.deployment
        now = time.time()
        if beat.stopping is not None:
            if beat.node_id not in self._stopped:
                log.info("node %s stopped: %s", beat.node_id, beat.stopping or "no reason given")
            self._stopped[beat.node_id] = (now, beat.stopping)
            self.bus.publish({"type": "nodes"})
        was_stopped = self._stopped.pop(beat.node_id, None) if beat.stopping is None else None
        newly_online = self._heard(beat.node_id, msg.route, now) or was_stopped is not None
        newly_online = newly_online and beat.stopping is None
        self.metrics.heartbeats.inc()
        self.store.node_heartbeat(beat.node_id, beat.camera, beat.run_id, beat.counts,
                                  beat.pending, now)
        if beat.deployment is not None:
            self.store.note_deployment(beat.node_id, beat.camera, beat.deployment, now)
        if beat.audit is not None:
            held = self.store.anchor_audit(beat.node_id, beat.run_id, beat.audit.seq,
                                           beat.audit.head, now)
            if held is not None:
                self.metrics.audit_regressions.labels(beat.node_id).inc()
                if (beat.node_id, beat.run_id) not in self._audit_warned:
                    if len(self._audit_warned) > 10000:
                        self._audit_warned.clear()
                    self._audit_warned.add((beat.node_id, beat.run_id))
                    log.warning("node %s audit log went back: it reports seq %d, the hub "
                                "holds seq %d (head %s): cut short, replaced or rewritten",
                                beat.node_id, beat.audit.seq, held[0], held[1][:16])
        # The board is updated before the ack: what the node was told is received is visible.
        cameras_changed = self.cameras.update(beat.node_id, beat.run_id, beat.cameras, now)
        self._reply(msg.route, HeartbeatAck(beat.sent_at, now).to_frames())
        if newly_online:
            log.info("node %s connected", beat.node_id)
        if newly_online or cameras_changed:
            self.bus.publish({"type": "nodes"})  # tablets get the new status at once
        self._push_decisions(node_id=beat.node_id)

    def _log_refusal(self, reason: str, line: str) -> None:
        """One warning line per refusal reason a minute (a hostile node cannot flood the log)."""
        now = time.monotonic()
        if now - self._refusal_logged.get(reason, -_REFUSAL_LOG_S) >= _REFUSAL_LOG_S:
            self._refusal_logged[reason] = now
            log.warning("%s", line)

    def _on_decision_ack(self, msg: Incoming) -> None:
        assert self.store is not None
        try:
            ack = parse_decision_ack(msg.frames)
        except MessageError as exc:
            self._refuse(exc.reason)
            return
        if self.store.mark_decision_delivered(ack.decision_id, msg.peer):
            self.metrics.decisions_delivered.inc()
        else:  # an outcome's message is acked by its id the same way
            self.store.mark_outcome_delivered(ack.decision_id, msg.peer)

    def _push_decisions(self, node_id: str | None = None, only_new: bool = False) -> None:
        """Send decisions not yet acked by their node (re-sent at most every 2 s)."""
        assert self.store is not None
        if self.fabric is not None:
            return  # on the fabric nodes read their decisions from the stream
        now = time.time()
        sent_before = 0.0 if only_new else now - _DECISION_RESEND_S
        for d in self.store.undelivered_decisions(node_id, sent_before=sent_before):
            route = self._routes.get(d["node_id"])
            if route is None:
                continue
            decision = Decision(d["decision_id"], d["alert_id"], d["decision"], d["officer"],
                                d["decision_at"])
            if self._reply(route, decision.to_frames()):
                self.store.mark_decision_sent(d["decision_id"], now)
        for o in self.store.undelivered_outcomes(node_id, sent_before=sent_before):
            route = self._routes.get(o["node_id"])
            if route is None:
                continue
            msg = Decision(o["outcome_id"], o["alert_id"], o["decision"], o["outcome_officer"],
                           o["outcome_at"], outcome=o["outcome"])
            if self._reply(route, msg.to_frames()):
                self.store.mark_outcome_sent(o["outcome_id"], now)
