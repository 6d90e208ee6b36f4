"""Per-track accuracy and quality gating, measured on still photos standing in for video.

A research study, run by ``benchmarks/fusion.py`` (and ``benchmarks/gate_measure.py``); no
command of the product uses it. Its findings are in docs/ACCURACY.md ("Temporal fusion").

There is no identity-labelled video to evaluate on, so tracks are *pseudo-tracks* built from
the identity-labelled photo sets, in the same two halves and with the same enrolment as
``edge.lab.evaluation.run`` (one image per subject; ``split_of`` decides the half):

(a) *multi-photo* tracks: k different photos of one person (LFW identities with >= 6 images:
    1 enrolled + 5 probes). More variation (pose, light, age, camera) than one walk past a
    camera: every frame is an independent view, the most that fusing frames can gain (and,
    with best-frame fusion, the most extra false-alarm chances per non-mated track).
(b) *augmented* tracks: one photo (frame 0, unchanged) plus k-1 perturbed copies (small shift,
    scale and roll; defocus or motion blur; brightness/contrast; JPEG quality), mimicking
    consecutive video frames. Highly correlated: the least fusion can gain, and close to real
    video for the impostor side (a bystander's frames are correlated too).
A real track lies between the two.

Each track is decided by the node's own rule: every frame is searched top-1 against the
watchlist, ``Track.add_score`` keeps the score under that subject, and the track alerts the
first time ``Track.fused(subject, min_embeddings)`` reaches the threshold (once per track).
The bulk per-comparison FMR (millions of track x image pairs) uses a vectorised form of
the same rule, checked against ``Track.fused`` (``fused_matrix``, tests/lab/test_fusion_rules.py).

Quality features (detector box, landmarks, sharpness of the aligned crop) are recorded per
frame so that ``QualityGate`` can be applied afterwards at any setting. Evaluation images are
research data, not live camera faces: like ``embed_images`` the features are cached on disk
(``~/.cache/edge/eval``, mode 0600).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts the checkout on sys.path)
import cv2
import numpy as np
from insightface.utils import face_align
from tqdm import tqdm

from edge.config import QualitySection
from edge.face import quality as q
from edge.face.photos import FaceEngine
from edge.face.quality import sharpness
from edge.lab.evaluation import metrics as M
from edge.lab.evaluation import run as R
from edge.lab.evaluation.datasets import (
    CALIBRATION,
    DEFAULT_PAD,
    REPORT,
    SPLIT_SALT,
    FaceSet,
    default_cache_dir,
    engine_fingerprint,
    files_key,
    load_exclusions,
    load_face_set,
    pick_face,
    split_of,
)
from edge.node.track import Track
from edge.watchlist.fusion import ModelStats, block_scales

FUSION_CACHE_VERSION = "1"
AUG_SALT = "edge-fusion-aug-v1"
DEFAULT_FRAMES = 5
# augmentation parameter columns recorded per frame (frame 0 = the photo itself: all neutral)
AUG_PARAMS = ("shift_x", "shift_y", "scale", "roll_deg", "gauss_sigma", "motion_px",
              "contrast", "brightness", "jpeg_quality")


# ----------------------------------------------------------------------------- augmentation


def frame_rng(name: str, frame: int, salt: str = AUG_SALT) -> np.random.Generator:
    """Deterministic per (image, frame): anyone can regenerate exactly the same frames."""
    seed = int(hashlib.sha256(f"{salt}:{name}:{frame}".encode()).hexdigest()[:16], 16)
    return np.random.default_rng(seed)


def video_like_frame(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A perturbed copy of a face photo, like the next frame of the same face in a video.

    Geometry: shift up to 4% of the side, scale 0.92-1.08, roll up to 4 degrees (the face
    moves a little between frames). Optics: none (25%), defocus (Gaussian sigma 0.5-1.5,
    40%) or motion blur (3-7 px line at a random angle, 35%). Exposure: contrast 0.75-1.25,
    brightness -25..25. Compression: JPEG quality 35-90. Returns (image, parameters).
    """
    h, w = image.shape[:2]
    sx, sy = rng.uniform(-0.04, 0.04, 2)
    scale = rng.uniform(0.92, 1.08)
    roll = rng.uniform(-4.0, 4.0)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), roll, scale)
    m[0, 2] += sx * w
    m[1, 2] += sy * h
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    kind = rng.choice(3, p=[0.25, 0.40, 0.35])
    sigma = motion = 0.0
    if kind == 1:
        sigma = float(rng.uniform(0.5, 1.5))
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    elif kind == 2:
        motion = float(rng.integers(3, 8))
        line = np.zeros((int(motion), int(motion)), np.float32)
        line[int(motion) // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((motion - 1) / 2.0, (motion - 1) / 2.0),
                                      float(rng.uniform(0, 180)), 1.0)
        k = cv2.warpAffine(line, rot, line.shape[::-1])
        kernel = (k / max(float(k.sum()), 1e-6)).astype(np.float32)
        out = cv2.filter2D(out, -1, kernel)
    alpha = float(rng.uniform(0.75, 1.25))
    beta = float(rng.uniform(-25, 25))
    out = cv2.convertScaleAbs(out, alpha=alpha, beta=beta)
    q = int(rng.integers(35, 91))
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if decoded is not None:
        out = decoded
    params = np.array([sx, sy, scale, roll, sigma, motion, alpha, beta, q], np.float32)
    return out, params


NEUTRAL_PARAMS = np.array([0, 0, 1, 0, 0, 0, 1, 0, 100], np.float32)


# ----------------------------------------------------------------------------- features


