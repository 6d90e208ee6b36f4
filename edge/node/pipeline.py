"""Where a frame goes, top to bottom.

    source -> detect -> track -> quality gate -> align -> embed -> match -> decide
           -> (match only) alert -> zeroize every face buffer and the frame slot

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
from typing import Protocol

import cv2
import numpy as np

from edge.config import Config
from edge.face import quality as q
from edge.face.align import Aligner
from edge.face.registry import FaceModels
from edge.link.schema import Alert, describe
from edge.node.sources import Frame, FrameSource
from edge.node.stats import NodeStats
from edge.node.track import Track, Tracker
from edge.privacy import FaceBuffers, FrameRing
from edge.watchlist.index import Watchlist

log = logging.getLogger(__name__)

class AlertSink(Protocol):
    """Where alerts go: the durable outbox sender, or a list in tests."""

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None: ...


class AuditSink(Protocol):
    def append(self, kind: str, data: dict) -> dict: ...


class Node:
    """One camera's matching pipeline. ``process(frame)`` is the whole per-frame story."""

    def __init__(
        self,
        cfg: Config,
        watchlist: Watchlist,
        models: FaceModels,
        sink: AlertSink | None = None,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.watchlist = watchlist
        self.sink = sink
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
        self.gate = q.QualityGate(cfg.quality)
        self.tracker = Tracker(cfg.tracker)
        self.bufs = FaceBuffers(
            cfg.detector.max_faces, self.embedder.dim, zeroize=cfg.privacy.zeroize,
            lock=cfg.privacy.lock_memory, input_size=self.embedder.input_size,
        )
        self.ring = FrameRing(cfg.privacy.ring_size, zeroize=cfg.privacy.zeroize,
                              lock=cfg.privacy.lock_memory)
        self.stats = NodeStats()
        self.threshold = cfg.match.threshold
        self._last_alert: dict[str, float] = {}  # subject -> time of last alert (cool-down)
        self._ledger_prev = self.stats.snapshot()
        self._ledger_at = time.monotonic()
        self._stop = threading.Event()
        self.stopped_reason = ""

    # ------------------------------------------------------------------ per frame
    def process(self, frame: Frame) -> list[Alert]:
        """Run one frame through every stage; all face buffers are zeroed before returning."""
        b = self.bufs
        st = self.stats.stage_s
        alerts: list[Alert] = []
        decided_at = None
        t_decided = 0.0
        try:
            t0 = time.perf_counter()
            n = self.detector(frame.image, b)  # boxes, scores, landmarks -> b
            t1 = time.perf_counter()
            st["detect"] += t1 - t0
            self.stats.faces_seen += n

            tracks = self.tracker.update(b.boxes[:n], frame.index)
            todo: list[int] = []
            forced: set[int] = set()  # gate overridden: the track was gated too long
            for i in range(n):
                t = tracks[i]
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
            keep = self._post_gate(todo, k, tracks, forced)
            t3 = time.perf_counter()
            st["align"] += t3 - t2

            m = self.embedder(b, len(keep))  # emb[0:m]
            t4 = time.perf_counter()
            st["embed"] += t4 - t3
            self.stats.faces_embedded += m

            self.watchlist.search(b.emb[:m], b.sims, b.ids)
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
                t.add_score(subject_id, entry_idx, float(b.sims[j, 0]))
                fused = t.fused(subject_id, self.cfg.tracker.min_embeddings)
                if fused >= self.threshold and not t.alerted:
                    alert = self._alert(frame, i, j, t.track_id, subject_id,
                                        t.best_entry[subject_id], fused, decided_at)
                    t.alerted = True
                    if alert is not None:
                        alerts.append(alert)
            st["alert"] += time.perf_counter() - t5
            self.stats.faces_discarded += n - len(alerts)
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

    def _override(self, t: Track, reason: str) -> bool:
        """A gated face: count it, or embed it anyway when the track has been gated too long."""
        if self.tracker.gate_overridden(t):
            self.stats.gate_overrides += 1
            return True
        self.stats.faces_gated[reason] = self.stats.faces_gated.get(reason, 0) + 1
        self.tracker.gated(t)
        return False

    def _post_gate(self, todo: list[int], k: int, tracks: list[Track], forced: set[int]) -> list[int]:
        """Sharpness gate on the aligned crops; keeps crops[0:len(keep)] packed in order."""
        keep: list[int] = []
        b = self.bufs
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

    def _alert(self, frame: Frame, i: int, j: int, track_id: int, subject_id: str,
               entry_idx: int, score: float, decided_at: float) -> Alert | None:
        """A likely match: build the alert (probe crop as JPEG) unless in the cool-down."""
        last = self._last_alert.get(subject_id)
        if last is not None and decided_at - last < self.cfg.alerts.cooldown_s:
            self.stats.alerts_suppressed += 1
            return None
        self._last_alert[subject_id] = decided_at
        match = self.watchlist.match_of(entry_idx, score)
        box = [int(round(float(v))) for v in self.bufs.boxes[i]]
        alert = Alert(
            node_id=self.cfg.node.node_id,
            camera=self.cfg.node.camera,
            deployment_id=self.watchlist.meta.deployment_id,
            track_id=track_id,
            subject_id=subject_id,
            display_name=match.subject.display_name,
            category=match.subject.category,
            score=round(score, 4),
            threshold=self.threshold,
            captured_at=frame.captured_at,
            decided_at=decided_at,
            frame_index=frame.index,
            bbox=box,
            reference_image_id=match.entry.entry_id,
        )
        jpeg = probe_jpeg(frame.image, box, self.cfg.alerts.jpeg_quality,
                          others=self.bufs.boxes[: self.bufs.n])
        ref = self.watchlist.references.get(match.entry.entry_id)
        self.stats.alerts += 1
        self.stats.record(self.stats.capture_to_alert_s, self.clock() - frame.captured_at)
        if self.cfg.alerts.console:
            print(describe(alert), flush=True)
        if self.sink is not None:
            self.sink.send(alert, jpeg, ref)
        if self.audit is not None:
            self.audit.append("alert", {
                "alert_id": alert.alert_id, "subject_id": subject_id, "track_id": track_id,
                "score": alert.score, "threshold": self.threshold, "frame_index": frame.index,
                "camera": alert.camera,
            })
        return alert

    # ------------------------------------------------------------------ the loop
    def run(self, source: FrameSource, max_frames: int = 0,
            on_frame: Callable[[Frame, list[Alert]], None] | None = None) -> NodeStats:
        """Process frames until the source ends, ``stop()`` or the watchlist window closes.

        One bad frame never stops the node: its error is logged by type (never by content)
        and counted, its buffers are zeroed like any other frame's.
        """
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
                try:
                    alerts = self.process(frame)
                except Exception as exc:  # noqa: BLE001 - never die on one frame
                    self.stats.frames_failed += 1
                    log.error("frame %d failed in pipeline: %s (frame discarded)",
                              frame.index, type(exc).__name__)
                    alerts = []
                if on_frame is not None:
                    on_frame(frame, alerts)
                self._maybe_ledger()
                if self._stop.is_set() or (max_frames and self.stats.frames >= max_frames):
                    self.stopped_reason = self.stopped_reason or "stopped"
                    break
            else:
                self.stopped_reason = "source ended"
        finally:
            source.close()
            self.ring.zeroize_all()
            self.bufs.zeroize()
            self._maybe_ledger(force=True)
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def _maybe_ledger(self, force: bool = False) -> None:
        """Append the deletion ledger for the last interval: counts and zeroize latency only."""
        if self.audit is None:
            return
        if not force and time.monotonic() - self._ledger_at < self.cfg.audit.ledger_interval_s:
            return
        snap = self.stats.snapshot()
        prev = self._ledger_prev
        delta = {k: snap[k] - prev[k] for k in
                 ("frames", "faces_seen", "faces_embedded", "faces_discarded", "alerts")}
        window = np.array(self.stats.zeroize_latency_s[-NodeStats.KEEP:] or [0.0])
        self.audit.append("ledger", {
            "interval_s": round(time.monotonic() - self._ledger_at, 3),
            **delta,
            "zeroize_p50_ms": round(float(np.percentile(window, 50)) * 1e3, 3),
            "zeroize_p99_ms": round(float(np.percentile(window, 99)) * 1e3, 3),
            "zeroize_enabled": self.bufs.zeroize_enabled,
        })
        self._ledger_prev = snap
        self._ledger_at = time.monotonic()


def probe_jpeg(image: np.ndarray, box: list[int], quality: int = 90, margin: float = 0.25,
               max_side: int = 320, others: np.ndarray | None = None) -> bytes:
    """The matched face with a little context, for the officer's side-by-side comparison.

    Any other detected face that falls inside the crop is blanked first: a bystander next
    to a matched person must not travel with the alert.
    """
    h, w = image.shape[:2]
    x, y, bw, bh = box
    mx, my = int(bw * margin), int(bh * margin)
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(w, x + bw + mx), min(h, y + bh + my)
    crop = image[y0:y1, x0:x1].copy()
    try:
        for ob in others if others is not None else []:
            ox, oy, ow, oh = (int(round(float(v))) for v in ob)
            if [ox, oy, ow, oh] == [x, y, bw, bh]:
                continue
            # the other face's box, grown a little, in crop coordinates
            gx, gy = int(ow * 0.15), int(oh * 0.15)
            ax0, ay0 = max(0, ox - gx - x0), max(0, oy - gy - y0)
            ax1, ay1 = min(x1 - x0, ox + ow + gx - x0), min(y1 - y0, oy + oh + gy - y0)
            if ax1 > ax0 and ay1 > ay0:
                crop[ay0:ay1, ax0:ax1] = 127
        scale = min(1.0, max_side / max(crop.shape[:2]))
        out = crop
        if scale < 1.0:
            out = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if out is not crop:
            out.fill(0)
    finally:
        crop.fill(0)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
