"""Several cameras in one process, around one pair of models (what Frigate does with one
shared detector).

    camera sources (one capture thread each: connect, decode into the camera's ring)
      -> feeders (one per camera: zone check, max_fps) -> FrameMux (one waiting frame each)
      -> workers: the waiting frame of the camera served longest ago that no other worker holds
         -> that camera's Node.process, with the worker's own face buffers

Decoding runs in the capture threads while the workers detect and embed (OpenCV and ONNX
Runtime release the GIL), so the cores are shared without a copy of the models per camera:
one worker can embed one camera's faces while another runs the detector on another camera's
frame (each model runs one call at a time). A camera's frames are processed in order, one
at a time (its tracker sees them in sequence). Each worker's face buffers are zeroed after
each frame's match decision exactly as with one camera. The main thread only watches:
signals, the watchlist window, camera health and the ledger. A camera that fails or never
comes up is shown down; the others keep running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.config import Config
from edge.errors import SourceError
from edge.face.ort import usable_cores
from edge.face.registry import FaceModels
from edge.face.serial import serial
from edge.link.schema import Alert, CameraHealth
from edge.node.camera import CameraSpec
from edge.node.health import CameraMonitor
from edge.node.pipeline import Node
from edge.node.sinks import AlertSink, AuditSink
from edge.node.sources import Frame, FrameSource, open_source
from edge.node.stats import NodeStats
from edge.privacy import FaceBuffers
from edge.watchlist.index import Watchlist

log = logging.getLogger(__name__)

OnFrame = Callable[[str, Frame, list[Alert]], None]
STOP_BUDGET_S = 1.0  # all capture threads together get this long to stop


class FrameMux:
    """Hands the workers a waiting frame of the camera served longest ago; one waiting frame
    per camera.

    A live camera's newer frame displaces its waiting one (so the site holds at most: one
    frame at a worker, one waiting, one at the feeder, one decoding, per camera: the ring's 4
    slots), and a slow site sees fresh frames, not a backlog. A file's feeder waits instead,
    so no frame of a file is skipped.
    """

    def __init__(self, names: list[str]) -> None:
        self._cv = threading.Condition()
        self._waiting: dict[str, Frame] = {}
        self._busy: set[str] = set()  # cameras a worker is processing a frame of
        self._served = dict.fromkeys(names, 0.0)  # when each camera was last handed out
        self._open = set(names)

    def put(self, name: str, frame: Frame, stop: threading.Event,
            replace: bool = False) -> tuple[bool, Frame | None]:
        """Queue ``frame``: (taken, the older frame it displaced, for the caller to release).

        ``replace`` (live cameras): a frame still waiting is displaced at once, so a camera
        never holds more than one waiting frame and the newest one wins. Otherwise (files)
        wait until the previous frame was taken; not taken when ``stop`` is set first.
        """
        with self._cv:
            old = self._waiting.pop(name, None) if replace else None
            while name in self._waiting:
                if stop.is_set():
                    return False, None
                self._cv.wait(0.2)
            if stop.is_set():
                if old is not None:
                    self._waiting[name] = old  # drained and released by the site's close
                return False, None
            self._waiting[name] = frame
            self._cv.notify_all()
            return True, old

    def get(self, timeout: float) -> tuple[str, Frame] | None:
        """The waiting frame of the camera served longest ago that nobody is processing;
        call ``finish`` after it."""
        with self._cv:
            ready = self._ready()
            if not ready:
                self._cv.wait(timeout)
                ready = self._ready()
            if not ready:
                return None
            # the camera served longest ago first: an older waiting frame alone would starve
            # a camera whose frames keep being displaced by newer ones
            name = min(ready, key=lambda k: (self._served[k], self._waiting[k].captured_at))
            frame = self._waiting.pop(name)
            self._served[name] = time.monotonic()
            self._busy.add(name)
            self._cv.notify_all()
            return name, frame

    def finish(self, name: str) -> None:
        """The worker is done with this camera's frame: its next one may be handed out."""
        with self._cv:
            self._busy.discard(name)
            self._cv.notify_all()

    def _ready(self) -> list[str]:
        return [k for k in self._waiting if k not in self._busy]

    def done(self, name: str) -> None:
        """This camera's feeder has ended (its waiting frame, if any, is still handed out)."""
        with self._cv:
            self._open.discard(name)
            self._cv.notify_all()

    def finished(self) -> bool:
        with self._cv:
            return not self._open and not self._waiting and not self._busy

    def drain(self) -> list[tuple[str, Frame]]:
        with self._cv:
            out = list(self._waiting.items())
            self._waiting.clear()
            self._cv.notify_all()
            return out


