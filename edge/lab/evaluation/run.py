"""The open-set evaluation experiment behind ``edge eval`` and ``benchmarks/accuracy.py``.

Method (documented for readers in docs/ACCURACY.md):

1. Every identity (and every impostor-only image) falls into the *calibration* or the
   *report* half by a salted sha256 of its name (``datasets.split_of``). The two halves are
   separate experiments with their own watchlists; nothing is compared across them.
2. In each half, every identity with >= 2 images enrols its first image that yields a face
   (file-name order). Its other images are *mated* searches. All images of identities that
   are not enrolled, plus the impostor-only set, are *non-mated* searches.
3. Every comparison of two different people in the half is an *impostor trial* (for FMR).
   Per group, only pairs whose two images both belong to the group are used ("within-group"
   FMR: the case where the watchlist holds people of the searcher's own demographic).
4. The threshold is calibrated on the calibration half only: the lowest threshold at which
   every group's FPIR extrapolated to the watchlist size stays within the target. All
   reported figures come from the report half at that threshold.
5. With an exclusion list (known label noise), everything is computed twice: raw and with
   the listed alias/twin comparisons removed. The cleaned figures are primary.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import load_config
from edge.errors import EdgeError
from edge.face.photos import FaceEngine
from edge.lab.evaluation import metrics as M
from edge.lab.evaluation.datasets import (
    CALIBRATION,
    DEFAULT_PAD,
    REPORT,
    SPLIT_SALT,
    DatasetError,
    Exclusions,
    FaceSet,
    embed_images,
    engine_fingerprint,
    load_exclusions,
    load_face_set,
    split_of,
)
from edge.watchlist import cohort as C
from edge.watchlist.fusion import ModelStats, block_scales
from edge.watchlist.lifecycle import display_name, member_identities

log = logging.getLogger(__name__)

GOAL_TPIR = 0.92
GOAL_FPIR = 1 / 6000
GOAL_WATCHLIST = 10_000
GOAL_GROUP_RATIO = 2.0
DEFAULT_FPIR_TARGETS = (1e-1, 1e-2, 1e-3)
# Display thresholds for the demographic tables: where the calibration half's overall FMR is
# this, so that groups actually have false matches to compare (at the calibrated threshold
# there are usually none).
DISPLAY_FMRS = (1e-3, 1e-4, 1e-5)
EXTRAPOLATION_SIZES = (100, 1_000, 10_000, 100_000)
OVERALL = "all"
# The tail model is only consulted where the target FMR is at most 1,000x below 1/n.
TAIL_MAX_EXTRAPOLATION = 1e-3


@dataclass
class EvalOptions:
    """Everything that defines one evaluation run (recorded in the results)."""

    identities: Path
    impostors: Path | None = None
    watchlist_size: int = GOAL_WATCHLIST
    target_fpir: float = GOAL_FPIR
    fpir_targets: tuple[float, ...] = DEFAULT_FPIR_TARGETS
    exclusions: str | None = None
    salt: str = SPLIT_SALT
    limit_identities: int | None = None
    limit_impostors: int | None = None
    pad: float = DEFAULT_PAD
    cache_dir: Path | None = None
    use_cache: bool = True
    progress: bool = True
    config: Path | None = None
    # the cohort-cluster score normalisation, measured beside the plain scores (the
    # calibration half is the cohort); None: as the config's [match] says
    score_normalisation: str | None = None
    cohort_clusters: int | None = None
    cohort_fmr: float | None = None


# ----------------------------------------------------------------------------- data


@dataclass
class Pool:
    """All images of one split half, identity set first, then the impostor set."""

    emb: np.ndarray
    ok: np.ndarray
    identity: np.ndarray  # str
    from_id_set: np.ndarray  # bool
    names: list[str]  # file names (for the excluded-pairs listing)
    groups: dict[str, np.ndarray]  # "<set> <grouping>" -> label per image (None = unlabelled)
    primary: list[str]  # group keys used for calibration
    # the gallery side of a score when it differs from the probe side (the cohort-cluster
    # normalisation: probe rows [e, d, 1], gallery rows [e, 1, d]); None: ``emb`` itself
    right: np.ndarray | None = None

    @property
    def rhs(self) -> np.ndarray:
        return self.emb if self.right is None else self.right


def limit_subset(fs: FaceSet, n: int | None, salt: str, by_identity: bool) -> FaceSet:
    """Deterministic subset: the ``n`` identities (or images) with the lowest salted hash."""
    if n is None:
        return fs

    def h(s: str) -> str:
        return hashlib.sha256(f"{salt}:limit:{s}".encode()).hexdigest()

    if by_identity:
        keep_ids = set(sorted({it.identity for it in fs.items}, key=h)[:n])
        keep = [i for i, it in enumerate(fs.items) if it.identity in keep_ids]
    else:
        keep = sorted(range(len(fs.items)), key=lambda i: h(fs.items[i].identity))[:n]
        keep.sort()
    return fs.subset(keep)


def _set_label(fs: FaceSet) -> str:
    return fs.name


def build_pools(
    sets: list[tuple[FaceSet, np.ndarray, np.ndarray]], salt: str
) -> dict[str, Pool]:
    """The calibration and report halves of ``(face set, embeddings, ok)`` triples."""
    pools: dict[str, Pool] = {}
    for half in (CALIBRATION, REPORT):
        embs: list[np.ndarray] = []
        oks: list[np.ndarray] = []
        ids: list[str] = []
        fid: list[bool] = []
        names: list[str] = []
        group_cols: dict[str, list[Any]] = {}
        primary: list[str] = []
        total = 0
        for fs, emb, ok in sets:
            sel = [i for i, it in enumerate(fs.items) if split_of(it.identity, salt) == half]
            # within an identity, file-name order decides which image is enrolled
            sel.sort(key=lambda i: (fs.items[i].identity, fs.items[i].path.name))
            embs.append(emb[sel])
            oks.append(ok[sel])
            ids.extend(fs.items[i].identity for i in sel)
            fid.extend([fs.identity_labelled] * len(sel))
            names.extend(fs.items[i].path.name for i in sel)
            labels = fs.group_labels()
            for g, vals in labels.items():
                key = f"{_set_label(fs)} {g}"
                col = group_cols.setdefault(key, [None] * total)
                col.extend(vals[i] for i in sel)
            if fs.primary_grouping:
                primary.append(f"{_set_label(fs)} {fs.primary_grouping}")
            total += len(sel)
            for col in group_cols.values():
                col.extend([None] * (total - len(col)))
        pools[half] = Pool(
            emb=np.concatenate(embs).astype(np.float32), ok=np.concatenate(oks),
            identity=np.array(ids, dtype=object), from_id_set=np.array(fid, bool), names=names,
            groups={k: np.array(v, dtype=object) for k, v in group_cols.items()},
            primary=primary,
        )
    return pools


# ----------------------------------------------------------------------------- open set


@dataclass
class OpenSet:
    """One half's open-set experiment: who is enrolled, and every search's top-1."""

    gallery: np.ndarray  # pool indices enrolled
    mated: np.ndarray  # pool indices
    mated_scores: np.ndarray
    mated_correct: np.ndarray
    nonmated: np.ndarray
    nonmated_scores: np.ndarray
    failures_mated: int
    failures_nonmated: int
    subjects_without_face: int
    held_out: int = 0  # people not enrolled so that non-mated searches exist (see _held_out)


def open_set(pool: Pool, person: np.ndarray) -> OpenSet:
    """Enrol one image per subject with >= 2 images; search with the rest (see module doc)."""
    by_id: dict[str, list[int]] = {}
    for i, ident in enumerate(pool.identity):
        if pool.from_id_set[i]:
            by_id.setdefault(ident, []).append(i)
    gallery: list[int] = []
    mated: list[int] = []
    nonmated: list[int] = []
    no_face = 0
    held_out = _held_out(by_id, pool)
    for ident, idx in by_id.items():
        if ident in held_out:  # not enrolled: every image is a non-mated search
            nonmated.extend(idx)
            continue
        if len(idx) >= 2:
            good = [i for i in idx if pool.ok[i]]
            if good:
                gallery.append(good[0])
                mated.extend(i for i in idx if i != good[0])
                continue
            no_face += 1
        nonmated.extend(idx)
    nonmated.extend(np.flatnonzero(~pool.from_id_set).tolist())
    g = np.array(gallery, int)
    if g.size == 0 or not mated or not nonmated:
        people = len(by_id)
        multi = sum(1 for idx in by_id.values() if len(idx) >= 2)
        raise DatasetError(
            f"a split half has {people} people ({multi} with >= 2 images): too few for an "
            "open-set test; it needs >= 2 people with >= 2 images in each half (about 8 in all "
            "with one folder per person), or people with 1 image, or an impostor set"
        )

    def search(probes: list[int]) -> tuple[np.ndarray, np.ndarray]:
        p = np.array(probes, int)
        sims = pool.emb[p] @ pool.rhs[g].T
        # an excluded comparison (alias/twin of a gallery subject) is never a candidate
        same_person_other_name = (person[p][:, None] == person[g][None, :]) & (
            pool.identity[p][:, None] != pool.identity[g][None, :]
        )
        sims[same_person_other_name] = -np.inf
        top = np.argmax(sims, axis=1)
        score = sims[np.arange(p.size), top].astype(np.float64)
        score[~pool.ok[p]] = -np.inf  # failure to acquire: never alarms, never found
        return score, top

    ms, mt = search(mated)
    correct = (pool.identity[g][mt] == pool.identity[np.array(mated)]) & np.isfinite(ms)
    ns, _ = search(nonmated)
    return OpenSet(
        gallery=g, mated=np.array(mated, int), mated_scores=ms, mated_correct=correct,
        nonmated=np.array(nonmated, int), nonmated_scores=ns,
        failures_mated=int((~pool.ok[np.array(mated)]).sum()),
        failures_nonmated=int((~pool.ok[np.array(nonmated)]).sum()),
        subjects_without_face=no_face, held_out=len(held_out),
    )


def _held_out(by_id: dict[str, list[int]], pool: Pool) -> set[str]:
    """People left out of the watchlist so that non-mated searches exist.

    1:N identification's FPIR needs searches by people who are NOT enrolled. With singletons
    (people with one image) or an impostor set there are such searches and nobody is held
    out. When every person has >= 2 images (the usual one-folder-per-person layout), half of
    them (the lower salted-hash half, so the choice is stable and blind to the scores) are
    not enrolled and all their images search as non-mated: never the same person's images on
    both sides of a non-mated search.
    """
    if any(len(idx) < 2 for idx in by_id.values()) or bool((~pool.from_id_set).any()):
        return set()
    usable = [ident for ident, idx in by_id.items() if any(pool.ok[i] for i in idx)]
    if len(usable) < 2:
        return set()

    def h(s: str) -> str:
        return hashlib.sha256(f"{SPLIT_SALT}:holdout:{s}".encode()).hexdigest()

    return set(sorted(usable, key=h)[: len(usable) // 2])


# ----------------------------------------------------------------------------- impostor pools


def impostor_scores(emb: np.ndarray, person: np.ndarray, idx: np.ndarray,
                    block: int = 1024, right: np.ndarray | None = None) -> np.ndarray:
    """Sorted scores of every pair (i < j) in ``idx`` whose person keys differ
    (``emb`` rows against ``right`` rows when the two sides differ).

    Row blocks keep memory at ``block x len(idx)`` however large the set.
    """
    idx = np.asarray(idx, int)
    e = emb[idx]
    rhs = e if right is None else right[idx]
    pk = person[idx]
    out = []
    for s in range(0, idx.size, block):
        sims = e[s:s + block] @ rhs.T
        rows = np.arange(s, min(s + block, idx.size))
        keep = (np.arange(idx.size)[None, :] > rows[:, None]) & (pk[rows][:, None] != pk[None, :])
        out.append(sims[keep])
    if not out:
        return np.zeros(0, np.float32)
    a = np.concatenate(out)
    a.sort()
    return a


def top_impostor_pairs(emb: np.ndarray, person: np.ndarray, idx: np.ndarray, k: int = 10,
                       block: int = 1024, right: np.ndarray | None = None
                       ) -> list[tuple[float, int, int]]:
    """The ``k`` highest-scoring impostor pairs in ``idx`` as (score, i, j) pool indices.

    Published so a reader can see what sets a high threshold (often label noise)."""
    idx = np.asarray(idx, int)
    e = emb[idx]
    rhs = e if right is None else right[idx]
    pk = person[idx]
    best: list[tuple[float, int, int]] = []
    for s in range(0, idx.size, block):
        sims = e[s:s + block] @ rhs.T
        rows = np.arange(s, min(s + block, idx.size))
        keep = (np.arange(idx.size)[None, :] > rows[:, None]) & (pk[rows][:, None] != pk[None, :])
        sims = np.where(keep, sims, -np.inf)
        flat = np.argpartition(sims.ravel(), -min(k, sims.size))[-k:]
        for f in flat:
            r, c = divmod(int(f), idx.size)
            if np.isfinite(sims.ravel()[f]):
                best.append((float(sims.ravel()[f]), int(idx[s + r]), int(idx[c])))
        best = sorted(best, reverse=True)[:k]
    return best


def _ge(sorted_scores: np.ndarray, t: float) -> int:
    return int(sorted_scores.size - np.searchsorted(sorted_scores, t, side="left"))


@dataclass
class _Pools:
    overall: np.ndarray
    by_group: dict[str, dict[str, np.ndarray]]  # grouping -> value -> sorted scores


def _impostor_pools(pool: Pool, person: np.ndarray) -> _Pools:
    ok = np.flatnonzero(pool.ok)
    overall = impostor_scores(pool.emb, person, ok, right=pool.right)
    by_group: dict[str, dict[str, np.ndarray]] = {}
    for g, labels in pool.groups.items():
        vals = sorted({v for v in labels[ok] if v is not None})
        by_group[g] = {}
        for v in vals:
            idx = ok[labels[ok] == v]
            sc = impostor_scores(pool.emb, person, idx, right=pool.right)
            if sc.size:
                by_group[g][v] = sc
    return _Pools(overall, by_group)


# ----------------------------------------------------------------------------- the run


# ----------------------------------------------------------------------------- recogniser fusion


def recogniser_blocks(engine: FaceEngine) -> list[tuple[str, int, int]] | None:
    """(name, first column, end column) of each model of a fused engine; None for one model."""
    blocks = getattr(engine.embedder, "blocks", None)
    if not callable(blocks):
        return None
    return [(display_name(name), lo, hi) for name, lo, hi in blocks()]


def _block_sets(sets: list[tuple[FaceSet, np.ndarray, np.ndarray]], scale: Sequence[float],
                blocks: list[tuple[str, int, int]]) -> list[tuple[FaceSet, np.ndarray, np.ndarray]]:
    """The same images with embeddings made of the given blocks, block m scaled by
    sqrt(scale[m]) on both sides: an inner product is then sum_m scale[m] * cosine_m."""
    out = []
    for fs, emb, ok in sets:
        parts = [emb[:, lo:hi] * np.float32(math.sqrt(a)) for a, (_, lo, hi)
                 in zip(scale, blocks, strict=True) if a > 0]
        out.append((fs, np.ascontiguousarray(np.concatenate(parts, axis=1)), ok))
    return out


def fusion_statistics(pools: dict[str, Pool], ex: Exclusions | None, blocks: list[tuple[str, int, int]],
                      engine: FaceEngine, source: str) -> list[ModelStats]:
    """Each model's impostor mean and spread on the calibration half (never the report half)."""
    pool = pools[CALIBRATION]
    person = person_keys(pool, ex)
    ok = np.flatnonzero(pool.ok)
    shas = engine_model_shas(engine)
    out = []
    for (name, lo, hi), sha, w in zip(blocks, shas, engine_weights(engine), strict=True):
        sc = impostor_scores(np.ascontiguousarray(pool.emb[:, lo:hi]), person, ok)
        out.append(ModelStats(name, sha, hi - lo, w, float(sc.mean()) if sc.size else 0.0,
                              float(max(sc.std(), 1e-6)) if sc.size > 1 else 1.0, int(sc.size),
                              source))
    return out