def photo_sharpness(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[float, float]:
    """The node's sharpness measure (variance of the Laplacian of the aligned grey crop),
    computed only over crop pixels that come from the photo, and the share of such pixels.

    On tight crops padded with black (LFW, UTKFace) the node's literal measure is dominated
    by the hard edge of the border and cannot see blur; this is what the node would measure
    if the photo extended beyond the crop, as a camera frame does.
    """
    m = face_align.estimate_norm(np.asarray(landmarks, np.float32).reshape(5, 2), image_size=size)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.full(image.shape[:2], 255, np.uint8), m, (size, size),
                            flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8))
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    vals = lap[inside > 0]
    cov = vals.size / float(size * size)
    value = float(vals.var()) if vals.size > 100 else 0.0
    crop.fill(0)
    grey.fill(0)
    lap.fill(0)
    return value, cov


@dataclass
class FrameData:
    """Per image and frame: the subject's face (if found), its embedding and quality features."""

    ok: np.ndarray  # [n, F] bool
    emb: np.ndarray  # [n, F, d] float32
    box: np.ndarray  # [n, F, 4] x, y, w, h (image coordinates)
    landmarks: np.ndarray  # [n, F, 5, 2]
    det_score: np.ndarray  # [n, F]
    sharp_node: np.ndarray  # [n, F] quality.sharpness on the aligned crop (padded image)
    sharp_photo: np.ndarray  # [n, F] same measure, photo pixels only
    coverage: np.ndarray  # [n, F] share of the crop that is photo
    params: np.ndarray  # [n, F, len(AUG_PARAMS)]

    @property
    def frames(self) -> int:
        return int(self.ok.shape[1])


def empty_frames(n: int, f: int, d: int) -> FrameData:
    """FrameData for ``n`` images x ``f`` frames of ``d``-dim embeddings: no face found yet."""
    return FrameData(
        ok=np.zeros((n, f), bool), emb=np.zeros((n, f, d), np.float32),
        box=np.zeros((n, f, 4), np.float32), landmarks=np.zeros((n, f, 5, 2), np.float32),
        det_score=np.zeros((n, f), np.float32), sharp_node=np.zeros((n, f), np.float32),
        sharp_photo=np.zeros((n, f), np.float32), coverage=np.zeros((n, f), np.float32),
        params=np.tile(NEUTRAL_PARAMS, (n, f, 1)),
    )


def extract_frames(
    paths: Sequence[Path],
    engine: FaceEngine,
    *,
    frames: int = DEFAULT_FRAMES,
    pad: float = DEFAULT_PAD,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    desc: str = "frames",
) -> FrameData:
    """Detect, align and embed frame 0 (the photo) and ``frames - 1`` video-like copies of
    every image, keeping the subject face's embedding, box, landmarks and sharpness.

    Frame 0 goes through exactly the path of ``embed_images`` (same pad, same ``pick_face``),
    so its embeddings equal the ones ``edge eval`` uses. Cached like ``embed_images``.
    """
    paths = [Path(p) for p in paths]
    key = hashlib.sha256(
        f"{FUSION_CACHE_VERSION}|{AUG_SALT}|frames={frames}|{engine_fingerprint(engine)}|"
        f"pad={pad}|{files_key(paths)}".encode()
    ).hexdigest()[:32]
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cfile = cdir / f"fusion-{key}.npz"
    if use_cache and cfile.is_file():
        try:
            with np.load(cfile) as z:
                fd = FrameData(**{k: z[k] for k in FrameData.__dataclass_fields__})
            if fd.ok.shape == (len(paths), frames):
                return fd
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable cache: recompute
    fd = empty_frames(len(paths), frames, int(engine.dim))
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress,
                               mininterval=1.0, leave=False)):
        img0 = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img0 is None:
            continue
        for f in range(frames):
            if f == 0:
                img = img0
            else:
                img, fd.params[i, f] = video_like_frame(img0, frame_rng(p.name, f))
            faces = engine.faces(img, pad=pad)
            j = pick_face(faces, img.shape[:2])
            if j is not None:
                face = faces[j]
                fd.ok[i, f] = True
                fd.emb[i, f] = face.embedding
                fd.box[i, f] = face.bbox
                fd.landmarks[i, f] = face.landmarks
                fd.det_score[i, f] = face.score
                fd.sharp_node[i, f] = sharpness(face.crop)
                fd.sharp_photo[i, f], fd.coverage[i, f] = photo_sharpness(img, face.landmarks)
            for face in faces:
                face.crop.fill(0)
    if use_cache:
        cdir.mkdir(parents=True, exist_ok=True)
        tmp = cfile.with_suffix(".tmp.npz")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            np.savez(fh, **{k: getattr(fd, k) for k in FrameData.__dataclass_fields__})
        os.replace(tmp, cfile)
    return fd


# ----------------------------------------------------------------------------- recogniser fusion


def scale_blocks(fd: FrameData, scales: Sequence[float],
                 blocks: Sequence[tuple[str, int, int]]) -> FrameData:
    """``fd`` with block m of every frame embedding (columns lo:hi) scaled by sqrt(scales[m]),
    as ``edge eval``'s ``_block_sets`` does: the inner product of two scaled rows is then the
    node's fused score sum_m a_m * cos_m (``edge.watchlist.fusion``). A copy; ``fd`` is kept."""
    if len(scales) != len(blocks):
        raise ValueError(f"{len(scales)} block scales for {len(blocks)} blocks")
    emb = fd.emb.copy()
    for a, (_, lo, hi) in zip(scales, blocks, strict=True):
        emb[..., lo:hi] *= np.float32(math.sqrt(float(a)))
    return dataclasses.replace(fd, emb=emb)


