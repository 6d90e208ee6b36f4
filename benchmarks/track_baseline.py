# The node's PREVIOUS face tracker, kept only for benchmarks/track_alerts.py (old vs new tracker
# on the real videos). It is edge/node/track.py as of commit 62f02cf, before the Kalman +
# two-stage (ByteTrack-style) tracker replaced it; nothing in the product imports this file.
# Vendored so that the benchmark runs from a fresh clone; do not change it (apart from this
# header), or the comparison no longer compares against what the node used to do.
"""Face tracker: groups one person's detections across frames and fuses their match scores.

Matching every face on every frame costs an embedding each (12-18 ms on 2 cores) and gives
a noisy, flickering decision. A track is decided once from several frames' scores and is
only embedded again when that could change the decision: it is still undecided, enough
frames have passed, and the face is now bigger or better than before.

The quality gates skip faces that are too small, turned or blurred, but a gate must never
hide a whole person: a track gated ``embed_gated_after`` times in a row is embedded anyway on
its next face that is about as big as the biggest gated one (after twice that many, whatever
comes). Without this, a sought person who stays dimly lit or half-turned is never looked at.

What a track keeps: box coordinates and top-1 similarity scores per watchlist subject -
never pixels, crops, landmarks or embeddings (those live one frame, in privacy buffers).
A track is dropped ``max_missed_frames`` after its face leaves the view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.config import TrackerSection


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # x, y, w, h
    first_frame: int
    last_frame: int
    last_embedded: int = -1_000_000
    embeddings: int = 0
    best_size: float = 0.0
    scores: dict[str, list[float]] = field(default_factory=dict)  # subject -> top-1 scores
    best_entry: dict[str, int] = field(default_factory=dict)  # subject -> entry index
    alerted: bool = False
    decided: bool = False
    gated: int = 0  # faces gated in a row since the last embedding
    gated_best_size: float = 0.0  # widest of those gated faces
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # px/frame

    def predicted(self, frame_index: int) -> np.ndarray:
        """The box moved on by its velocity to ``frame_index`` (constant-velocity model)."""
        box = self.box.copy()
        box[:2] += self.velocity * float(frame_index - self.last_frame)
        return box

    def add_score(self, subject_id: str, entry_idx: int, score: float) -> None:
        lst = self.scores.setdefault(subject_id, [])
        lst.append(score)
        if score >= max(lst):
            self.best_entry[subject_id] = entry_idx

    def fused(self, subject_id: str, k: int) -> float:
        """Mean of the best ``k`` top-1 scores for a subject (0 when fewer than k)."""
        lst = self.scores.get(subject_id, [])
        if len(lst) < k:
            return 0.0
        return float(np.mean(sorted(lst, reverse=True)[:k]))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of x,y,w,h boxes: rows a, columns b."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    ax1, ay1 = a[:, 0:1], a[:, 1:2]
    ax2, ay2 = ax1 + a[:, 2:3], ay1 + a[:, 3:4]
    bx1, by1 = b[:, 0], b[:, 1]
    bx2, by2 = bx1 + b[:, 2], by1 + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return (inter / np.maximum(union, 1e-6)).astype(np.float32)


class Tracker:
    """Greedy IoU association of detections with the tracks' predicted boxes.

    Each track carries a velocity (an average of its last moves), so a face is found again
    when the detector runs only every ``detector.interval`` frames: a walker at 1080p moves
    ~5-10 px a frame, which at interval 3 is a third of a small face's width.
    """

    def __init__(self, cfg: TrackerSection, interval: int = 1) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._next_id = 1
        # seen every ``interval`` frames, a face must survive two missed detections, or each
        # miss starts a new track (a new embedding, and at k = 6 twice the alerts of k = 1)
        self.max_missed = max(cfg.max_missed_frames, 2 * interval + 1) if interval > 1 \
            else cfg.max_missed_frames
        self.interval = interval

    def update(self, boxes: np.ndarray, frame_index: int) -> list[Track]:
        """Assign each box (row) a track; returns the track per box, in box order."""
        n = len(boxes)
        assigned: list[Track | None] = [None] * n
        if not self.cfg.enabled:
            for i in range(n):
                assigned[i] = self._new(boxes[i], frame_index)
            self.tracks = []
            return assigned  # type: ignore[return-value]
        old = np.array([t.predicted(frame_index) for t in self.tracks], np.float32).reshape(-1, 4)
        used_t: set[int] = set()
        for ti, bi in self._pairs(old, boxes, frame_index):
            if ti in used_t or assigned[bi] is not None:
                continue
            self._follow(self.tracks[ti], boxes[bi], frame_index)
            assigned[bi] = self.tracks[ti]
            used_t.add(ti)
        # missed is counted in frames, so a detector running every k frames keeps the same reach
        self.tracks = [t for t in self.tracks if frame_index - t.last_frame <= self.max_missed]
        for i in range(n):
            if assigned[i] is None:
                t = self._new(boxes[i], frame_index)
                self.tracks.append(t)
                assigned[i] = t
        return assigned  # type: ignore[return-value]

    def _pairs(self, old: np.ndarray, boxes: np.ndarray, frame_index: int) -> list[tuple[int, int]]:
        """(track, box) candidates, best first: by IoU of the predicted box, then, for tracks
        not seen on the previous frame, by centre distance (with a detector interval only).

        A face first seen k frames ago has no velocity yet, and a walker's small face moves
        more than its own width in 6 frames: IoU alone would start a new track (a new
        embedding, a second alert) at every detection. So a track seen ``dt`` >= 2 frames ago
        also takes the nearest box of about its size whose centre is within one face width.
        """
        pairs: list[tuple[int, int]] = []
        iou = iou_matrix(old, boxes)
        if iou.size:
            order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
            for ti, bi in order:
                if iou[ti, bi] < self.cfg.iou_threshold:
                    break
                pairs.append((int(ti), int(bi)))
        if self.interval < 2 or not len(old) or not len(boxes):
            return pairs  # detecting every frame, faces move little between detections
        gaps = np.array([frame_index - t.last_frame for t in self.tracks])
        if not (gaps >= 2).any():
            return pairs
        oc = old[:, :2] + old[:, 2:] / 2
        bc = boxes[:, :2] + boxes[:, 2:] / 2
        width = np.maximum(old[:, 2:3], boxes[:, 2][None, :])
        dist = np.linalg.norm(oc[:, None, :] - bc[None, :, :], axis=2) / np.maximum(width, 1.0)
        ratio = boxes[:, 2][None, :] / np.maximum(old[:, 2:3], 1.0)
        ok = (gaps[:, None] >= 2) & (dist < 1.0) & (ratio > 0.67) & (ratio < 1.5)
        for flat in np.argsort(dist, axis=None):
            ti, bi = np.unravel_index(flat, dist.shape)
            if not ok[ti, bi]:
                if dist[ti, bi] >= 1.0:
                    break
                continue
            pairs.append((int(ti), int(bi)))
        return pairs

    @staticmethod
    def _follow(t: Track, box: np.ndarray, frame_index: int) -> None:
        """The track's face is ``box`` now: update its velocity, box and last frame."""
        new = box.astype(np.float32)
        dt = max(1, frame_index - t.last_frame)
        step = (new[:2] - t.box[:2]) / dt
        # the first move sets the velocity; later ones are averaged (detector jitter)
        t.velocity = step if t.last_frame == t.first_frame else 0.5 * (t.velocity + step)
        t.box = new.copy()
        t.last_frame = frame_index

    def _new(self, box: np.ndarray, frame_index: int) -> Track:
        t = Track(self._next_id, box.astype(np.float32).copy(), frame_index, frame_index)
        self._next_id += 1
        return t

    def wants_embedding(self, t: Track, frame_index: int) -> bool:
        """Embed when the decision could still change and the face is worth another look."""
        if not self.cfg.enabled:
            return True
        if t.alerted or t.decided:
            return False
        if t.embeddings == 0:
            return True
        if t.embeddings >= self.cfg.max_embeddings:
            return False
        if frame_index - t.last_embedded < self.cfg.reembed_every:
            # a clearly bigger face (closer to the camera) is worth embedding early
            return float(t.box[2]) > 1.25 * t.best_size
        return True

    def gated(self, t: Track) -> None:
        """The quality gate skipped this track's face on this frame."""
        t.gated += 1
        t.gated_best_size = max(t.gated_best_size, float(t.box[2]))

    def gate_overridden(self, t: Track) -> bool:
        """True when this face should be embedded although the gate rejects it: the track has
        been gated ``embed_gated_after`` times in a row and this face is about as big as the
        biggest of them (its best chance), or twice that many times (whatever it looks like)."""
        n = self.cfg.embed_gated_after
        if not self.cfg.enabled or n <= 0 or t.gated < n:
            return False
        # 0.9: box widths jitter by a few pixels between frames of a still face
        return float(t.box[2]) >= 0.9 * t.gated_best_size or t.gated >= 2 * n

    def embedded(self, t: Track, frame_index: int) -> None:
        t.embeddings += 1
        t.last_embedded = frame_index
        t.best_size = max(t.best_size, float(t.box[2]))
        t.gated = 0
        t.gated_best_size = 0.0
        if self.cfg.enabled and t.embeddings >= self.cfg.max_embeddings:
            t.decided = True

    def active(self) -> int:
        return len(self.tracks)
