"""Camera health: is each camera delivering frames, how fast, and since when not.

The monitor reads the source's counters and state (never its pixels) and the times the
pipeline finished a frame. A camera whose stream stalls is *down* after
``source.down_after_s`` without a frame even while the node itself is fine, so a node that
still sends heartbeats never makes a dead stream look online. Transitions are logged once:
"lost" and "reconnected".
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from edge.link.schema import CameraHealth
from edge.node.camera import CameraSpec
from edge.node.sources import SourceStats

log = logging.getLogger(__name__)

FPS_WINDOW_S = 5.0  # frames/s is measured over this many recent seconds


class CameraMonitor:
    """One camera's health, from its source's stats and the frames the pipeline finished."""

    def __init__(self, spec: CameraSpec, source: SourceStats, down_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.source = source
        self.down_after_s = down_after_s
        self.clock = clock
        self.started_at = clock()
        self.frames = 0
        self._recent: deque[float] = deque()
        self._failed = ""  # set by the site: the camera was stopped for a reason of its own
        self._reported = "connecting"  # last state logged

    def processed(self, now: float | None = None) -> None:
        """The pipeline finished one of this camera's frames."""
        now = self.clock() if now is None else now
        self.frames += 1
        self._recent.append(now)

    def fail(self, reason: str) -> None:
        """The camera was stopped (bad zone, source error): down for good, with a reason."""
        self._failed = reason

    def state(self, now: float | None = None) -> tuple[str, str]:
        """(state, reason) now: up, connecting, down, ended or failed."""
        now = self.clock() if now is None else now
        src = self.source
        if self._failed:
            return "failed", self._failed
        if src.state in ("failed", "ended"):
            return src.state, src.reason
        age = self._age(now)
        if age is None:
            waited = now - self.started_at
            if waited <= self.down_after_s:
                return "connecting", src.reason or "no frame yet"
            return "down", src.reason or f"no frame since start {waited:.0f} s ago"
        if src.state == "down" or age > self.down_after_s:
            return "down", src.reason or "stream stalled"
        return "up", ""

    def health(self, now: float | None = None) -> CameraHealth:
        now = self.clock() if now is None else now
        state, reason = self.state(now)
        age = self._age(now)
        return CameraHealth(
            name=self.spec.name, label=self.spec.label, state=state, fps=round(self.fps(now), 2),
            last_frame_age_s=None if age is None else round(age, 2),
            reconnects=self.source.reconnects, frames=self.frames, reason=reason[:200],
        )

    def fps(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        while self._recent and now - self._recent[0] > FPS_WINDOW_S:
            self._recent.popleft()
        span = min(FPS_WINDOW_S, now - self.started_at)
        return len(self._recent) / span if span > 0 else 0.0

    def check(self, now: float | None = None) -> None:
        """Log the camera going down and coming back (once per change)."""
        now = self.clock() if now is None else now
        state, reason = self.state(now)
        before, self._reported = self._reported, state
        if state == before:
            return
        name = self.spec.name
        if state == "up" and before in ("down", "failed"):
            log.warning("camera %s reconnected (reconnects so far: %d)", name, self.source.reconnects)
        elif state == "up":
            log.info("camera %s up", name)
        elif state == "down":
            age = self._age(now)
            quiet = f"no frames for {age:.0f} s" if age is not None else "no frame yet"
            log.warning("camera %s lost: %s (%s)", name, quiet, reason)
        elif state == "failed":
            log.error("camera %s failed: %s", name, reason)
        elif state == "ended":
            log.info("camera %s ended: %s", name, reason)

    def _age(self, now: float) -> float | None:
        last = self.source.last_frame_at
        return None if not last else max(0.0, now - last)