class Site:
    """Every camera of one node: shared models, watchlist, sinks, face buffers; per camera
    a :class:`Node` (tracker, cool-down, counters, ledger), a source and a health monitor."""

    def __init__(self, cfg: Config, watchlist: Watchlist, models: FaceModels,
                 cameras: list[CameraSpec], sinks: list[AlertSink] | None = None,
                 audit: AuditSink | None = None, clock: Callable[[], float] = time.time) -> None:
        if not cameras:
            raise ValueError("a site needs at least one camera")
        self.cfg = cfg
        self.watchlist = watchlist
        self.clock = clock
        # on a CPU, two workers sharing one pair of models only contend for the cores the
        # decoders also need (measured: 1 worker 56 fps, 2 workers 53, 3 cameras, 2 cores)
        workers = cfg.node.workers or max(1, usable_cores() // 2)
        self.workers = max(1, min(workers, len(cameras)))  # more than cameras would idle
        if self.workers > 1:
            models = serial(models)
        self.worker_bufs = [
            FaceBuffers(cfg.detector.max_faces, models.embedder.dim, zeroize=cfg.privacy.zeroize,
                        lock=cfg.privacy.lock_memory, input_size=models.embedder.input_size)
            for _ in range(self.workers)
        ]
        self.bufs = self.worker_bufs[0]
        self.sinks: list[AlertSink] = list(sinks or [])
        self.nodes: dict[str, Node] = {
            spec.name: Node(cfg, watchlist, models, sinks=self.sinks, audit=audit, clock=clock,
                            camera=spec, bufs=self.bufs)
            for spec in cameras
        }
        self.specs = {spec.name: spec for spec in cameras}
        self.sources: dict[str, FrameSource] = {}
        self.monitors: dict[str, CameraMonitor] = {}
        self.mux = FrameMux(list(self.nodes))
        self._stop = threading.Event()
        self._feeders: list[threading.Thread] = []
        self._frames = 0  # processed by all workers together (max_frames)
        self._frames_lock = threading.Lock()
        self._tail_carried: dict[str, int] = {}  # per camera, set by its feeder at the source's end
        self.on_tick: Callable[[], None] = lambda: None  # called by the main loop ~4 times a second
        self.stopped_reason = ""

    # ------------------------------------------------------------------ start
    def open_sources(self, given: dict[str, FrameSource] | None = None) -> None:
        """Open every camera's source (or take the ``given`` ones: benchmarks, tests).

        A file or folder that is not there stops start-up with one line naming the camera;
        a live camera that is not up yet is not an error (its capture thread retries).
        """
        src_cfg = self.cfg.source
        try:
            for name, node in self.nodes.items():
                spec = self.specs[name]
                if given and name in given:
                    src = given[name]
                else:
                    try:
                        src = open_source(spec.source, node.ring, src_cfg.max_width, src_cfg.realtime,
                                          src_cfg.reconnect_initial_s, src_cfg.reconnect_max_s,
                                          src_cfg.max_reconnects, spec.stream)
                    except SourceError as exc:
                        raise SourceError(f"camera {name}: {exc}") from None
                self.sources[name] = src
                self.monitors[name] = CameraMonitor(spec, src.stats, src_cfg.down_after_s)
        except SourceError:
            for src in self.sources.values():
                src.close(timeout=0.5)
            raise

    # ------------------------------------------------------------------ the loop
    def run(self, max_frames: int = 0, on_frame: OnFrame | None = None) -> dict[str, NodeStats]:
        """Process every camera's frames until all sources end, ``stop()``, ``max_frames``
        (all cameras together) or the watchlist's window closes. ``on_frame`` is called on
        the worker threads."""
        if not self.sources:
            self.open_sources()
        for name in self.nodes:
            t = threading.Thread(target=self._feed, args=(name,), name=f"feed-{name}", daemon=True)
            t.start()
            self._feeders.append(t)
        workers = [threading.Thread(target=self._work, args=(bufs, max_frames, on_frame),
                                    name=f"worker-{i}", daemon=True)
                   for i, bufs in enumerate(self.worker_bufs)]
        for t in workers:
            t.start()
        try:
            while any(t.is_alive() for t in workers):
                if self._stop.wait(0.25):
                    break
                self.on_tick()
                if not self.watchlist.in_window(self.clock()):
                    self.stopped_reason = "watchlist window closed"
                    log.warning("watchlist window closed: matching stopped")
                    break
                now = time.monotonic()
                for mon in self.monitors.values():
                    mon.check(now)
                for node in self.nodes.values():
                    node.ledger.maybe_append()
            else:
                if not self.stopped_reason:
                    self.stopped_reason = "source ended" if len(self.nodes) == 1 else "sources ended"
            self._stop.set()
            for t in workers:
                t.join()  # a frame in progress is finished (and zeroed), never abandoned
            for name, n in self._tail_carried.items():
                self.nodes[name].carried(n)
        finally:
            self.close()
        self.stopped_reason = self.stopped_reason or "stopped"
        return {name: node.stats for name, node in self.nodes.items()}

    def _work(self, bufs: FaceBuffers, max_frames: int, on_frame: OnFrame | None) -> None:
        """One worker: frames of any camera nobody else holds, through that camera's Node."""
        while not self._stop.is_set():
            got = self.mux.get(timeout=0.2)
            if got is None:
                if self.mux.finished():
                    return
                continue
            name, frame = got
            try:
                alerts = self.nodes[name].handle(frame, bufs)
            finally:
                self.mux.finish(name)
            self.monitors[name].processed()
            if on_frame is not None:
                on_frame(name, frame, alerts)
            with self._frames_lock:
                self._frames += 1
                if max_frames and self._frames >= max_frames:
                    self.stopped_reason = "max frames"
                    self._stop.set()

    def _feed(self, name: str) -> None:
        """One camera's frames into the mux: zone check on the first frame, then max_fps."""
        node, src, spec = self.nodes[name], self.sources[name], self.specs[name]
        min_gap = 1.0 / spec.max_fps if spec.max_fps else 0.0
        last = 0.0
        checked = spec.zone is None
        # frames between detections need no pixels: a source that can skips converting them.
        # Cameras are staggered (camera i detects on frames i*k/n, k + i*k/n, ...), so their
        # detection frames do not all reach the worker at once.
        k = self.cfg.detector.interval
        src.decimate = k if not min_gap else 1
        src.decimate_phase = (list(self.nodes).index(name) * k) // len(self.nodes) if k > 1 else 0
        carried = 0
        try:
            for frame in src.frames():
                frame.carried_before, carried = src.stats.carried - carried, src.stats.carried
                if not checked:
                    assert spec.zone is not None
                    problem = spec.zone.check(*frame.image.shape[:2])
                    if problem:
                        node.ring.release(frame.slot)
                        self.monitors[name].fail(problem)
                        log.error("camera %s: %s; this camera is stopped", name, problem)
                        break
                    checked = True
                if min_gap and frame.captured_at - last < min_gap * 0.98:
                    node.ring.release(frame.slot)
                    node.stats.frames_rate_limited += 1
                    continue
                last = frame.captured_at
                taken, displaced = self.mux.put(name, frame, self._stop, replace=src.live)
                if displaced is not None:  # a newer frame came before a worker was free
                    node.ring.release(displaced.slot)
                    src.stats.dropped_stale += 1
                    frame.carried_before += displaced.carried_before
                if not taken:
                    node.ring.release(frame.slot)
                    break
            else:  # frames carried after the last converted one: counted once the workers stop
                self._tail_carried[name] = src.stats.carried - carried
        except Exception as exc:  # noqa: BLE001 - one camera's failure never stops the others
            self.monitors[name].fail(f"source failed: {type(exc).__name__}")
            log.error("camera %s: source failed: %s", name, type(exc).__name__)
        finally:
            src.stop()
            self.mux.done(name)

    # ------------------------------------------------------------------ health, stop
    def health(self) -> list[CameraHealth]:
        now = time.monotonic()
        return [mon.health(now) for mon in self.monitors.values()]

    def totals(self) -> dict[str, int]:
        """Counts of all cameras together (the deployment's ledger totals)."""
        keys = ("frames", "faces_seen", "faces_discarded", "alerts")
        out = dict.fromkeys(keys, 0)
        for node in self.nodes.values():
            for k in keys:
                out[k] += int(getattr(node.stats, k))
        return out

    def stop(self) -> None:
        self._stop.set()
        for src in self.sources.values():
            src.stop()

    def close(self) -> None:
        """Stop every source (within ``STOP_BUDGET_S`` together), zero every frame and buffer."""
        self.stop()
        deadline = time.monotonic() + STOP_BUDGET_S
        for name, frame in self.mux.drain():
            self.nodes[name].ring.release(frame.slot)
        for src in self.sources.values():
            src.close(timeout=max(0.05, deadline - time.monotonic()))
        for t in self._feeders:
            t.join(timeout=max(0.05, deadline - time.monotonic()))
        for name, frame in self.mux.drain():
            self.nodes[name].ring.release(frame.slot)
        for node in self.nodes.values():
            node.ring.zeroize_all()
            node.ledger.maybe_append(force=True)
        for bufs in self.worker_bufs:
            bufs.zeroize()