def engine_model_shas(engine: FaceEngine) -> list[str]:
    """sha256 of each configured recogniser, the primary first."""
    return [sha for _, sha in member_identities(engine.cfg)]


def engine_weights(engine: FaceEngine) -> list[float]:
    return [m.weight for m in engine.cfg.recognizer.members()]


def _side_by_side_row(v: dict[str, Any], opts: EvalOptions) -> dict[str, Any]:
    """One recogniser's headline figures (report half) for the comparison table."""
    g = _goal(v, opts)
    direct = {f"{p['target_fpir']:g}": p for p in v["report"]["tpir_at_fpir_direct"]}
    return {
        "threshold": g["threshold"], "binding_group": v["calibration"]["binding_group"],
        "tpir_at_calibrated": g["tpir_per_image"], "fpir_at_n_upper": g["fpir_at_n_upper"],
        "max_vouched_watchlist": g["max_vouched_watchlist"],
        "tpir_at_fpir_direct": direct,
        "group_fpir_ratios_at_calibrated": g["open_set_group_fpir_ratios_at_calibrated"],
        "within_group_fmr_ratios": g["within_group_fmr_ratios_at_display_thresholds"],
        "group_fmr_intervals": v["report"]["group_fmr"],
    }


@dataclass
class EvalResult:
    """Summary (JSON-able) plus the curves the report plots."""

    summary: dict[str, Any]
    curves: dict[str, Any] = field(default_factory=dict)


