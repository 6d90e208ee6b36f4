"""Group-free fair score normalisation: per-cluster thresholds from a consented cohort.

After Terhörst et al. 2020 ("Post-comparison mitigation of demographic bias in face
recognition using fair score normalization"). A consented background set (faces of people
not on the list) is clustered with k-means; each cluster gets the threshold ``t_c`` at which
impostor pairs *within* it reach the target false match rate, and the whole cohort the
threshold ``t_G`` at the same rate. A comparison of faces in clusters ``i`` and ``j`` is then

    s' = s + 1/2 (t_G - t_i) + 1/2 (t_G - t_j)

so where look-alike strangers score high (a cluster whose impostors run hot, which is how
demographic differentials show up) the score is pulled down, and where they score low it is
pushed up. No demographic label is used: clusters come from the embeddings alone.

The correction is additive per side, so FAISS applies it exactly inside the inner product:
a gallery row is stored as ``[e, 1, d_g]`` and a probe searched as ``[e, d_p, 1]``, where
``d = (t_G - t_c) / 2`` of the row's nearest centroid. The top-1 of the normalised score is
then exact for flat and HNSW lists alike, at the cost of two columns.

Privacy: a cluster is kept only if at least ``MIN_MEMBERS`` cohort faces fall in it, so a
centroid is the mean of many people and never one person's embedding; clusters below that are
dropped and their members re-assigned. The cohort's embeddings are zeroed after fitting; the
list stores the centroids and offsets only, encrypted with it. A probe's cluster similarities
live in the frame's face buffers and are zeroed with them.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import faiss
import numpy as np

from edge.errors import WatchlistError

KIND = "cohort-clusters"
MIN_MEMBERS = 10  # faces per kept cluster (see the module doc)
KMEANS_ITER = 25
SEED = 1234  # fixed: the same cohort gives the same clusters


@dataclass
class CohortClusters:
    """Centroids (unit rows, in the probe's embedding space) and half-offsets per cluster."""

    centroids: np.ndarray  # (K, D) float32
    half_offsets: np.ndarray  # (K,) float32: (t_G - t_c) / 2
    fmr: float
    global_threshold: float
    cohort_size: int
    source: str
    members: list[int] = field(default_factory=list)  # cohort faces per cluster
    pairs: list[int] = field(default_factory=list)  # within-cluster impostor pairs per cluster

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def summary(self) -> dict:
        """What the audit log and `watchlist show` say about it (no centroid values)."""
        off = 2 * self.half_offsets.astype(np.float64)
        return {"kind": KIND, "clusters": self.k, "fmr": self.fmr, "cohort_size": self.cohort_size,
                "global_threshold": round(self.global_threshold, 5),
                "offset_range": [round(float(off.min()), 5), round(float(off.max()), 5)],
                "source": self.source}

    # ---- the two sides of the normalised inner product
    def nearest(self, rows: np.ndarray, sims_out: np.ndarray, idx_out: np.ndarray) -> None:
        """Each row's nearest centroid into caller-owned buffers (``sims_out`` is K wide)."""
        n = len(rows)
        np.matmul(rows, self.centroids.T, out=sims_out[:n])
        np.argmax(sims_out[:n], axis=1, out=idx_out[:n])

    def probe_rows(self, probes: np.ndarray, out: np.ndarray, sims: np.ndarray,
                   idx: np.ndarray) -> np.ndarray:
        """``[e, d_p, 1]`` for each probe, written into ``out`` (D + 2 wide); returns the view."""
        n, d = probes.shape
        self.nearest(probes, sims, idx)
        view = out[:n, :d + 2]
        view[:, :d] = probes
        np.take(self.half_offsets, idx[:n], out=view[:, d])
        view[:, d + 1] = 1.0
        return view

    def gallery_rows(self, assign_on: np.ndarray, indexed: np.ndarray) -> np.ndarray:
        """``[e, 1, d_g]`` for the list's entries: ``assign_on`` are the raw embeddings
        (clusters live in the probe's space), ``indexed`` what the index holds for them."""
        n = len(assign_on)
        sims = np.empty((n, self.k), np.float32)
        idx = np.empty(n, np.int64)
        self.nearest(assign_on, sims, idx)
        sims.fill(0)
        out = np.empty((n, indexed.shape[1] + 2), np.float32)
        out[:, :-2] = indexed
        out[:, -2] = 1.0
        out[:, -1] = self.half_offsets[idx]
        return out

    # ---- stored with the list (encrypted blob + metadata)
    def meta(self) -> dict:
        return {**self.summary(), "members": self.members, "pairs": self.pairs,
                "global_threshold": self.global_threshold}

    def to_blob(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, centroids=self.centroids, half_offsets=self.half_offsets)
        return buf.getvalue()

    @classmethod
    def from_stored(cls, meta: dict, blob: bytes) -> CohortClusters:
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                cen = np.ascontiguousarray(z["centroids"], np.float32)
                off = np.ascontiguousarray(z["half_offsets"], np.float32)
            c = cls(cen, off, float(meta["fmr"]), float(meta["global_threshold"]),
                    int(meta["cohort_size"]), str(meta.get("source", "")),
                    [int(x) for x in meta.get("members", [])], [int(x) for x in meta.get("pairs", [])])
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise WatchlistError(f"watchlist cohort clusters are corrupt ({type(exc).__name__})") from None
        if cen.ndim != 2 or off.shape != (cen.shape[0],) or not np.isfinite(off).all():
            raise WatchlistError("watchlist cohort clusters are malformed")
        return c


def top_threshold(scores: np.ndarray, fmr: float) -> float:
    """The lowest threshold at which at most ``fmr`` of ``scores`` reach it (ties count)."""
    n = scores.size
    k = max(1, math.floor(fmr * n))  # the k highest may alarm
    if k >= n:
        return float(scores.min())
    part = np.partition(scores, n - k - 1)
    # just above the (k+1)-th highest: k scores reach it, the rest do not
    return float(np.nextafter(part[n - k - 1], np.float32(np.inf)))


def pair_scores(emb: np.ndarray, person: np.ndarray | None, block: int = 1024) -> np.ndarray:
    """Scores of every pair i < j of different people (one person per row when None)."""
    n = len(emb)
    out = []
    for s in range(0, n, block):
        sims = emb[s:s + block] @ emb.T
        rows = np.arange(s, min(s + block, n))
        keep = np.arange(n)[None, :] > rows[:, None]
        if person is not None:
            keep &= person[rows][:, None] != person[None, :]
        out.append(sims[keep])
        sims.fill(0)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def min_cohort(k: int, fmr: float) -> int:
    """Faces a cohort needs: enough pairs for the global threshold and ``k`` kept clusters."""
    need_pairs = math.ceil(10 / fmr)
    return max(k * MIN_MEMBERS, math.ceil((1 + math.sqrt(1 + 8 * need_pairs)) / 2))


def fit(cohort: np.ndarray, k: int, fmr: float, source: str,
        person: np.ndarray | None = None) -> CohortClusters:
    """Cluster a consented cohort (unit rows; ``person`` keys when several rows can show one
    person, else one person per row) and measure each cluster's threshold at ``fmr``."""
    cohort = np.ascontiguousarray(cohort, np.float32)
    n, d = cohort.shape
    need = min_cohort(k, fmr)
    if n < need:
        raise WatchlistError(
            f"the cohort has {n} usable faces; {k} clusters at FMR {fmr:g} need at least {need} "
            "(give more consented faces, or fewer match.cohort_clusters)")
    km = faiss.Kmeans(d, k, niter=KMEANS_ITER, seed=SEED, spherical=True, verbose=False,
                      max_points_per_centroid=max(256, n // k + 1))
    km.train(cohort)
    cen = np.ascontiguousarray(km.centroids, np.float32)
    # drop clusters too small to be "many people", then re-assign (until stable)
    while True:
        sims = cohort @ cen.T
        lab = np.argmax(sims, axis=1)
        sims.fill(0)
        counts = np.bincount(lab, minlength=len(cen))
        small = counts < MIN_MEMBERS
        if not small.any():
            break
        cen = cen[~small]
        if not len(cen):
            raise WatchlistError("the cohort gives no cluster with enough faces")
    # recompute each centroid as the mean of its members (unit length), as k-means would
    for c in range(len(cen)):
        m = cohort[lab == c].mean(axis=0)
        cen[c] = m / max(float(np.linalg.norm(m)), 1e-12)
    sims = cohort @ cen.T
    lab = np.argmax(sims, axis=1)
    sims.fill(0)
    t_g = top_threshold(pair_scores(cohort, person), fmr)
    offsets = np.zeros(len(cen), np.float32)
    members, pairs = [], []
    for c in range(len(cen)):
        idx = np.flatnonzero(lab == c)
        sc = pair_scores(cohort[idx], None if person is None else person[idx])
        members.append(int(idx.size))
        pairs.append(int(sc.size))
        # a cluster whose pairs cannot resolve the rate keeps the global threshold
        if sc.size * fmr >= 1:
            offsets[c] = (t_g - top_threshold(sc, fmr)) / 2
        sc.fill(0)
    return CohortClusters(cen, offsets, fmr, t_g, n, source, members, pairs)
