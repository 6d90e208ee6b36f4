"""Face tracker: groups one person's detections across frames and fuses their match scores.

Matching every face on every frame costs an embedding each (12-18 ms on 2 cores) and gives
a noisy, flickering decision. A track is decided once from several frames' scores and is
only embedded again when that could change the decision: it is still undecided, enough
frames have passed, and the face is now bigger or better than before.

Association uses boxes and motion only (no appearance: no embedding outlives its frame).
Each track carries a Kalman filter on its box (centre, size and their velocities, in
pixels per camera frame), predicted over the real gap in frame indices since it was last
seen, so a face is found again when the node processes only every 12th frame (a loaded box
at ~2 fps) or the detector runs every ``detector.interval`` frames. A detection is matched
to a track when it lies within the prediction's uncertainty (Mahalanobis gate) or overlaps
the predicted box; the uncertainty of a young track, whose speed is not yet known, grows
with the gap, that of a track with a measured velocity much less, which keeps two walkers
who cross from swapping. Matching has two stages, as in ByteTrack (Zhang et al. 2022):
confident detections first, then low-score ones (a blurred or turned face the detector is
unsure of) against the tracks still unmatched. A low-score detection only continues a
track: it never starts one and is never embedded.

The quality gates skip faces that are too small, turned or blurred, but a gate must never
hide a whole person: a track gated ``embed_gated_after`` times in a row is embedded anyway on
its next face that is about as big as the biggest gated one (after twice that many, whatever
comes). Without this, a sought person who stays dimly lit or half-turned is never looked at.

What a track keeps: its last box, the Kalman mean and covariance of that box's motion, and
per embedding a quality figure and its top-1 (subject, similarity) - never pixels, crops,
landmarks or embeddings (those live one frame, in privacy buffers). A track is dropped when
it has missed ``max_missed_detections`` detector runs and ``max_missed_frames`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.config import Config, TrackerSection

# Kalman noise, relative to the face width, per camera frame (ByteTrack's weights: 1/20 of
# the size for a position, 1/160 for a velocity). A new track's velocity is unknown: its
# spread, w/10 a frame, is about the image speed of a face walking across a 25 fps view.
STD_POS = 1.0 / 20.0
STD_VEL = 1.0 / 160.0
STD_VEL_NEW = 1.0 / 10.0
# chi-square quantiles for 4 degrees of freedom (x, y, w, h): the gates on the Mahalanobis
# distance of a detection from a track's prediction
CHI2_4_99 = 13.277
CHI2_4_95 = 9.488
# a face's width changes by less than this factor between two matched detections
MAX_SIZE_RATIO = 1.5
# a low-score detection needs this much overlap with the prediction to bypass the gate
LOW_IOU = 0.5

_H = np.hstack([np.eye(4), np.zeros((4, 4))]).astype(np.float64)  # measures x, y, w, h


def _centre(box: np.ndarray) -> np.ndarray:
    x, y, w, h = (float(v) for v in box[:4])
    return np.array([x + w / 2, y + h / 2, w, h], np.float64)


@dataclass
class Look:
    """One embedding's outcome, kept after the embedding itself is zeroed: how good the face
    was and which subject it was closest to (top-1), with what similarity."""

    quality: float
    subject_id: str
    score: float


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # x, y, w, h of the last matched detection
    first_frame: int
    last_frame: int
    last_embedded: int = -1_000_000
    embeddings: int = 0
    best_size: float = 0.0
    scores: dict[str, list[float]] = field(default_factory=dict)  # subject -> top-1 scores
    best_entry: dict[str, int] = field(default_factory=dict)  # subject -> entry index
    looks: list[Look] = field(default_factory=list)  # one per embedding that found a subject
    alerted: bool = False
    decided: bool = False
    gated: int = 0  # faces gated in a row since the last embedding
    gated_best_size: float = 0.0  # widest of those gated faces
    missed: int = 0  # detector runs since the last match
    hits: int = 1  # detections matched (the first included)
    mean: np.ndarray = field(default_factory=lambda: np.zeros(8))  # cx, cy, w, h and velocities
    cov: np.ndarray = field(default_factory=lambda: np.eye(8))

    def __post_init__(self) -> None:
        if not self.mean.any():
            self._init_motion()

    def _init_motion(self) -> None:
        self.mean = np.zeros(8)
        self.mean[:4] = _centre(self.box)
        w = max(float(self.box[2]), 1.0)
        std = np.array([2 * STD_POS] * 4 + [STD_VEL_NEW] * 4) * w
        self.cov = np.diag(std * std)

    @property
    def velocity(self) -> np.ndarray:
        """Centre velocity in pixels per frame (the Kalman estimate)."""
        return self.mean[4:6].astype(np.float32)

    def prior(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the box state moved on to ``frame_index``."""
        dt = float(max(frame_index - self.last_frame, 0))
        f = np.eye(8)
        f[:4, 4:] = dt * np.eye(4)
        w = max(float(self.mean[2]), 1.0)
        # random-walk process noise: the spread grows with the gap, so a face seen half a
        # second ago (12 frames at 25 fps) is looked for further away than one seen last frame
        q = np.diag((np.array([STD_POS] * 4 + [STD_VEL] * 4) * w) ** 2) * dt
        mean = f @ self.mean
        mean[2:4] = np.maximum(mean[2:4], 1.0)
        return mean, f @ self.cov @ f.T + q

    def predicted(self, frame_index: int) -> np.ndarray:
        """The predicted x, y, w, h box at ``frame_index``."""
        m, _ = self.prior(frame_index)
        return np.array([m[0] - m[2] / 2, m[1] - m[3] / 2, m[2], m[3]], np.float32)

    def correct(self, box: np.ndarray, frame_index: int) -> None:
        """The track's face is ``box`` at ``frame_index``: Kalman update of its motion."""
        mean, cov = self.prior(frame_index)
        z = _centre(box)
        r = np.diag((STD_POS * max(float(mean[2]), 1.0) * np.ones(4)) ** 2)
        s = _H @ cov @ _H.T + r
        gain = cov @ _H.T @ np.linalg.inv(s)
        self.mean = mean + gain @ (z - _H @ mean)
        self.cov = (np.eye(8) - gain @ _H) @ cov
        self.box = box.astype(np.float32).copy()
        self.last_frame = frame_index
        self.missed = 0
        self.hits += 1

    def add_score(self, subject_id: str, entry_idx: int, score: float, quality: float = 0.0) -> None:
        """One embedding's top-1 result; ``quality`` ranks it among the track's embeddings."""
        lst = self.scores.setdefault(subject_id, [])
        lst.append(score)
        if score >= max(lst):
            self.best_entry[subject_id] = entry_idx
        self.looks.append(Look(quality, subject_id, score))

    def fused(self, subject_id: str, k: int) -> float:
        """Mean similarity over the ``k`` best-quality embeddings that named ``subject_id``
        top-1 (0 while fewer than k did).

        The best faces decide, not the best scores: the top-k scores of a long track are
        its luckiest draws, which for a bystander are the false alerts. Only the looks that
        named this subject count (a better face that matched nobody says nothing about
        this one's similarity, which was never kept; and a track can change person when two
        faces pass at one spot). Equal qualities fall back to the higher scores, i.e. the
        former top-k-by-score rule.

        With k = 1 one face is enough by definition: the best score decides, as before (a
        better face of the same track may have named this subject at 0.08 - another
        person passing the same spot - and must not veto this one).
        """
        mine = [lk for lk in self.looks if lk.subject_id == subject_id]
        if len(mine) < k:
            return 0.0
        if k == 1:
            return max(lk.score for lk in mine)
        best = sorted(mine, key=lambda lk: (-lk.quality, -lk.score))[:k]
        return float(np.mean([lk.score for lk in best]))


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