def fuse_frames(sets: Sequence[tuple[Any, FrameData]], engine: FaceEngine, exclusions: Any,
                salt: str, source: str) -> tuple[list[tuple[Any, FrameData]], list[ModelStats] | None]:
    """For a fused engine: each model's impostor statistics on the calibration half's frame-0
    embeddings, exactly as ``edge eval`` computes them (``R.fusion_statistics``), and the
    frames with their blocks scaled so that every dot product is the calibrated fused score.
    One model: the sets unchanged and no statistics."""
    blocks = R.recogniser_blocks(engine)
    if blocks is None:
        return list(sets), None
    pools = R.build_pools([(fs, fd.emb[:, 0], fd.ok[:, 0]) for fs, fd in sets], salt)
    stats = R.fusion_statistics(pools, exclusions, blocks, engine, source)
    scales = [float(a) for a in block_scales(stats)]
    return [(fs, scale_blocks(fd, scales, blocks)) for fs, fd in sets], stats


# ----------------------------------------------------------------------------- the track rule


def track_events(frames: Iterable[tuple[str, float]], min_embeddings: int) -> list[tuple[str, float]]:
    """Run one track's per-frame top-1 results through the node's own ``Track``.

    ``frames`` are (subject, top-1 score) in time order, one per embedded frame. After each
    frame the node computes ``Track.fused(subject, min_embeddings)`` for that frame's subject
    and alerts (once per track) when it reaches the threshold; this returns that fused value
    after every frame, so the decision at any threshold can be read off afterwards.
    """
    t = Track(0, np.zeros(4, np.float32), 0, 0)
    out = []
    for subject, score in frames:
        t.add_score(subject, 0, float(score))
        out.append((subject, t.fused(subject, min_embeddings)))
    return out


def first_alert(events: Sequence[tuple[str, float]], threshold: float) -> str | None:
    """The subject the node alerts on at ``threshold`` (the first fused score to reach it)."""
    for subject, fused in events:
        if fused >= threshold:
            return subject
    return None


def alarm_score(events: Sequence[tuple[str, float]]) -> float:
    """Highest fused score of a track: it raises an alert exactly at thresholds <= this."""
    return max((f for _, f in events), default=-math.inf)


def hit_intervals(events: Sequence[tuple[str, float]], correct: str) -> list[tuple[float, float]]:
    """Thresholds at which the track's (first) alert names ``correct``: a union of (lo, hi].

    At threshold t the alert comes from the first event whose fused score reaches t, i.e.
    event i with max(fused before i) < t <= fused_i. So a correct event i gives the interval
    (max before i, fused_i]; intervals of one track never overlap (the first crossing is
    unique), so TPIR(t) counts intervals containing t.
    """
    out = []
    prev = -math.inf
    for subject, fused in events:
        if subject == correct and fused > prev:
            out.append((prev, fused))
        prev = max(prev, fused)
    return out