def person_keys(pool: Pool, ex: Exclusions | None) -> np.ndarray:
    """Per image, who it shows: its identity, with known label noise merged (``ex``)."""
    if ex is None:
        return pool.identity.copy()
    return np.array(ex.person_keys(pool.identity), dtype=object)


def _excluded_pairs(pool: Pool, ex: Exclusions, half: str) -> list[dict[str, Any]]:
    """Every comparison the exclusion list removes in this half, with its score."""
    out = []
    person = person_keys(pool, ex)
    listed = {n for a, b, _ in ex.entries for n in (a, b)}
    reason = {}
    for a, b, r in ex.entries:
        reason[(a, b)] = reason[(b, a)] = r
    idx = [i for i in range(len(pool.identity)) if pool.identity[i] in listed and pool.ok[i]]
    for x in range(len(idx)):
        for y in range(x + 1, len(idx)):
            i, j = idx[x], idx[y]
            if pool.identity[i] != pool.identity[j] and person[i] == person[j]:
                out.append({
                    "half": half, "image_a": pool.names[i], "image_b": pool.names[j],
                    "reason": reason.get((pool.identity[i], pool.identity[j]), "alias group"),
                    "score": round(float(pool.emb[i] @ pool.rhs[j]), 4),
                })
    return sorted(out, key=lambda d: -d["score"])


