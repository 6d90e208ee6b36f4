"""Score fusion of several recognisers: per-model impostor statistics and one calibrated score.

A row of a fused embedding has one unit-length block per model (``edge.face.embedders.fused``),
so the inner product of two rows' blocks ``m`` is model ``m``'s cosine ``c_m``. Each model's
cosines are z-scored with its impostor statistics (mean ``mu_m``, spread ``sd_m`` of scores
between different people) and the z-scores averaged with weights ``w_m`` (summing to 1); the
result is put back on the primary model's spread so that a threshold reads like a cosine:

    s = sd_1 * sum_m w_m * c_m / sd_m   (the means shift every score by one constant:
                                          they change no decision and are left out)

That is an inner product of the probe row with the gallery row scaled block by block by
``a_m = w_m * sd_1 / sd_m``: the watchlist stores the models' raw embeddings and searches an
index of scaled ones, so fusion costs nothing at search time, and with one model
(``a_1 = 1``) it is exactly today's cosine. Statistics come from ``edge eval`` (the
calibration half's impostor pairs) or from a consented background set at watchlist
creation, and are stored with the list and written to the audit log.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.errors import WatchlistError

# Fewer impostor pairs than this give a spread too noisy to weigh models by.
MIN_IMPOSTOR_PAIRS = 100


@dataclass
class ModelStats:
    """One recogniser of a fused list: identity, weight and impostor statistics."""

    name: str
    sha256: str
    dim: int
    weight: float = 1.0
    impostor_mean: float = 0.0
    impostor_std: float = 1.0
    impostor_pairs: int = 0
    source: str = ""  # where the statistics came from (eval run, background set, the list)

    @classmethod
    def from_dict(cls, d: dict) -> ModelStats:
        try:
            s = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except (KeyError, TypeError) as exc:
            raise WatchlistError(f"fusion statistics are malformed: {exc}") from None
        if not (s.dim > 0 and s.weight > 0 and math.isfinite(s.impostor_std) and s.impostor_std > 0
                and math.isfinite(s.impostor_mean)):
            raise WatchlistError(f"fusion statistics of {s.name} are out of range")
        return s


def block_scales(models: list[ModelStats]) -> np.ndarray:
    """``a_m`` per model (see the module doc); ones for a single model."""
    if len(models) <= 1:
        return np.ones(len(models) or 1, np.float32)
    w = np.array([m.weight for m in models], np.float64)
    w = w / w.sum()
    sd = np.array([m.impostor_std for m in models], np.float64)
    return (w * sd[0] / sd).astype(np.float32)


def column_scale(models: list[ModelStats]) -> np.ndarray:
    """The per-column factor of a gallery row: ``a_m`` repeated over model ``m``'s block."""
    return np.concatenate([np.full(m.dim, a, np.float32)
                           for m, a in zip(models, block_scales(models), strict=True)])


def blocks(models: list[ModelStats]) -> list[tuple[int, int]]:
    out, lo = [], 0
    for m in models:
        out.append((lo, lo + m.dim))
        lo += m.dim
    return out


def impostor_moments(a: np.ndarray, b: np.ndarray,
                     same: np.ndarray | None = None) -> tuple[float, float, int]:
    """Mean, spread and count of the cosines between rows of ``a`` and rows of ``b`` that are
    different people (``same[i, j]`` True marks pairs to leave out)."""
    sims = a @ b.T
    keep = np.ones(sims.shape, bool) if same is None else ~same
    vals = sims[keep].astype(np.float64)
    sims.fill(0)
    if vals.size < 2:
        return 0.0, 1.0, int(vals.size)
    return float(vals.mean()), float(max(vals.std(), 1e-6)), int(vals.size)


def stats_from_sets(models: list[ModelStats], gallery: np.ndarray, others: np.ndarray,
                    same: np.ndarray | None, source: str) -> list[ModelStats]:
    """Each model's impostor statistics from gallery rows against other people's rows."""
    out = []
    for m, (lo, hi) in zip(models, blocks(models), strict=True):
        mu, sd, n = impostor_moments(gallery[:, lo:hi], others[:, lo:hi], same)
        out.append(ModelStats(m.name, m.sha256, m.dim, m.weight, mu, sd, n, source))
    if out and out[0].impostor_pairs < MIN_IMPOSTOR_PAIRS:
        raise WatchlistError(
            f"fusion statistics from {source}: {out[0].impostor_pairs} impostor pairs, fewer than "
            f"{MIN_IMPOSTOR_PAIRS}; give --background with more consented faces, or "
            "--fusion-stats from edge eval")
    return out


def write_stats(path: Path, models: list[ModelStats]) -> None:
    """The file `edge eval --write-fusion` writes and `edge watchlist create --fusion-stats` reads."""
    path.write_text(json.dumps({"fusion": [asdict(m) for m in models]}, indent=1) + "\n")


def read_stats(path: Path) -> list[ModelStats]:
    try:
        data = json.loads(Path(path).read_text())
        rows = data["fusion"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WatchlistError(f"{path}: not a fusion statistics file ({type(exc).__name__})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise WatchlistError(f"{path}: not a fusion statistics file")
    return [ModelStats.from_dict(r) for r in rows]


def adopt(configured: list[ModelStats], measured: list[ModelStats]) -> list[ModelStats]:
    """The configured models (names, weights) with statistics measured for the same files."""
    by_sha = {m.sha256: m for m in measured}
    out = []
    for m in configured:
        s = by_sha.get(m.sha256)
        if s is None:
            raise WatchlistError(f"the fusion statistics have no figures for recogniser {m.name} "
                                 f"(sha256 {m.sha256[:12]}...)")
        if s.dim != m.dim:
            raise WatchlistError(f"fusion statistics of {m.name} are for {s.dim} dims, not {m.dim}")
        out.append(ModelStats(m.name, m.sha256, m.dim, m.weight, s.impostor_mean, s.impostor_std,
                              s.impostor_pairs, s.source))
    return out


def calibrate(configured: list[ModelStats], gallery: np.ndarray, subject_of: list[str],
              measured: list[ModelStats] | None = None,
              background: np.ndarray | None = None) -> list[ModelStats]:
    """Impostor statistics for a new fused list, from the first source that is given:
    ``measured`` (an `edge eval` file), ``background`` (embeddings of consented faces not on
    the list, against the list's entries), else the list's own entries of different subjects."""
    if measured is not None:
        return adopt(configured, measured)
    if background is not None:
        if not len(background):
            raise WatchlistError("the background set has no usable face")
        return stats_from_sets(configured, gallery, background, None,
                               f"background set ({len(background)} faces)")
    subj = np.array(subject_of)
    same = subj[:, None] == subj[None, :]
    return stats_from_sets(configured, gallery, gallery, same,
                           f"the list's own entries ({len(set(subject_of))} subjects)")