def tpir_from_intervals(intervals: Sequence[tuple[float, float]], n_tracks: int,
                        thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """TPIR(t) = share of tracks whose first alert at t names the right subject."""
    if n_tracks <= 0:
        raise ValueError("no mated tracks")
    t = np.asarray(thresholds, np.float64).reshape(-1)
    if not intervals:
        return np.zeros(t.size)
    lo = np.sort(np.array([a for a, _ in intervals], np.float64))
    hi = np.sort(np.array([b for _, b in intervals], np.float64))
    # 1[lo < t <= hi] = 1[hi >= t] - 1[lo >= t]  (lo < hi)
    n_hi = hi.size - np.searchsorted(hi, t, side="left")
    n_lo = lo.size - np.searchsorted(lo, t, side="left")
    return (n_hi - n_lo) / n_tracks


def fused_matrix(scores: np.ndarray, m: int) -> np.ndarray:
    """Vectorised ``Track.fused`` for tracks compared with ONE enrolled subject.

    ``scores`` [pairs, k]: the k frames' scores against that subject (NaN = frame without a
    face). With one subject every frame's top-1 is that subject, so the fused score is the
    mean of the best ``m`` scores; fewer than ``m`` usable frames gives NaN (never alerts;
    ``Track.fused`` returns 0.0 there). Checked against ``Track.fused`` in the tests.
    """
    s = np.where(np.isnan(scores), -np.inf, scores)
    if s.shape[1] < m:
        return np.full(s.shape[0], np.nan, np.float32)
    top = -np.sort(-s, axis=1)[:, :m]
    with np.errstate(invalid="ignore"):
        out = top.mean(axis=1)
    out[~np.isfinite(top[:, m - 1])] = np.nan
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- quality gates


@dataclass(frozen=True)
class GateSetting:
    """One quality-gate configuration to evaluate (``measure`` picks the sharpness value)."""

    name: str
    enabled: bool = True
    min_face_px: int = 32
    max_yaw_deg: float = 45.0
    max_pitch_deg: float = 40.0
    min_sharpness: float = 15.0
    measure: str = "node"  # "node": literal crop of the padded photo; "photo": photo pixels only

    def section(self) -> QualitySection:
        return QualitySection(enabled=self.enabled, min_face_px=self.min_face_px,
                              max_yaw_deg=self.max_yaw_deg, max_pitch_deg=self.max_pitch_deg,
                              min_sharpness=self.min_sharpness)


NO_FACE = "no_face"


def gate_reasons(fd: FrameData, setting: GateSetting) -> np.ndarray:
    """The node's gate verdict for every frame: ``QualityGate.pre`` on box + landmarks, then
    the sharpness gate of ``QualityGate.post`` on the recorded sharpness of the aligned crop
    (``post(crop)`` is ``sharpness(crop) >= min_sharpness``; checked in the tests)."""
    gate = q.QualityGate(setting.section())
    sharp = fd.sharp_node if setting.measure == "node" else fd.sharp_photo
    out = np.full(fd.ok.shape, NO_FACE, dtype=object)
    check_sharp = setting.enabled and setting.min_sharpness > 0
    for i, f in zip(*np.nonzero(fd.ok), strict=True):
        r = gate.pre(fd.box[i, f], fd.landmarks[i, f])
        if r == q.OK and check_sharp and sharp[i, f] < setting.min_sharpness:
            r = q.BLURRED
        out[i, f] = r
    return out


# ----------------------------------------------------------------------------- halves


@dataclass
class Half:
    """One split half, in ``run.py``'s pool order, with every image's frames."""

    name: str
    pool: R.Pool  # built from frame 0 (the photos themselves)
    person: np.ndarray  # person key per pool image (aliases merged by the exclusion list)
    fd: FrameData
    gallery: np.ndarray  # pool indices enrolled (run.py's enrolment)
    mated: np.ndarray
    nonmated: np.ndarray


def _take(fd: FrameData, idx: Sequence[int]) -> FrameData:
    return FrameData(**{k: getattr(fd, k)[np.asarray(idx, int)] for k in FrameData.__dataclass_fields__})


def _concat(parts: Sequence[FrameData]) -> FrameData:
    return FrameData(**{k: np.concatenate([getattr(p, k) for p in parts])
                        for k in FrameData.__dataclass_fields__})


def build_halves(sets: Sequence[tuple[Any, FrameData]], exclusions: Any = None,
                 salt: str | None = None) -> dict[str, Half]:
    """Both halves with exactly ``edge eval``'s split, enrolment and alias handling."""
    salt = salt or SPLIT_SALT
    pools = R.build_pools([(fs, fd.emb[:, 0], fd.ok[:, 0]) for fs, fd in sets], salt)
    out = {}
    for half, pool in pools.items():
        parts: list[FrameData] = []
        names: list[str] = []
        for fs, fd in sets:
            sel = [i for i, it in enumerate(fs.items) if split_of(it.identity, salt) == half]
            items = fs.items
            sel.sort(key=lambda i: (items[i].identity, items[i].path.name))
            parts.append(_take(fd, sel))
            names.extend(fs.items[i].path.name for i in sel)
        if names != pool.names:
            raise RuntimeError("frame data is not in edge eval's pool order")
        person = R.person_keys(pool, exclusions)
        os_ = R.open_set(pool, person)
        out[half] = Half(half, pool, person, _concat(parts), os_.gallery, os_.mated, os_.nonmated)
    return out


@dataclass
class Top1:
    """Every frame's top-1 gallery subject and score (score -inf: no face in that frame)."""

    subject: np.ndarray  # [P, F] object (gallery identity)
    score: np.ndarray  # [P, F] float64


def frame_top1(h: Half, leave_own_out: bool) -> Top1:
    """Search every frame of every image against the half's watchlist, as ``run.py`` does
    (an alias of the probe under another name is never a candidate). ``leave_own_out`` also
    removes the probe's own person: the search of someone who is not enrolled."""
    g = h.gallery
    P, F = h.fd.ok.shape
    gemb = h.pool.emb[g]
    subj = np.empty((P, F), dtype=object)
    score = np.full((P, F), -np.inf)
    gp, gi = h.person[g], h.pool.identity[g]
    for s in range(0, P, 512):
        e = slice(s, min(P, s + 512))
        sims = np.einsum("pfd,gd->pfg", h.fd.emb[e], gemb)
        same = h.person[e][:, None] == gp[None, :]
        mask = same if leave_own_out else same & (h.pool.identity[e][:, None] != gi[None, :])
        sims[np.broadcast_to(mask[:, None, :], sims.shape)] = -np.inf
        top = np.argmax(sims, axis=2)
        sc = np.take_along_axis(sims, top[..., None], axis=2)[..., 0].astype(np.float64)
        sc[~h.fd.ok[e]] = -np.inf
        score[e] = sc
        subj[e] = gi[top]
    return Top1(subj, score)


# ----------------------------------------------------------------------------- pseudo-tracks


@dataclass(frozen=True)
class PseudoTrack:
    """Frames (pool index, frame index) in time order, whose person they show, and how the
    track is searched: against the whole watchlist (mated) or without its own person."""

    frames: tuple[tuple[int, int], ...]
    identity: str
    mated: bool


def augmented_tracks(h: Half, frames: int) -> tuple[list[PseudoTrack], list[PseudoTrack]]:
    """(b): each mated / non-mated search image of ``run.py`` becomes a track of its frames."""
    ident = h.pool.identity
    mk = [PseudoTrack(tuple((int(p), f) for f in range(frames)), str(ident[p]), True)
          for p in h.mated]
    nm = [PseudoTrack(tuple((int(p), f) for f in range(frames)), str(ident[p]), False)
          for p in h.nonmated]
    return mk, nm


def multi_photo_tracks(h: Half, frames: int, salt: str = AUG_SALT) -> tuple[list[PseudoTrack],
                                                                            list[PseudoTrack]]:
    """(a): enrolled people with >= ``frames`` other photos; those photos, in a seeded random
    order, cut into disjoint tracks of ``frames``. Each is searched mated (whole watchlist)
    and non-mated (the same track with its own person left out of the watchlist)."""
    by_id: dict[str, list[int]] = {}
    for p in h.mated:
        by_id.setdefault(str(h.pool.identity[p]), []).append(int(p))
    mated, nonmated = [], []
    for ident in sorted(by_id):
        idx = sorted(by_id[ident], key=lambda p: h.pool.names[p])
        if len(idx) < frames:
            continue
        rng = np.random.default_rng(int(hashlib.sha256(f"{salt}:{ident}".encode()).hexdigest()[:16], 16))
        idx = [idx[i] for i in rng.permutation(len(idx))]
        for c in range(len(idx) // frames):
            fr = tuple((p, 0) for p in idx[c * frames:(c + 1) * frames])
            mated.append(PseudoTrack(fr, ident, True))
            nonmated.append(PseudoTrack(fr, ident, False))
    return mated, nonmated


@dataclass
class TrackOutcome:
    """Per track: the (frame position, subject, fused score) after each embedded frame."""

    events: list[list[tuple[int, str, float]]]
    identities: list[str]

    def mated_intervals(self, k: int) -> list[tuple[float, float]]:
        out = []
        for ev, ident in zip(self.events, self.identities, strict=True):
            out.extend(hit_intervals([(s, f) for pos, s, f in ev if pos < k], ident))
        return out

    def alarm_scores(self, k: int) -> np.ndarray:
        return np.array([alarm_score([(s, f) for pos, s, f in ev if pos < k])
                         for ev in self.events], np.float64)


def decide(tracks: Sequence[PseudoTrack], full: Top1, own_out: Top1, m: int,
           passed: np.ndarray | None = None) -> TrackOutcome:
    """Feed every track through ``track_events`` (the node's ``Track``). Frames without a
    face, or failing the quality gate (``passed`` False), are not embedded: no event."""
    events = []
    for t in tracks:
        top = full if t.mated else own_out
        fr = [(pos, p, f) for pos, (p, f) in enumerate(t.frames)
              if np.isfinite(top.score[p, f]) and (passed is None or passed[p, f])]
        ev = track_events([(top.subject[p, f], top.score[p, f]) for _, p, f in fr], m)
        events.append([(pos, s, fu) for (pos, _, _), (s, fu) in zip(fr, ev, strict=True)])
    return TrackOutcome(events, [t.identity for t in tracks])


# ----------------------------------------------------------------------------- impostor FMR


@dataclass
class ImpostorScores:
    """Per-comparison (track x enrolled image of another person) fused scores at or above
    ``floor`` (sorted), with the total number of comparisons ``n``: FMR(t) exact for t >= floor."""

    n: int
    kept: np.ndarray
    floor: float

    def count_ge(self, t: float) -> int:
        if t < self.floor:
            raise ValueError(f"threshold {t} below the stored floor {self.floor}")
        return int(self.kept.size - np.searchsorted(self.kept, t, side="left"))

    def padded(self) -> np.ndarray:
        """All n scores with the unstored ones as ``floor - 1`` (for threshold searches)."""
        return np.concatenate([np.full(self.n - self.kept.size, self.floor - 1.0), self.kept])


def track_impostor_scores(
    h: Half, tracks: Sequence[PseudoTrack], ks: Sequence[int], ms: Sequence[int],
    groupings: Sequence[str], passed: np.ndarray | None = None, floor: float = 0.2,
    block: int = 96,
) -> dict[tuple[int, int], dict[str, ImpostorScores]]:
    """Fused score of every track against every image of another person in the half (each
    image standing in for that person's enrolment), for each (k frames, min_embeddings m):
    overall ("all") and within each group ("<grouping>=<value>": track and image both in it).

    With a one-person watchlist every frame's top-1 is that person, so the node's fused
    score is ``fused_matrix``; with N people the node only fuses frames whose top-1 is the
    subject, which can only lower it: FPIR(N) from this FMR is an upper bound in that respect.
    """
    q = np.flatnonzero(h.fd.ok[:, 0])
    qemb = h.fd.emb[q, 0]
    qperson = h.person[q]
    labels = {g: h.pool.groups[g] for g in groupings}
    keys = ["all"] + [f"{g}={v}" for g in groupings
                      for v in sorted({x for x in labels[g] if x is not None})]
    acc: dict[tuple[int, int], dict[str, list]] = {
        (k, m): {key: [0, []] for key in keys} for k in ks for m in ms}
    kmax = max(ks)
    for s in range(0, len(tracks), block):
        tb = tracks[s:s + block]
        B = len(tb)
        emb = np.zeros((B, kmax, h.fd.emb.shape[2]), np.float32)
        valid = np.zeros((B, kmax), bool)
        for b, t in enumerate(tb):
            for pos, (p, f) in enumerate(t.frames[:kmax]):
                ok = h.fd.ok[p, f] and (passed is None or passed[p, f])
                if ok:
                    emb[b, pos] = h.fd.emb[p, f]
                    valid[b, pos] = True
        sims = np.einsum("bkd,qd->bqk", emb, qemb)
        sims[np.broadcast_to(~valid[:, None, :], sims.shape)] = np.nan
        tperson = np.array([h.person[t.frames[0][0]] for t in tb], dtype=object)
        pair_ok = tperson[:, None] != qperson[None, :]
        masks = {"all": pair_ok}
        for g in groupings:
            tl = np.array([labels[g][t.frames[0][0]] for t in tb], dtype=object)
            ql = labels[g][q]
            for v in sorted({x for x in labels[g] if x is not None}):
                masks[f"{g}={v}"] = pair_ok & (tl[:, None] == v) & (ql[None, :] == v)
        for k in ks:
            flat = sims[:, :, :k].reshape(-1, k)
            for m in ms:
                fu = fused_matrix(flat, m).reshape(B, q.size)
                hi = fu >= floor  # NaN compares False
                for key, mk in masks.items():
                    a = acc[(k, m)][key]
                    a[0] += int(mk.sum())
                    a[1].append(fu[mk & hi])
    out: dict[tuple[int, int], dict[str, ImpostorScores]] = {}
    for km, d in acc.items():
        out[km] = {}
        for key, (n, parts) in d.items():
            kept = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.float32)
            if n:
                out[km][key] = ImpostorScores(n, kept, floor)
    return out


# ----------------------------------------------------------------------------- the experiment

GATE_OFF = GateSetting("off", enabled=False)
GATE_NODE = GateSetting("node default (size 32, yaw 45, pitch 40, sharpness 15)")
DEFAULT_GATES: tuple[GateSetting, ...] = (GATE_OFF, GATE_NODE)
TRACK_KINDS = ("augmented", "multi-photo")
DISPLAY_FMRS = (1e-4, 1e-5, 1e-6)


@dataclass
class FusionOptions:
    """Everything that defines one per-track / gating run (recorded in the results)."""

    identities: Path
    impostors: Path | None = None
    exclusions: str | None = "lfw,utkface"
    frames: int = DEFAULT_FRAMES
    min_embeddings: tuple[int, ...] = (1, 2, 3)
    fpir_targets: tuple[float, ...] = (1e-2, 1e-3)
    watchlist_size: int = 10_000
    target_fpir: float = 1 / 6000
    fixed_thresholds: tuple[float, ...] = (0.45,)
    gates: tuple[GateSetting, ...] = DEFAULT_GATES
    track_gates: tuple[str, ...] | None = None  # gate names also run on k > 1 (None: all)
    kinds: tuple[str, ...] = TRACK_KINDS
    limit_identities: int | None = None
    limit_impostors: int | None = None
    pad: float = DEFAULT_PAD
    cache_dir: Path | None = None
    use_cache: bool = True
    progress: bool = True
    salt: str | None = None
    floor: float = 0.1
    grid: np.ndarray = field(default_factory=lambda: np.round(np.arange(0.1, 1.0001, 0.0025), 4))


def _ci(k: int, n: int) -> list[float]:
    return list(M.binomial_ci(k, n)) if n else [0.0, 1.0]


def _point(outc_m: TrackOutcome, n_m: int, nm_scores: np.ndarray, imp: dict[str, ImpostorScores],
           t: float, k: int, N: int, target: float) -> dict[str, Any]:
    """Report-half figures at one threshold."""
    tp = float(tpir_from_intervals(outc_m.mated_intervals(k), n_m, [t])[0])
    hits = int(round(tp * n_m))
    fa = int(np.sum(nm_scores >= t))
    row: dict[str, Any] = {
        "threshold": float(t), "tpir": tp, "hits": hits, "n_mated": n_m,
        "tpir_ci": _ci(hits, n_m), "fpir": fa / max(nm_scores.size, 1), "false_alarms": fa,
        "n_nonmated": int(nm_scores.size), "fpir_ci": _ci(fa, int(nm_scores.size)),
    }
    a = imp.get("all")
    if a is not None and t >= a.floor:
        kk = a.count_ge(t)
        r = M.rate_with_ci("all", kk, a.n)
        row.update({
            "fmr": r.rate, "fmr_k": kk, "fmr_n": a.n, "fmr_hi": r.hi,
            "fpir_at_n": float(M.fpir_at_watchlist_size(r.rate, N)[0]),
            "fpir_at_n_upper": float(M.fpir_at_watchlist_size(r.hi, N)[0]),
            "max_vouched_watchlist": R.max_vouched_watchlist(r.hi, target),
        })
    return row


def _group_rows(h: Half, tracks_m: Sequence[PseudoTrack], outc_m: TrackOutcome,
                tracks_n: Sequence[PseudoTrack], nm_scores: np.ndarray,
                imp: dict[str, ImpostorScores], k: int, t: float) -> dict[str, Any]:
    """Per group at threshold t: TPIR of mated tracks, open-set FPIR of non-mated tracks and
    within-group FMR, each with the ratio to the pooled rate of that grouping."""
    out: dict[str, Any] = {}
    for g in h.pool.primary:
        lab = h.pool.groups[g]
        vals = sorted({x for x in lab if x is not None})
        entry: dict[str, Any] = {}
        ml = np.array([lab[t_.frames[0][0]] for t_ in tracks_m], dtype=object)
        tp = {}
        for v in vals:
            sel = [i for i in range(len(tracks_m)) if ml[i] == v]
            if sel:
                sub = TrackOutcome([outc_m.events[i] for i in sel],
                                   [outc_m.identities[i] for i in sel])
                r = float(tpir_from_intervals(sub.mated_intervals(k), len(sel), [t])[0])
                tp[v] = {"tpir": r, "n": len(sel), "ci": _ci(int(round(r * len(sel))), len(sel))}
        if tp:
            entry["tpir"] = tp
        nl = np.array([lab[t_.frames[0][0]] for t_ in tracks_n], dtype=object)
        counts = {v: (int(np.sum(nm_scores[nl == v] >= t)), int(np.sum(nl == v)))
                  for v in vals if np.sum(nl == v)}
        if counts:
            c = M.compare_groups(counts)
            entry["fpir"] = {"groups": {r.group: [r.k, r.n, r.rate, r.ratio_to_overall]
                                        for r in c.groups},
                             "worst": c.worst.group, "worst_over_overall": c.worst_over_overall}
        fc = {v: (imp[f"{g}={v}"].count_ge(t), imp[f"{g}={v}"].n) for v in vals
              if f"{g}={v}" in imp and t >= imp[f"{g}={v}"].floor}
        if fc:
            c = M.compare_groups(fc)
            entry["fmr"] = {"groups": {r.group: [r.k, r.n, r.rate, r.ratio_to_overall]
                                       for r in c.groups},
                            "worst": c.worst.group, "worst_over_overall": c.worst_over_overall}
        out[g] = entry
    return out


def run_fusion(opts: FusionOptions, engine: FaceEngine | None = None) -> dict[str, Any]:
    """Per-track TPIR/FPIR (both pseudo-track kinds, k = 1..frames, each min_embeddings)
    and the quality gates' effect, calibrated on the calibration half and reported on the
    report half. Returns a JSON-able dict (counts, rates, thresholds; no face data)."""
    salt = opts.salt or SPLIT_SALT
    id_set = R.limit_subset(load_face_set(opts.identities), opts.limit_identities, salt, True)
    sets_fs = [id_set]
    if opts.impostors is not None:
        imp_set = R.limit_subset(load_face_set(opts.impostors), opts.limit_impostors, salt, False)
        if imp_set.identity_labelled:
            imp_set = FaceSet(imp_set.root, imp_set.name, "impostor", imp_set.items)
        sets_fs.append(imp_set)
    ex = load_exclusions(opts.exclusions)
    if engine is None:
        engine = FaceEngine.from_config()
    sets = [(fs, extract_frames([it.path for it in fs.items], engine, frames=opts.frames,
                                pad=opts.pad, cache_dir=opts.cache_dir, use_cache=opts.use_cache,
                                progress=opts.progress, desc=f"frames {fs.name}"))
            for fs in sets_fs]
    sets, fusion = fuse_frames(sets, engine, ex, salt,
                               f"benchmarks/fusion.py {opts.identities.name}: calibration half")
    halves = build_halves(sets, ex, salt)
    N, target = opts.watchlist_size, opts.target_fpir
    req = M.fmr_for_fpir(target, N)
    ks = list(range(1, opts.frames + 1))
    ms = list(opts.min_embeddings)
    track_gates = set(opts.track_gates) if opts.track_gates is not None else {
        g.name for g in opts.gates}

    reasons = {half: {g.name: gate_reasons(h.fd, g) for g in opts.gates}
               for half, h in halves.items()}
    top = {half: (frame_top1(h, False), frame_top1(h, True)) for half, h in halves.items()}

    result: dict[str, Any] = {
        "options": {
            "identities": str(opts.identities), "impostors": str(opts.impostors or ""),
            "exclusions": opts.exclusions, "frames": opts.frames, "min_embeddings": ms,
            "fpir_targets": list(opts.fpir_targets), "watchlist_size": N,
            "target_fpir": target, "required_fmr": req, "split_salt": salt, "pad": opts.pad,
            "limit_identities": opts.limit_identities, "limit_impostors": opts.limit_impostors,
            "fixed_thresholds": list(opts.fixed_thresholds), "augmentation_salt": AUG_SALT,
            "gates": [{**g.__dict__} for g in opts.gates],
        },
        "engine": engine_fingerprint(engine),
        **({} if fusion is None else {"recogniser_fusion": [
            {"name": st.name, "sha256": st.sha256, "dim": st.dim, "weight": st.weight,
             "impostor_mean": st.impostor_mean, "impostor_std": st.impostor_std,
             "impostor_pairs": st.impostor_pairs, "block_scale": float(a), "source": st.source}
            for st, a in zip(fusion, block_scales(fusion), strict=True)]}),
        "halves": {}, "gates": {}, "tracks": {}, "curves": {},
    }
    # ---- data and gate summaries
    for half, h in halves.items():
        result["halves"][half] = {
            "images": int(h.fd.ok.shape[0]), "gallery": int(h.gallery.size),
            "mated_images": int(h.mated.size), "nonmated_images": int(h.nonmated.size),
            "frames_with_face": float(h.fd.ok.mean()),
            "frame0_with_face": float(h.fd.ok[:, 0].mean()),
        }
    for g in opts.gates:
        rows = {}
        for half, h in halves.items():
            r = reasons[half][g.name]
            faces0 = r[:, 0] != NO_FACE
            per: dict[str, Any] = {"photos": _reason_counts(r[:, 0][faces0]),
                                   "augmented_frames": _reason_counts(r[:, 1:][h.fd.ok[:, 1:]])}
            for grp in h.pool.primary:
                lab = h.pool.groups[grp]
                per[grp] = {v: _reason_counts(r[:, 0][faces0 & (lab == v)])
                            for v in sorted({x for x in lab if x is not None})}
            rows[half] = per
        result["gates"][g.name] = rows

    # ---- tracks
    for kind in opts.kinds:
        per_kind: dict[str, Any] = {}
        mk_tracks = {}
        for half, h in halves.items():
            mk_tracks[half] = (augmented_tracks(h, opts.frames) if kind == "augmented"
                               else multi_photo_tracks(h, opts.frames))
        for g in opts.gates:
            if kind == "multi-photo" and g.name not in track_gates:
                continue
            per_gate: dict[str, Any] = {}
            for m in ms:
                outc, imps = {}, {}
                for half, h in halves.items():
                    passed = reasons[half][g.name] == "ok"
                    t_m, t_n = mk_tracks[half]
                    full, own = top[half]
                    outc[half] = (decide(t_m, full, own, m, passed), decide(t_n, full, own, m, passed))
                    # (a): the non-mated tracks are the mated ones searched without their
                    # own person, i.e. the same frames: count their comparisons once
                    fmr_tracks = (list(t_m) if kind == "multi-photo" else
                                  [PseudoTrack(tuple((p, f) for f in range(opts.frames)),
                                               str(h.pool.identity[p]), False)
                                   for p in range(h.fd.ok.shape[0])])
                    kk = ks if (g.name in track_gates or kind == "multi-photo") else [1]
                    imps[half] = track_impostor_scores(h, fmr_tracks, kk, [m], h.pool.primary,
                                                       passed, opts.floor)
                per_m: dict[str, Any] = {}
                for k in ks:
                    if (k, m) not in imps[CALIBRATION]:
                        continue
                    if k < m:  # fewer frames than min_embeddings: the track never alerts
                        per_m[str(k)] = None
                        continue
                    per_m[str(k)] = row = _k_row(halves, mk_tracks, outc, imps, k, m, opts, req)
                    aug = result["tracks"].get("augmented", {}).get(g.name, {}).get(str(m), {})
                    if kind != "augmented" and aug.get(str(k)):
                        # the mated side of these tracks at thresholds set on (b)'s
                        # comparisons: a bystander's frames are correlated like (b)'s
                        row["at_augmented_thresholds"] = _cross(aug[str(k)], outc[REPORT][0],
                                                               len(mk_tracks[REPORT][0]), k)
                    if k in (1, opts.frames) and m in (1, 2) and g.name in track_gates:
                        result["curves"][f"{kind}|{g.name}|m{m}|k{k}"] = _curves(
                            outc[REPORT], len(mk_tracks[REPORT][0]), imps[REPORT][(k, m)], k,
                            opts.grid, N)
                per_gate[str(m)] = per_m
            per_kind[g.name] = per_gate
        result["tracks"][kind] = per_kind
        result["halves"][CALIBRATION][f"{kind}_tracks"] = [len(x) for x in mk_tracks[CALIBRATION]]
        result["halves"][REPORT][f"{kind}_tracks"] = [len(x) for x in mk_tracks[REPORT]]
    return result


def _reason_counts(r: np.ndarray) -> dict[str, int]:
    out: dict[str, int] = {}
    if r.size:
        vals, cnt = np.unique(np.asarray(r, dtype=str), return_counts=True)
        out = {str(v): int(c) for v, c in zip(vals, cnt, strict=True)}
    out["total"] = int(r.size)
    return out


def _k_row(halves: dict[str, Half], tracks: dict[str, tuple[list, list]],
           outc: dict[str, tuple[TrackOutcome, TrackOutcome]],
           imps: dict[str, dict[tuple[int, int], dict[str, ImpostorScores]]],
           k: int, m: int, opts: FusionOptions, req: float) -> dict[str, Any]:
    """Calibrate on the calibration half, measure on the report half, for k frames, m."""
    N, target = opts.watchlist_size, opts.target_fpir
    c_m, c_n = outc[CALIBRATION]
    r_m, r_n = outc[REPORT]
    c_scores, r_scores = c_n.alarm_scores(k), r_n.alarm_scores(k)
    n_rm = len(tracks[REPORT][0])
    rimp, cimp = imps[REPORT][(k, m)], imps[CALIBRATION][(k, m)]
    row: dict[str, Any] = {"direct": [], "fixed": []}
    for f in opts.fpir_targets:
        t = M.threshold_for_fpir(c_scores, f)
        p = _point(r_m, n_rm, r_scores, rimp, t, k, N, target)
        p["target_fpir"] = f
        p["measurable_on_calibration"] = f * c_scores.size >= 1
        row["direct"].append(p)
    # worst-group calibration of the per-comparison FMR, as edge eval does for single images
    groups = {key: s.padded() for key, s in cimp.items()
              if key == "all" or any(key.startswith(f"{g}=") for g in halves[CALIBRATION].pool.primary)}
    cal = M.calibrate_worst_group(groups, target, N)
    p = _point(r_m, n_rm, r_scores, rimp, cal.threshold, k, N, target)
    p.update({"binding": cal.binding_group, "required_fmr": req,
              "calibration_pairs": int(cimp["all"].n),
              "resolvable": bool(req * cimp["all"].n >= 1)})
    row["calibrated_10k"] = p
    row["calibration_tpir"] = float(tpir_from_intervals(
        c_m.mated_intervals(k), len(tracks[CALIBRATION][0]), [cal.threshold])[0])
    for t in opts.fixed_thresholds:
        row["fixed"].append(_point(r_m, n_rm, r_scores, rimp, t, k, N, target))
    # equal-FMR operating points: thresholds where the calibration half's per-comparison
    # FMR is 1e-4 / 1e-5 / 1e-6 (FPIR at N = 10,000 ~ 63% / 10% / 1%), where measurable
    disp = {}
    for f in DISPLAY_FMRS:
        if f * cimp["all"].n >= 1:
            t = M.threshold_for_rate(cimp["all"].padded(), f)
            disp[f"{f:g}"] = {
                **_point(r_m, n_rm, r_scores, rimp, t, k, N, target),
                "groups": _group_rows(halves[REPORT], tracks[REPORT][0], r_m, tracks[REPORT][1],
                                      r_scores, rimp, k, t)}
    row["display"] = disp
    row["groups_at_calibrated"] = _group_rows(halves[REPORT], tracks[REPORT][0], r_m,
                                              tracks[REPORT][1], r_scores, rimp, k, cal.threshold)
    # tail model (indicative only, as edge eval): a generalised Pareto fit to the top 1% of
    # the calibration half's comparisons, solved for the required FMR
    row["tail_model"] = None
    if req * cimp["all"].n >= 1e-3:
        try:
            fit = M.fit_tail(cimp["all"].padded())
            if fit.u >= cimp["all"].floor:
                tt = fit.threshold_for_fmr(req)
                row["tail_model"] = {**_point(r_m, n_rm, r_scores, rimp, tt, k, N, target),
                                     "shape": fit.shape, "u": fit.u}
        except (ValueError, RuntimeError):
            pass
    # the highest impostor comparisons of the calibration half (what sets the threshold)
    row["calibration_top_impostor"] = [float(x) for x in cimp["all"].kept[-3:][::-1]]
    return row


def _cross(aug_row: dict[str, Any], outc_m: TrackOutcome, n_m: int, k: int) -> dict[str, Any]:
    """TPIR of these mated tracks at the thresholds another track kind was calibrated to."""
    ths = {"calibrated_10k": aug_row["calibrated_10k"]["threshold"]}
    for f, p in aug_row.get("display", {}).items():
        ths[f"fmr {f}"] = p["threshold"]
    if aug_row.get("tail_model"):
        ths["tail_model"] = aug_row["tail_model"]["threshold"]
    out = {}
    for name, t in ths.items():
        tp = float(tpir_from_intervals(outc_m.mated_intervals(k), n_m, [t])[0])
        hits = int(round(tp * n_m))
        out[name] = {"threshold": float(t), "tpir": tp, "tpir_ci": _ci(hits, n_m)}
    return out


def _curves(outc: tuple[TrackOutcome, TrackOutcome], n_m: int, imp: dict[str, ImpostorScores],
            k: int, grid: np.ndarray, N: int) -> dict[str, list[float]]:
    om, on = outc
    tp = tpir_from_intervals(om.mated_intervals(k), n_m, grid)
    nm = on.alarm_scores(k)
    a = imp["all"]
    fmr = np.array([a.count_ge(t) / a.n for t in grid])
    return {"threshold": grid.tolist(), "tpir": tp.tolist(),
            "fpir": M.fpir(nm, grid).tolist(), "fmr": fmr.tolist(),
            "fpir_at_n": M.fpir_at_watchlist_size(fmr, N).tolist()}