def _rate(group: str, k: int, n: int) -> dict[str, Any]:
    r = M.rate_with_ci(group, k, n)
    return {**asdict(r), "text": r.text}


def _comparison(cmp_: M.GroupComparison) -> dict[str, Any]:
    def row(r: M.GroupRate) -> dict[str, Any]:
        return {**asdict(r), "text": r.text}

    return {
        "groups": [row(r) for r in cmp_.groups], "overall": row(cmp_.overall),
        "worst": cmp_.worst.group, "worst_over_overall": cmp_.worst_over_overall,
    }


def max_vouched_watchlist(fmr_hi: float, target_fpir: float) -> int:
    """Largest N for which FPIR(N) from the FMR upper bound still meets the target."""
    if fmr_hi <= 0:
        return 10**12
    return int(math.floor(math.log1p(-target_fpir) / math.log1p(-fmr_hi)))


def _threshold_for_tpir(os_: OpenSet, target: float) -> float | None:
    """Highest threshold at which TPIR >= target (None if never reached)."""
    hits = np.sort(os_.mated_scores[os_.mated_correct])[::-1]
    need = int(math.ceil(target * os_.mated_scores.size - 1e-9))
    if need < 1 or need > hits.size:
        return None
    return float(hits[need - 1])


def _downsample(x: np.ndarray, y: np.ndarray, t: np.ndarray, n: int = 400) -> dict[str, list]:
    if x.size > n:
        keep = np.unique(np.linspace(0, x.size - 1, n).astype(int))
        x, y, t = x[keep], y[keep], t[keep]
    return {"x": [float(v) for v in x], "y": [float(v) for v in y],
            "threshold": [float(v) for v in t]}


