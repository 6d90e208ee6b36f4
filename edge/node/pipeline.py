"""Where a frame goes, top to bottom.

    source -> detect (every ``detector.interval``-th frame) -> zone -> track -> quality gate
           -> align -> embed -> match -> decide -> (match only) alert
           -> zeroize every face buffer and the frame slot

A frame between two detections only moves the camera's tracks on (their boxes are predicted
from their motion at the next detection); it touches no face buffer.

All face data lives in :mod:`edge.privacy` buffers for the duration of one frame. The only
thing that leaves :meth:`Node.process` is an :class:`edge.link.schema.Alert` for a likely match
(with the matched face's crop as JPEG); everything else is overwritten with zeros in the
``finally`` of ``process`` before the next frame is touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge.config import Config
from edge.face import quality as q
from edge.face.align import Aligner
from edge.face.registry import FaceModels
from edge.link.schema import Alert
from edge.node.camera import CameraSpec
from edge.node.decide import AlertBuilder
from edge.node.sinks import AlertSink, AuditSink
from edge.node.sources import Frame, FrameSource
from edge.node.stats import Ledger, NodeStats
from edge.node.track import Track, Tracker
from edge.privacy import FaceBuffers, FrameRing
from edge.watchlist.index import Watchlist

log = logging.getLogger(__name__)


def face_quality(box: np.ndarray, lmk: np.ndarray) -> float:
    """How much a face is worth to the track's fused decision: its width in pixels, shrunk by
    how far it is turned (cosines of yaw and pitch from the landmarks). A number, computed
    while the landmarks exist; the track keeps only this."""
    pose = q.pose_from_landmarks(lmk)
    turn = np.cos(np.radians(pose.yaw_deg)) * np.cos(np.radians(pose.pitch_deg))
    return float(box[2]) * max(float(turn), 0.0)


class Node:
    """One camera's matching pipeline. ``process(frame)`` is the whole per-frame story.

    Its own: tracker, cool-down, counters, ledger lines and frame ring. Shared with the
    site's other cameras (:mod:`edge.node.site`): models, watchlist, sinks, audit log and,
    when given, the face buffers (one frame is processed at a time, and zeroed after it).
    """

    def __init__(
        self,
        cfg: Config,
        watchlist: Watchlist,
        models: FaceModels,
        sinks: list[AlertSink] | None = None,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.time,
        camera: CameraSpec | None = None,
        bufs: FaceBuffers | None = None,
    ) -> None:
        self.cfg = cfg
        self.camera = camera or CameraSpec(cfg.node.camera, "", "", cfg.match.threshold)
        self.watchlist = watchlist
        # the caller's list itself: a site adds the link's sender to all its cameras at once
        self.sinks: list[AlertSink] = sinks if sinks is not None else []
        self.audit = audit
        self.clock = clock
        # models are injected (edge.node.app): several cameras' pipelines can share one pair
        self.detector = models.detector
        self.embedder = models.embedder
        if len(watchlist) and watchlist.dim != self.embedder.dim:
            raise ValueError(
                f"watchlist embeddings have {watchlist.dim} dims but the recogniser gives "
                f"{self.embedder.dim}: the list was built with another model"
            )
        self.aligner = Aligner(self.embedder.input_size)
        min_px = max(cfg.quality.min_face_px, self.camera.min_face_px or 0)
        self.gate = q.QualityGate(cfg.quality.model_copy(update={"min_face_px": min_px}))
        # detections below the detector's own threshold (kept for the tracker's second
        # stage, edge.node.track.tracking_config) only continue tracks
        self.tracker = Tracker(cfg.tracker, cfg.detector.interval, cfg.detector.score_threshold)
        self.bufs = bufs or FaceBuffers(
            cfg.detector.max_faces, self.embedder.dim, zeroize=cfg.privacy.zeroize,
            lock=cfg.privacy.lock_memory, input_size=self.embedder.input_size,
        )
        self.ring = FrameRing(cfg.privacy.ring_size, zeroize=cfg.privacy.zeroize,
                              lock=cfg.privacy.lock_memory)
        self.stats = NodeStats()
        self.threshold = self.camera.threshold
        self.alert_builder = AlertBuilder(cfg, watchlist, self.threshold, self.camera.name)
        self.ledger = Ledger(audit, self.stats, cfg.audit.ledger_interval_s, self.bufs.zeroize_enabled,
                             camera=self.camera.name)
        self.interval = cfg.detector.interval
        self._last_detected = -1_000_000  # index of the last frame the detector ran on
        self._stop = threading.Event()
        self._source: FrameSource | None = None
        self.stopped_reason = ""

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame, bufs: FaceBuffers | None = None) -> list[Alert]:
        """Run one frame through every stage; all face buffers are zeroed before returning.

        ``bufs``: the face buffers of the site worker running this frame (default: ours).
        """
        self.carried(frame.carried_before)
        since = frame.index - self._last_detected
        if 0 < since < self.interval:  # between detections: the tracks carry the faces
            self.stats.frames += 1
            self.stats.frames_carried += 1
            self.ring.release(frame.slot)
            return []
        self._last_detected = frame.index
        b = bufs or self.bufs
        st = self.stats.stage_s
        alerts: list[Alert] = []
        decided_at = None
        t_decided = 0.0
        try:
            t0 = time.perf_counter()
            n = self.detector(frame.image, b)  # boxes, scores, landmarks -> b
            # faces are the confident detections; low-score ones only help the tracker
            detected = int(np.count_nonzero(b.scores[:n] >= self.tracker.high_score))
            if self.camera.zone is not None and n:
                n = self._keep_in_zone(b, n)
            t1 = time.perf_counter()
            st["detect"] += t1 - t0
            self.stats.faces_seen += detected

            found = self.tracker.update(b.boxes[:n], frame.index, b.scores[:n])
            tracks: dict[int, Track] = {}  # row -> track, for the rows that may be embedded
            todo: list[int] = []
            forced: set[int] = set()  # gate overridden: the track was gated too long
            for i in range(n):
                t = found[i]
                if t is None or not self.tracker.embeddable(float(b.scores[i])):
                    continue  # a low-score row: it moved its track on, that is all
                tracks[i] = t
                if not self.tracker.wants_embedding(t, frame.index):
                    continue
                reason = self.gate.pre(b.boxes[i], b.landmarks[i])
                if reason != q.OK:
                    if not self._override(t, reason):
                        continue
                    forced.add(i)
                todo.append(i)
            t2 = time.perf_counter()
            st["track"] += t2 - t1

            k = self.aligner(frame.image, b, todo)  # crops[0:k] follow todo's order
            keep = self._post_gate(b, todo, k, tracks, forced)
            t3 = time.perf_counter()
            st["align"] += t3 - t2

            m = self.embedder(b, len(keep))  # emb[0:m]
            t4 = time.perf_counter()
            st["embed"] += t4 - t3
            self.stats.faces_embedded += m

            self.watchlist.search(b.emb[:m], b.sims, b.ids, b.whole)
            t5 = time.perf_counter()
            st["search"] += t5 - t4

            decided_at = self.clock()
            t_decided = time.perf_counter()
            for j in range(m):
                i = keep[j]
                t = tracks[i]
                self.tracker.embedded(t, frame.index)
                entry_idx = int(b.ids[j, 0])
                if entry_idx < 0:
                    continue
                subject_id = self.watchlist.entries[entry_idx].subject_id
                t.add_score(subject_id, entry_idx, float(b.sims[j, 0]),
                            face_quality(b.boxes[i], b.landmarks[i]))
                fused = t.fused(subject_id, self.cfg.tracker.min_embeddings)
                if fused >= self.threshold and not t.alerted:
                    t.alerted = True
                    if self.alert_builder.cooling(subject_id, decided_at):
                        self.stats.alerts_suppressed += 1
                        continue
                    alert, jpeg, ref = self.alert_builder.build(
                        frame, b.boxes[i], b.boxes[:b.n], t.track_id, subject_id,
                        t.best_entry[subject_id], fused, decided_at)
                    self._emit(frame, alert, jpeg, ref)
                    alerts.append(alert)
            st["alert"] += time.perf_counter() - t5
            self.stats.faces_discarded += detected - len(alerts)
            self.stats.frames += 1
            return alerts
        finally:
            tz = time.perf_counter()
            b.zeroize()
            self.ring.release(frame.slot)
            done = time.perf_counter()
            st["zeroize"] += done - tz
            if decided_at is not None:  # the frame's match decision -> all its buffers zero
                self.stats.record(self.stats.zeroize_latency_s, done - t_decided)

    def carried(self, n: int) -> None:
        """``n`` frames the source decoded but never converted (between detections)."""
        self.stats.frames += n
        self.stats.frames_carried += n

    def _keep_in_zone(self, b: FaceBuffers, n: int) -> int:
        """Drop the rows of faces outside the camera's zone: they are never tracked or embedded."""
        assert self.camera.zone is not None
        keep = np.flatnonzero(self.camera.zone.inside(b.boxes[:n]))
        k = len(keep)
        if k < n:
            self.stats.faces_outside_zone += n - k
            b.boxes[:k] = b.boxes[keep]
            b.scores[:k] = b.scores[keep]
            b.landmarks[:k] = b.landmarks[keep]
            b.n = k  # rows k..n stay dirty until this frame's zeroize (the high-water mark)
        return k

    def _override(self, t: Track, reason: str) -> bool:
        """A gated face: count it, or embed it anyway when the track has been gated too long."""
        if self.tracker.gate_overridden(t):
            self.stats.gate_overrides += 1
            return True
        self.stats.faces_gated[reason] = self.stats.faces_gated.get(reason, 0) + 1
        self.tracker.gated(t)
        return False

    def _post_gate(self, b: FaceBuffers, todo: list[int], k: int, tracks: dict[int, Track],
                   forced: set[int]) -> list[int]:
        """Sharpness gate on the aligned crops; keeps crops[0:len(keep)] packed in order."""
        keep: list[int] = []
        for src in range(k):
            i = todo[src]
            if i not in forced:
                reason = self.gate.post(b.crops[src])
                if reason != q.OK and not self._override(tracks[i], reason):
                    continue
            dst = len(keep)
            if dst != src:
                b.crops[dst] = b.crops[src]
            keep.append(i)
        return keep

    def _emit(self, frame: Frame, alert: Alert, jpeg: bytes, ref: bytes | None) -> None:
        """A new alert: count it, hand it to every sink, record it in the audit log."""
        self.stats.alerts += 1
        self.stats.record(self.stats.capture_to_alert_s, self.clock() - frame.captured_at)
        for sink in self.sinks:
            sink.send(alert, jpeg, ref)
        if self.audit is not None:
            self.audit.append("alert", {
                "alert_id": alert.alert_id, "subject_id": alert.subject_id,
                "track_id": alert.track_id, "score": alert.score, "threshold": self.threshold,
                "frame_index": frame.index, "camera": alert.camera,
            })

    # ------------------------------------------------------------------ the loop
    def handle(self, frame: Frame, bufs: FaceBuffers | None = None) -> list[Alert]:
        """``process`` that never raises: one bad frame never stops the node.

        Its error is logged by type (never by content) and counted; its buffers are zeroed
        like any other frame's. Appends the camera's ledger line when one is due.
        """
        try:
            alerts = self.process(frame, bufs)
        except Exception as exc:  # noqa: BLE001 - never die on one frame
            self.stats.frames_failed += 1
            log.error("camera %s: frame %d failed in pipeline: %s (frame discarded)",
                      self.camera.name, frame.index, type(exc).__name__)
            alerts = []
        self.ledger.maybe_append()
        return alerts

    def run(self, source: FrameSource, max_frames: int = 0,
            on_frame: Callable[[Frame, list[Alert]], None] | None = None) -> NodeStats:
        """Process one source's frames until it ends, ``stop()`` or the watchlist window closes
        (tests, benchmarks and the demo; ``edge run`` runs cameras through :mod:`edge.node.site`)."""
        self._source = source
        last_window_check = 0.0
        try:
            for frame in source.frames():
                now = self.clock()
                if now - last_window_check >= 1.0:
                    last_window_check = now
                    if not self.watchlist.in_window(now):
                        self.ring.release(frame.slot)
                        self.stopped_reason = "watchlist window closed"
                        log.warning("watchlist window closed: matching stopped")
                        break
                alerts = self.handle(frame)
                if on_frame is not None:
                    on_frame(frame, alerts)
                if self._stop.is_set() or (max_frames and self.stats.frames >= max_frames):
                    self.stopped_reason = self.stopped_reason or "stopped"
                    break
            else:
                self.stopped_reason = self._stop.is_set() and "stopped" or "source ended"
        finally:
            source.close()
            self.ring.zeroize_all()
            self.bufs.zeroize()
            self.ledger.maybe_append(force=True)
        return self.stats

    def stop(self) -> None:
        self._stop.set()
        if self._source is not None:
            self._source.stop()  # a source waiting for a camera to come back ends now