def tracking_config(cfg: Config) -> Config:
    """``cfg`` with the detector keeping detections down to ``tracker.low_score_threshold``
    (for the node's detector only: the tracker's second stage needs them; everything else
    - enrolment, evaluation - keeps ``detector.score_threshold``). Unchanged when the
    tracker is off or its low threshold is not below the detector's."""
    low = cfg.tracker.low_score_threshold
    if not cfg.tracker.enabled or low >= cfg.detector.score_threshold:
        return cfg
    det = cfg.detector.model_copy(update={"score_threshold": low})
    return cfg.model_copy(update={"detector": det})


class Tracker:
    """Two-stage association of detections with the tracks' Kalman predictions.

    ``high_score``: detections scoring below it (kept by a detector run at
    ``tracker.low_score_threshold``) are low-score ones: they only continue tracks.
    """

    def __init__(self, cfg: TrackerSection, interval: int = 1, high_score: float = 0.0) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._next_id = 1
        # seen every ``interval`` frames, a face must survive two missed detections, or each
        # miss starts a new track (a new embedding, and at k = 6 twice the alerts of k = 1)
        self.max_missed = max(cfg.max_missed_frames, 2 * interval + 1) if interval > 1 \
            else cfg.max_missed_frames
        self.interval = interval
        self.high_score = high_score

    def embeddable(self, score: float) -> bool:
        """Only a confident detection is a face worth an embedding (or a new track)."""
        return score >= self.high_score

    def update(self, boxes: np.ndarray, frame_index: int,
               scores: np.ndarray | None = None) -> list[Track | None]:
        """Assign each box (row) a track; returns the track per box, in box order (None for
        a low-score box that continues no track)."""
        n = len(boxes)
        high = np.ones(n, bool) if scores is None else np.asarray(scores[:n]) >= self.high_score
        assigned: list[Track | None] = [None] * n
        if not self.cfg.enabled:
            for i in np.flatnonzero(high):
                assigned[i] = self._new(boxes[i], frame_index)
            self.tracks = []
            return assigned
        priors = [t.prior(frame_index) for t in self.tracks]
        free = list(range(len(self.tracks)))
        for stage_high in (True, False):
            rows = [i for i in range(n) if bool(high[i]) == stage_high]
            for ti, bi in self._match(priors, free, boxes, rows, stage_high):
                self.tracks[ti].correct(boxes[bi], frame_index)
                assigned[bi] = self.tracks[ti]
                free.remove(ti)
        for ti in free:
            self.tracks[ti].missed += 1
        # a track ends when it has missed enough detector runs AND frames: at 25 fps the
        # frames decide (as before); at 2 fps one gap is already more than max_missed frames
        self.tracks = [t for t in self.tracks
                       if t.missed <= self.cfg.max_missed_detections
                       or frame_index - t.last_frame <= self.max_missed]
        for i in np.flatnonzero(high):
            if assigned[i] is None:
                t = self._new(boxes[i], frame_index)
                self.tracks.append(t)
                assigned[i] = t
        return assigned

    def _match(self, priors: list[tuple[np.ndarray, np.ndarray]], free: list[int],
               boxes: np.ndarray, rows: list[int], high: bool) -> list[tuple[int, int]]:
        """(track, box) pairs within the gate, greedily by Mahalanobis distance.

        A pair is a candidate when the detection lies within the prediction's 99% region
        (95% for a low-score detection) or overlaps the predicted box by ``iou_threshold``
        (``LOW_IOU`` for a low-score one), and its width is within ``MAX_SIZE_RATIO``.
        """
        if not free or not rows:
            return []
        z = np.array([_centre(boxes[i]) for i in rows])  # (R, 4)
        pred = np.array([[m[0] - m[2] / 2, m[1] - m[3] / 2, m[2], m[3]]
                         for m, _ in (priors[t] for t in free)], np.float32)
        iou = iou_matrix(pred, boxes[rows].astype(np.float32))
        d2 = np.empty((len(free), len(rows)))
        for a, ti in enumerate(free):
            mean, cov = priors[ti]
            w = max(float(mean[2]), 1.0)
            s = _H @ cov @ _H.T + np.diag((STD_POS * w * np.ones(4)) ** 2)
            y = z - mean[:4]
            d2[a] = np.einsum("ij,jk,ik->i", y, np.linalg.inv(s), y)
        ratio = z[None, :, 2] / np.maximum(pred[:, 2:3], 1.0)
        gate = CHI2_4_99 if high else CHI2_4_95
        min_iou = self.cfg.iou_threshold if high else max(LOW_IOU, self.cfg.iou_threshold)
        ok = ((d2 <= gate) | (iou >= min_iou)) & (ratio < MAX_SIZE_RATIO) \
            & (ratio > 1.0 / MAX_SIZE_RATIO)
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_b: set[int] = set()
        for flat in np.argsort(np.where(ok, d2, np.inf), axis=None):
            a, r = np.unravel_index(flat, d2.shape)
            if not ok[a, r]:
                break  # the rest are outside every gate (sorted last, as inf)
            if a in used_t or r in used_b:
                continue
            used_t.add(int(a))
            used_b.add(int(r))
            pairs.append((free[a], rows[r]))
        return pairs

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