def _variant(
    pools: dict[str, Pool], ex: Exclusions | None, opts: EvalOptions
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Calibrate on the calibration half, measure on the report half, for one label variant."""
    N, target = opts.watchlist_size, opts.target_fpir
    req_fmr = M.fmr_for_fpir(target, N)
    out: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    res: dict[str, tuple[OpenSet, _Pools]] = {}
    for half, pool in pools.items():
        person = person_keys(pool, ex)
        res[half] = (open_set(pool, person), _impostor_pools(pool, person))

    # ---- calibration half: worst-group threshold
    cos, cimp = res[CALIBRATION]
    cal_groups: dict[str, np.ndarray] = {OVERALL: cimp.overall}
    for g in pools[CALIBRATION].primary:
        for v, sc in cimp.by_group.get(g, {}).items():
            cal_groups[f"{g}={v}"] = sc
    cal = M.calibrate_worst_group(cal_groups, target, N, cos.mated_scores, cos.mated_correct)
    t = cal.threshold
    tail: dict[str, Any] = {}
    for g, sc in cal_groups.items():
        if req_fmr * sc.size < TAIL_MAX_EXTRAPOLATION:
            tail[g] = {"threshold": None,
                       "error": f"too few pairs ({sc.size:,}) to extrapolate to FMR {req_fmr:.2g}"}
            continue
        try:
            fit = M.fit_tail(sc)
            tail[g] = {"threshold": fit.threshold_for_fmr(req_fmr), "shape": fit.shape,
                       "u": fit.u, "q": fit.q, "n_tail": fit.n_tail}
        except (ValueError, RuntimeError) as exc:
            tail[g] = {"threshold": None, "error": str(exc)}
    tail_ts = [v["threshold"] for v in tail.values() if v.get("threshold") is not None]
    tail_t = max(tail_ts) if tail_ts else None
    display = {f"{f:g}": M.threshold_for_rate(cimp.overall, f) for f in DISPLAY_FMRS
               if f * cimp.overall.size >= 1}
    cpool = pools[CALIBRATION]
    top = top_impostor_pairs(cpool.emb, person_keys(cpool, ex), np.flatnonzero(cpool.ok),
                             right=cpool.right)
    out["calibration_top_impostors"] = [
        {"score": round(sc, 4), "image_a": cpool.names[i], "image_b": cpool.names[j]}
        for sc, i, j in top]
    out["calibration"] = {
        **{k: v for k, v in asdict(cal).items() if k != "groups"},
        "groups": [asdict(g) for g in cal.groups],
        "mated_searches": int(cos.mated_scores.size),
        "nonmated_searches": int(cos.nonmated_scores.size),
        "gallery_size": int(cos.gallery.size),
        "tail_model": {"threshold": tail_t, "per_group": tail},
        "display_thresholds": display,
        "tpir_at_fpir_direct": [asdict(p) for p in M.tpir_at_fpir(
            cos.mated_scores, cos.mated_correct, cos.nonmated_scores, opts.fpir_targets)],
    }

    # ---- report half: everything measured at thresholds fixed above
    ros, rimp = res[REPORT]
    rpool = pools[REPORT]
    op = M.operating_point(ros.mated_scores, ros.mated_correct, ros.nonmated_scores, t)
    k_over = _ge(rimp.overall, t)
    fmr_over = M.rate_with_ci(OVERALL, k_over, rimp.overall.size)
    rep: dict[str, Any] = {
        "gallery_size": int(ros.gallery.size),
        "mated_searches": int(ros.mated_scores.size),
        "nonmated_searches": int(ros.nonmated_scores.size),
        # people not enrolled so that non-mated searches exist (every person had >= 2 images)
        "held_out_people": ros.held_out,
        "failures_to_acquire": {"mated": ros.failures_mated, "nonmated": ros.failures_nonmated},
        "impostor_pairs": int(rimp.overall.size),
        "at_calibrated": {
            "threshold": t,
            "operating_point": asdict(op),
            "tpir_ci": list(M.binomial_ci(op.hits, op.n_mated)),
            "fpir_ci": list(M.binomial_ci(op.false_alarms, op.n_nonmated)),
            "fmr": {**asdict(fmr_over), "text": fmr_over.text},
            "fpir_at_n": float(M.fpir_at_watchlist_size(fmr_over.rate, N)[0]),
            "fpir_at_n_upper": float(M.fpir_at_watchlist_size(fmr_over.hi, N)[0]),
            "max_vouched_watchlist": max_vouched_watchlist(fmr_over.hi, target),
        },
        "tpir_at_fpir_direct": [asdict(p) for p in M.tpir_at_fpir(
            ros.mated_scores, ros.mated_correct, ros.nonmated_scores, opts.fpir_targets)],
        "mean_scores": {
            "mated_correct": float(np.mean(ros.mated_scores[ros.mated_correct])),
            "nonmated_top1": float(np.mean(ros.nonmated_scores[np.isfinite(ros.nonmated_scores)])),
            "impostor_pair": float(np.mean(rimp.overall)),
        },
    }
    if tail_t is not None:
        rep["at_tail_model"] = {
            "threshold": tail_t,
            "tpir": float(M.tpir(ros.mated_scores, ros.mated_correct, [tail_t])[0]),
            "fmr": _rate(OVERALL, _ge(rimp.overall, tail_t), rimp.overall.size),
        }
    # the other way round: what the goal's TPIR costs, read off the report half's curves
    # (descriptive: a point on the trade-off curve, not a threshold anyone deploys)
    t_goal = _threshold_for_tpir(ros, GOAL_TPIR)
    if t_goal is not None:
        k_g = _ge(rimp.overall, t_goal)
        fmr_g = M.rate_with_ci(OVERALL, k_g, rimp.overall.size)
        rep["at_goal_tpir"] = {
            "tpir": float(M.tpir(ros.mated_scores, ros.mated_correct, [t_goal])[0]),
            "threshold": t_goal, "fmr": {**asdict(fmr_g), "text": fmr_g.text},
            "fpir_direct": float(M.fpir(ros.nonmated_scores, [t_goal])[0]),
            "fpir_at_n": float(M.fpir_at_watchlist_size(fmr_g.rate, N)[0]),
            "fpir_at_n_ci": [float(M.fpir_at_watchlist_size(fmr_g.lo, N)[0]),
                             float(M.fpir_at_watchlist_size(fmr_g.hi, N)[0])],
        }
    # extrapolation table at the calibrated threshold
    rep["extrapolation"] = [
        {"watchlist_size": n,
         "fpir": float(M.fpir_at_watchlist_size(fmr_over.rate, n)[0]),
         "fpir_upper": float(M.fpir_at_watchlist_size(fmr_over.hi, n)[0]),
         "fpir_rare_event": float(M.fpir_rare_event_approx(fmr_over.rate, n)[0]),
         "required_fmr": M.fmr_for_fpir(target, n),
         "resolvable": M.fmr_for_fpir(target, n) * rimp.overall.size >= 1}
        for n in sorted(set(EXTRAPOLATION_SIZES) | {N})
    ]
    # per-group within-group FMR at the calibrated and the display thresholds
    thresholds = {"calibrated": t, **{f"FMR {k} (calibration half)": v
                                      for k, v in display.items()}}
    fmr_tables = {}
    for label, th in thresholds.items():
        per = {}
        for g, vals in rimp.by_group.items():
            counts = {v: (_ge(sc, th), int(sc.size)) for v, sc in vals.items()}
            if counts:
                cmp_ = M.compare_groups(counts)
                per[g] = {**_comparison(cmp_), "fpir_at_n": {
                    r.group: float(M.fpir_at_watchlist_size(r.rate, N)[0]) for r in cmp_.groups}}
        fmr_tables[label] = {"threshold": th, "overall_all_pairs": _rate(
            OVERALL, _ge(rimp.overall, th), rimp.overall.size), "by_grouping": per}
    rep["group_fmr"] = fmr_tables
    # per-group open-set FPIR (non-mated searches) and TPIR (mated searches)
    fpir_tables, tpir_tables = {}, {}
    for label, th in thresholds.items():
        fp, tp = {}, {}
        for g, labels in rpool.groups.items():
            nl = labels[ros.nonmated]
            counts = {v: (int(np.sum(ros.nonmated_scores[nl == v] >= th)), int(np.sum(nl == v)))
                      for v in sorted({x for x in nl if x is not None})}
            if counts:  # ratio to the pooled searches of this grouping (same data set)
                fp[g] = _comparison(M.compare_groups(counts))
            ml = labels[ros.mated]
            hits = ros.mated_correct & (ros.mated_scores >= th)
            tcounts = {v: (int(np.sum(hits[ml == v])), int(np.sum(ml == v)))
                       for v in sorted({x for x in ml if x is not None})}
            if tcounts:
                tp[g] = {v: _rate(v, k, n) for v, (k, n) in tcounts.items()}
        fpir_tables[label] = {"threshold": th, "by_grouping": fp}
        tpir_tables[label] = {"threshold": th, "by_grouping": tp}
    rep["group_fpir"] = fpir_tables
    rep["group_tpir"] = tpir_tables
    out["report"] = rep

    # ---- curves for the plots (report half)
    det = M.det_curve(ros.mated_scores, ros.mated_correct, ros.nonmated_scores)
    fin = np.isfinite(det.thresholds)
    curves["det_direct"] = _downsample(det.fpir[fin], det.fnir[fin], det.thresholds[fin])
    grid = np.linspace(-0.2, 1.0, 601)
    fmr_grid = (rimp.overall.size - np.searchsorted(rimp.overall, grid, side="left")) / max(
        rimp.overall.size, 1)
    fnir_grid = 1.0 - M.tpir(ros.mated_scores, ros.mated_correct, grid)
    resolvable = fmr_grid > 0
    curves["det_extrapolated"] = _downsample(
        M.fpir_at_watchlist_size(fmr_grid[resolvable], N), fnir_grid[resolvable],
        grid[resolvable])
    curves["vs_threshold"] = {
        "threshold": grid.tolist(),
        "fpir_direct": M.fpir(ros.nonmated_scores, grid).tolist(),
        "fmr": fmr_grid.tolist(),
        "fpir_at_n": M.fpir_at_watchlist_size(fmr_grid, N).tolist(),
        "tpir": (1.0 - fnir_grid).tolist(),
    }
    curves["group_fmr"] = {}
    for g in rpool.primary:
        curves["group_fmr"][g] = {
            v: ((sc.size - np.searchsorted(sc, grid, side="left")) / sc.size).tolist()
            for v, sc in rimp.by_group.get(g, {}).items()
        }
    hist_bins = np.linspace(-0.4, 1.0, 141)
    curves["hist"] = {
        "bins": hist_bins.tolist(),
        "mated": np.histogram(ros.mated_scores[ros.mated_correct], hist_bins)[0].tolist(),
        "nonmated_top1": np.histogram(ros.nonmated_scores[np.isfinite(ros.nonmated_scores)],
                                      hist_bins)[0].tolist(),
        "impostor_pairs": np.histogram(rimp.overall, hist_bins)[0].tolist(),
    }
    # tail model of the report half's impostor scores: where the measured FMR runs out (1/n)
    # this dashed continuation shows what extreme-value extrapolation suggests, no more
    if req_fmr * rimp.overall.size >= TAIL_MAX_EXTRAPOLATION:
        try:
            fit = M.fit_tail(rimp.overall)
            tg = grid[grid >= fit.u]
            fm = fit.fmr(tg)
            curves["tail_report"] = {
                "threshold": tg.tolist(), "fmr": fm.tolist(),
                "fpir_at_n": M.fpir_at_watchlist_size(fm, N).tolist(),
                "fnir": (1.0 - M.tpir(ros.mated_scores, ros.mated_correct, tg)).tolist(),
                "shape": fit.shape, "u": fit.u,
            }
            rep["tail_model_report_half"] = {
                "shape": fit.shape, "u": fit.u, "q": fit.q,
                "threshold_for_required_fmr": fit.threshold_for_fmr(req_fmr),
                "tpir_there": float(M.tpir(ros.mated_scores, ros.mated_correct,
                                           [fit.threshold_for_fmr(req_fmr)])[0]),
            }
        except (ValueError, RuntimeError) as exc:
            log.info("no tail fit on the report half: %s", exc)
    curves["threshold"] = t
    curves["tail_threshold"] = tail_t
    curves["watchlist_size"] = N
    curves["target_fpir"] = target
    return out, curves


def _verification(fs: FaceSet, emb: np.ndarray, ok: np.ndarray,
                  ex: Exclusions | None) -> dict[str, Any] | None:
    """The standard k-fold verification accuracy on the set's own pairs.csv (sanity figure)."""
    if not fs.pairs:
        return None
    pairs = fs.pairs
    dropped = []
    if ex is not None:
        keep = []
        for p in pairs:
            a, b = fs.items[p.a].identity, fs.items[p.b].identity
            if not p.same and ex.person(a) == ex.person(b):
                dropped.append(f"{fs.items[p.a].path.name} / {fs.items[p.b].path.name}")
            else:
                keep.append(p)
        pairs = keep
    same_ = [p.same for p in pairs]
    if len({p.fold for p in pairs}) < 2 or all(same_) or not any(same_):
        return None  # e.g. a --limit-identities slice keeps too few of the protocol's pairs
    s = np.array([float(emb[p.a] @ emb[p.b]) if ok[p.a] and ok[p.b] else -1.0 for p in pairs])
    r = M.kfold_verification_accuracy(s, [p.same for p in pairs], [p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    return {**asdict(r), "pairs": len(pairs), "dropped_pairs": dropped,
            "pairs_missing_face": int(sum(1 for p in pairs if not (ok[p.a] and ok[p.b]))),
            "mean_genuine": float(s[same].mean()), "mean_impostor": float(s[~same].mean())}


def run_evaluation(opts: EvalOptions, engine: FaceEngine | None = None) -> EvalResult:
    """Run the whole experiment; ``engine`` defaults to ``FaceEngine`` from ``opts.config``."""
    if not 0 < opts.target_fpir < 1:
        raise EdgeError("target FPIR must be between 0 and 1 (e.g. 1/6000)")
    if opts.watchlist_size < 1:
        raise EdgeError("watchlist size must be at least 1")
    id_set = limit_subset(load_face_set(opts.identities), opts.limit_identities, opts.salt, True)
    if not id_set.identity_labelled:
        raise DatasetError(f"{opts.identities}: labels.csv has no identity column; "
                           "use it as --impostors instead")
    imp_set = None
    if opts.impostors is not None:
        imp_set = limit_subset(load_face_set(opts.impostors), opts.limit_impostors, opts.salt, False)
        if imp_set.identity_labelled:
            log.info("impostor set %s has identities; each image is still used as non-mated",
                     imp_set.name)
    ex = load_exclusions(opts.exclusions)
    if engine is None:
        engine = FaceEngine.from_config(load_config(opts.config))
    sets = []
    data_summary = []
    for fs in (id_set, imp_set):
        if fs is None:
            continue
        emb, ok = embed_images([it.path for it in fs.items], engine, pad=opts.pad,
                               cache_dir=opts.cache_dir, use_cache=opts.use_cache,
                               progress=opts.progress, desc=f"embedding {fs.name}")
        if imp_set is not None and fs is imp_set and fs.identity_labelled:
            # an identity-labelled set used as impostors: one "person" per image is wrong, so
            # keep identities but never enrol them (handled as non-mated below)
            fs = FaceSet(fs.root, fs.name, "impostor", fs.items)
        sets.append((fs, emb, ok))
        n_ids = len({it.identity for it in fs.items}) if fs.identity_labelled else None
        data_summary.append({
            "name": fs.name, "path": str(fs.root), "layout": fs.layout,
            "images": len(fs.items), "identities": n_ids, "no_face": int((~ok).sum()),
            "groupings": list(fs.group_labels()), "primary_grouping": fs.primary_grouping,
            "pairs": len(fs.pairs) if fs.pairs else 0,
            "skipped": dict(fs.skipped),
        })
        if fs.skipped_line():
            log.warning("%s", fs.skipped_line())
    blocks = recogniser_blocks(engine)
    raw_sets = sets  # the node's probe space: where cohort clusters are fitted and assigned
    fusion: list[ModelStats] | None = None
    members: dict[str, list[tuple[FaceSet, np.ndarray, np.ndarray]]] = {}
    if blocks is not None:
        # each model alone, then the fused score the node computes, on the same images
        for k, (name, _, _) in enumerate(blocks):
            members[name] = _block_sets(sets, [1.0 if j == k else 0.0 for j in range(len(blocks))],
                                        blocks)
        fusion = fusion_statistics(build_pools(sets, opts.salt), ex, blocks, engine,
                                   f"edge eval {opts.identities.name}: calibration half")
        sets = _block_sets(sets, [float(a) for a in block_scales(fusion)], blocks)
    pools = build_pools(sets, opts.salt)
    halves = {}
    for half, pool in pools.items():
        halves[half] = {
            "images": int(pool.ok.size),
            "identities": int(len(set(pool.identity[pool.from_id_set]))),
            "impostor_set_images": int((~pool.from_id_set).sum()),
        }
    variants: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    names = ["raw"] + (["cleaned"] if ex is not None else [])
    for name in names:
        v_ex = ex if name == "cleaned" else None
        variants[name], curves[name] = _variant(pools, v_ex, opts)
    primary = names[-1]
    side_by_side: dict[str, Any] = {}
    if fusion is not None:
        for name, msets in members.items():
            v_m, curves[f"recogniser:{name}"] = _variant(build_pools(msets, opts.salt),
                                                         ex if primary == "cleaned" else None, opts)
            side_by_side[name] = _side_by_side_row(v_m, opts)
        side_by_side["fusion"] = _side_by_side_row(variants[primary], opts)
        curves["recogniser:fusion"] = curves[primary]
    normalisation = None
    norm = _normalisation_settings(opts, engine)
    if norm is not None:
        pex = ex if primary == "cleaned" else None
        npools, clusters = cohort_normalised_pools(pools, build_pools(raw_sets, opts.salt), pex,
                                                   norm[0], norm[1])
        v_n, curves["normalisation:cohort-clusters"] = _variant(npools, pex, opts)
        curves["normalisation:off"] = curves[primary]
        normalisation = {
            "kind": C.KIND, "clusters": clusters.summary(), "cluster_members": clusters.members,
            "cluster_pairs": clusters.pairs,
            "half_offsets": [round(float(x), 5) for x in clusters.half_offsets],
            "off": _side_by_side_row(variants[primary], opts),
            "cohort-clusters": _side_by_side_row(v_n, opts),
        }
    excluded = []
    if ex is not None:
        for half, pool in pools.items():
            excluded.extend(_excluded_pairs(pool, ex, half))
    verification = {}
    id_fs, id_emb, id_ok = sets[0]
    for name in names:
        v = _verification(id_fs, id_emb, id_ok, ex if name == "cleaned" else None)
        if v is not None:
            verification[name] = v
    summary = {
        "tool": "edge eval",
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "options": {
            "identities": str(opts.identities), "impostors": str(opts.impostors or ""),
            "watchlist_size": opts.watchlist_size, "target_fpir": opts.target_fpir,
            "fpir_targets": list(opts.fpir_targets), "exclusions": opts.exclusions,
            "split_salt": opts.salt, "limit_identities": opts.limit_identities,
            "limit_impostors": opts.limit_impostors, "pad": opts.pad,
        },
        "engine": engine_fingerprint(engine),
        "required_fmr": M.fmr_for_fpir(opts.target_fpir, opts.watchlist_size),
        "data": data_summary,
        "halves": halves,
        "exclusions": ({"source": ex.source, "entries": [list(e) for e in ex.entries],
                        "excluded_pairs": excluded} if ex is not None else None),
        "primary_variant": primary,
        "variants": variants,
        "verification": verification,
        "goal": _goal(variants[primary], opts),
        "fusion": [asdict(m) for m in fusion] if fusion is not None else None,
        "recognisers": side_by_side or None,
        "score_normalisation": normalisation,
    }
    return EvalResult(summary=summary, curves=curves)


def _normalisation_settings(opts: EvalOptions, engine: FaceEngine) -> tuple[int, float] | None:
    """(clusters, FMR) when the cohort-cluster normalisation is to be measured, else None."""
    m = engine.cfg.match
    kind = opts.score_normalisation or m.score_normalisation
    if kind == "off":
        return None
    if kind != C.KIND:
        raise EdgeError(f"unknown score normalisation {kind!r} (off or {C.KIND})")
    return (opts.cohort_clusters or m.cohort_clusters,
            opts.cohort_fmr if opts.cohort_fmr is not None else m.cohort_fmr)


def cohort_normalised_pools(pools: dict[str, Pool], raw: dict[str, Pool], ex: Exclusions | None,
                            k: int, fmr: float) -> tuple[dict[str, Pool], C.CohortClusters]:
    """Both halves with scores normalised by cohort clusters fitted on the calibration half
    (the consented cohort; nothing of the report half is used). ``raw`` are the same images in
    the probe's (unscaled) space, where the node assigns clusters."""
    cal = raw[CALIBRATION]
    ok = np.flatnonzero(cal.ok)
    clusters = C.fit(cal.emb[ok], k, fmr, "edge eval: calibration half",
                     person=person_keys(cal, ex)[ok])
    out = {}
    for half, pool in pools.items():
        emb = raw[half].emb
        sims = np.empty((len(emb), clusters.k), np.float32)
        idx = np.empty(len(emb), np.int64)
        clusters.nearest(emb, sims, idx)
        d = clusters.half_offsets[idx][:, None]
        one = np.ones_like(d)
        out[half] = replace(pool, emb=np.ascontiguousarray(np.hstack([pool.emb, d, one])),
                            right=np.ascontiguousarray(np.hstack([pool.emb, one, d])))
    return out, clusters


def _goal(v: dict[str, Any], opts: EvalOptions) -> dict[str, Any]:
    """Where the primary variant stands against the accuracy goal (``GOAL_TPIR`` at the target FPIR)."""
    rep = v["report"]["at_calibrated"]
    op = rep["operating_point"]
    ratios = []
    for g in v["report"]["group_fpir"]["calibrated"]["by_grouping"].values():
        if g["worst_over_overall"] is not None:
            ratios.append(g["worst_over_overall"])
    disp = [k for k in v["report"]["group_fmr"] if k != "calibrated"]
    fmr_ratios: dict[str, dict[str, float]] = {}
    for k in disp:
        for g, d in v["report"]["group_fmr"][k]["by_grouping"].items():
            if d["worst_over_overall"] is not None:
                fmr_ratios.setdefault(g, {})[k] = d["worst_over_overall"]
    return {
        "goal": f"TPIR >= {GOAL_TPIR:.0%} at FPIR <= 1/{round(1 / GOAL_FPIR):,} for a "
                f"{GOAL_WATCHLIST:,} watchlist; every group's FPIR <= {GOAL_GROUP_RATIO:g}x overall",
        "threshold": rep["threshold"],
        "tpir_per_image": op["tpir"],
        "tpir_meets": op["tpir"] >= GOAL_TPIR,
        "fpir_at_n_point": rep["fpir_at_n"],
        "fpir_at_n_upper": rep["fpir_at_n_upper"],
        "fpir_demonstrated": rep["fpir_at_n_upper"] <= opts.target_fpir,
        "max_vouched_watchlist": rep["max_vouched_watchlist"],
        "open_set_group_fpir_ratios_at_calibrated": ratios,
        "within_group_fmr_ratios_at_display_thresholds": fmr_ratios,
    }


def parse_rate(text: str) -> float:
    """'1/6000', '0.000166' or '1.6e-4' -> float (for CLI options)."""
    s = text.strip()
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            v = float(a) / float(b)
        else:
            v = float(s)
    except (ValueError, ZeroDivisionError):
        raise EdgeError(f"not a rate: {text!r} (use e.g. 1/6000 or 0.001)") from None
    if not 0 < v < 1:
        raise EdgeError(f"rate {text!r} must be between 0 and 1")
    return v


def parse_rates(texts: Sequence[str]) -> tuple[float, ...]:
    return tuple(parse_rate(t) for t in texts)
