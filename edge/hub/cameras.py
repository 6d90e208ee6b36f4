"""The hub's view of every camera: the latest health each node reported, as officers see it.

A node's heartbeat carries the health of all its cameras (``edge.link.schema.CameraHealth``).
The board keeps the latest entry per (node_id, camera name), in memory: a hub restart learns
it again from the next heartbeat, within a second. What it shows never claims more than the hub
knows: a camera on a node that is lost, or one its node stopped reporting, is ``unknown``, not
its last reported state; the age of the last frame keeps growing from the heartbeat that
carried it. Transitions are logged once ("camera entrance-a on node n1 down: ..." / "... up
again") and counted in two gauges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edge.hub.metrics import HubMetrics
from edge.link.schema import CAMERA_STATES, CameraHealth

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # the hub cannot vouch for the camera (node lost, or no longer reported)
SHOWN_STATES = (*CAMERA_STATES, UNKNOWN)
_TROUBLE = ("down", "failed")  # states logged as a warning when a camera enters them


@dataclass(frozen=True)
class _Entry:
    health: CameraHealth
    received_at: float  # hub time of the heartbeat that carried it
    reported: bool = True  # False: its node's latest heartbeat (same run) left it out


def _quiet(age: float | None) -> str:
    return "no frame yet" if age is None else f"no frames for {age:.0f} s"


class CameraBoard:
    """Latest camera health per node; fed on the router thread, read from any thread."""

    def __init__(self, metrics: HubMetrics) -> None:
        self.metrics = metrics
        self._lock = threading.Lock()
        self._nodes: dict[str, tuple[str, dict[str, _Entry]]] = {}  # node -> (run_id, cameras)
        self._logged: dict[tuple[str, str], str] = {}  # state last logged per camera
        self._gauged: set[tuple[str, str]] = set()  # label sets of edge_hub_camera_up

    def update(self, node_id: str, run_id: str, cameras: Iterable[CameraHealth],
               now: float) -> bool:
        """One heartbeat's cameras; True when what officers see changed (push it now)."""
        new = {c.name: _Entry(c, now) for c in cameras}
        with self._lock:
            old_run, old = self._nodes.get(node_id, ("", {}))
            if old_run == run_id:
                # Same node run, camera left out (its health provider failed): keep it, unknown.
                for name, e in old.items():
                    if name not in new:
                        new[name] = _Entry(e.health, e.received_at, reported=False)
            else:
                # A restart (new run): cameras it no longer has are gone from its config.
                for name in old:
                    if name not in new:
                        self._logged.pop((node_id, name), None)
            self._nodes[node_id] = (run_id, new)
            changed = set(old) != set(new) or any(
                old[n].health.state != e.health.state or old[n].reported != e.reported
                for n, e in new.items() if n in old
            )
            for name, e in new.items():
                self._log_transition(node_id, name, self._shown(e, True)[0], e)
        return changed

    def node_lost(self, node_id: str) -> None:
        """The node went quiet: its cameras become unknown (logged on their way back up)."""
        with self._lock:
            for name in self._nodes.get(node_id, ("", {}))[1]:
                self._logged[(node_id, name)] = UNKNOWN

    def _log_transition(self, node_id: str, name: str, state: str, e: _Entry) -> None:
        key = (node_id, name)
        before = self._logged.get(key)
        if state == before:
            return
        self._logged[key] = state
        h = e.health
        detail = _quiet(h.last_frame_age_s) + (f"; {h.reason}" if h.reason else "")
        if state in _TROUBLE:
            log.warning("camera %s on node %s %s: %s", name, node_id, state, detail)
        elif state == "up" and before in (*_TROUBLE, UNKNOWN):
            log.info("camera %s on node %s up again", name, node_id)
        elif state == "up":
            log.info("camera %s on node %s up", name, node_id)
        elif state == "ended":
            log.info("camera %s on node %s ended: %s", name, node_id, h.reason or "end of file")
        elif state == "connecting" and before == "up":
            log.warning("camera %s on node %s reconnecting: %s", name, node_id, detail)
        elif state == UNKNOWN:
            log.warning("camera %s on node %s unknown: no longer reported by its node",
                        name, node_id)

    @staticmethod
    def _shown(e: _Entry, online: bool, lost_for: float | None = None) -> tuple[str, str]:
        """(state, reason) as officers see it."""
        if not online:
            quiet = f" (not heard for {lost_for:.0f} s)" if lost_for is not None else ""
            return UNKNOWN, "camera node lost" + quiet
        if not e.reported:
            return UNKNOWN, "no longer reported by its node"
        return e.health.state, e.health.reason

    def label_of(self, node_id: str, camera: str) -> str | None:
        """The label the node gave ``camera`` ("Entrance A, facing north"), if it reported one."""
        with self._lock:
            e = self._nodes.get(node_id, ("", {}))[1].get(camera)
        return e.health.label if e is not None and e.health.label else None

    def cameras(self, node_id: str, online: bool, last_seen: float | None,
                now: float) -> list[dict[str, Any]]:
        """The node's cameras for the tablet, by name; ages grown to ``now``."""
        with self._lock:
            entries = sorted(self._nodes.get(node_id, ("", {}))[1].items())
        out = []
        for name, e in entries:
            h = e.health
            lost_for = now - last_seen if last_seen else None
            state, reason = self._shown(e, online, lost_for)
            age = h.last_frame_age_s
            out.append({
                "name": name,
                "label": h.label or name,
                "state": state,
                "reported_state": h.state,
                "reason": reason,
                "fps": h.fps,  # as last reported
                "last_frame_age_s": None if age is None
                else round(age + max(0.0, now - e.received_at), 1),
                "reconnects": h.reconnects,
                "frames": h.frames,
                "received_at": e.received_at,
            })
        return out

    def update_metrics(self, online: Callable[[str], bool]) -> None:
        """Set ``edge_hub_cameras{state}`` and ``edge_hub_camera_up{node_id,camera}``."""
        with self._lock:
            shown = {
                (node_id, name): self._shown(e, online(node_id))[0]
                for node_id, (_, cams) in self._nodes.items() for name, e in cams.items()
            }
        counts = dict.fromkeys(SHOWN_STATES, 0)
        for state in shown.values():
            counts[state] += 1
        for state, n in counts.items():
            self.metrics.cameras.labels(state).set(n)
        for key, state in shown.items():
            self.metrics.camera_up.labels(*key).set(1 if state == "up" else 0)
        for key in self._gauged - set(shown):
            self.metrics.camera_up.remove(*key)  # the camera left its node's config
        self._gauged = set(shown)
