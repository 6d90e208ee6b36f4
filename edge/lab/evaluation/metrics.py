"""Evaluation maths for open-set 1:N identification and verification (numpy + scipy only).

No face code lives here: every function takes score arrays, so each one can be checked
against small hand-computed cases (tests/lab/test_eval_metrics.py) before it is trusted on
real data.

Conventions used throughout:

* A comparison *matches* when ``score >= threshold`` (cosine similarity, higher = more alike).
* Open-set search results are summarised by their top-1 candidate: for a *mated* search (the
  probe's subject is enrolled) the top-1 score and whether the top-1 subject is the right one;
  for a *non-mated* search (the subject is not enrolled) just the top-1 score.
* TPIR(t) = share of mated searches whose top-1 is the right subject AND scores >= t.
  FNIR(t) = 1 - TPIR(t). FPIR(t) = share of non-mated searches whose top-1 scores >= t.
* FMR(t) = share of single impostor comparisons (two different people) scoring >= t.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta, genpareto, norm

# ----------------------------------------------------------------------------- helpers


def _as_1d(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    arr: np.ndarray = np.asarray(x, dtype=dtype).reshape(-1)
    return arr


def count_at_or_above(scores: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """Number of ``scores >= t`` for every ``t`` (vectorised by sorting once)."""
    s = np.sort(_as_1d(scores))
    t = _as_1d(thresholds)
    return s.size - np.searchsorted(s, t, side="left")


def _next_up(x: float) -> float:
    """Smallest float64 strictly greater than ``x``: the lowest threshold that rejects ``x``."""
    return float(np.nextafter(float(x), np.inf))


# ----------------------------------------------------------------------------- open set


def tpir(mated_scores: ArrayLike, mated_correct: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """True-positive identification rate at each threshold.

    A mated search only counts as found when its top-1 is the right subject *and* its score
    clears the threshold: a confident wrong identity is a miss, not a hit.
    """
    s = _as_1d(mated_scores)
    ok = _as_1d(mated_correct, dtype=bool)
    if s.size != ok.size:
        raise ValueError("mated_scores and mated_correct differ in length")
    if s.size == 0:
        raise ValueError("no mated searches")
    return count_at_or_above(s[ok], thresholds) / s.size


def fpir(nonmated_scores: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """False-positive identification rate: share of non-mated searches that raise an alert."""
    s = _as_1d(nonmated_scores)
    if s.size == 0:
        raise ValueError("no non-mated searches")
    return count_at_or_above(s, thresholds) / s.size


def threshold_for_rate(scores: ArrayLike, target: float) -> float:
    """Lowest threshold ``t`` whose empirical rate ``#(scores >= t) / n`` is <= ``target``.

    With ``k = floor(target * n)`` false alarms allowed, ``t`` must lie strictly above the
    (k+1)-th highest score, so the answer is the next float above it. Used for both FPIR
    (top-1 non-mated scores) and FMR (impostor comparison scores).
    """
    s = _as_1d(scores)
    if s.size == 0:
        raise ValueError("no scores to set a threshold on")
    if not 0.0 <= target < 1.0:
        raise ValueError("target rate must be in [0, 1)")
    k = int(math.floor(target * s.size + 1e-9))  # tolerance: 0.25*4 must give 1, not 0.999..
    desc = np.sort(s)[::-1]
    return _next_up(desc[k])


def threshold_for_fpir(nonmated_scores: ArrayLike, target_fpir: float) -> float:
    """Lowest threshold at which the measured FPIR does not exceed ``target_fpir``."""
    return threshold_for_rate(nonmated_scores, target_fpir)


def min_measurable_rate(n: int) -> float:
    """Smallest non-zero rate an experiment with ``n`` trials can observe (1/n).

    Targets below this can only be met by putting the threshold above every observed score;
    whether the true rate is really that low is then unknown (see ``binomial_ci``).
    """
    return 1.0 / n if n else math.inf


@dataclass(frozen=True)
class OperatingPoint:
    """TPIR and FPIR at one threshold, with the counts behind them."""

    target_fpir: float | None
    threshold: float
    tpir: float
    fpir: float
    hits: int
    n_mated: int
    false_alarms: int
    n_nonmated: int
    resolvable: bool  # False when target_fpir < 1/n_nonmated: the target is below what n can show


def tpir_at_fpir(
    mated_scores: ArrayLike,
    mated_correct: ArrayLike,
    nonmated_scores: ArrayLike,
    targets: Sequence[float],
) -> list[OperatingPoint]:
    """TPIR at the lowest threshold meeting each FPIR target (the usual headline figure)."""
    ms = _as_1d(mated_scores)
    ok = _as_1d(mated_correct, dtype=bool)
    nm = _as_1d(nonmated_scores)
    out = []
    for target in targets:
        t = threshold_for_fpir(nm, target)
        out.append(operating_point(ms, ok, nm, t, target_fpir=target))
    return out


def operating_point(
    mated_scores: ArrayLike,
    mated_correct: ArrayLike,
    nonmated_scores: ArrayLike,
    threshold: float,
    target_fpir: float | None = None,
) -> OperatingPoint:
    """TPIR/FPIR and counts at a fixed threshold (e.g. one calibrated on another split)."""
    ms = _as_1d(mated_scores)
    ok = _as_1d(mated_correct, dtype=bool)
    nm = _as_1d(nonmated_scores)
    hits = int(count_at_or_above(ms[ok], [threshold])[0])
    fa = int(count_at_or_above(nm, [threshold])[0])
    return OperatingPoint(
        target_fpir=target_fpir,
        threshold=float(threshold),
        tpir=hits / ms.size,
        fpir=fa / nm.size,
        hits=hits,
        n_mated=int(ms.size),
        false_alarms=fa,
        n_nonmated=int(nm.size),
        resolvable=target_fpir is None or target_fpir * nm.size >= 1.0,
    )


@dataclass(frozen=True)
class DetCurve:
    """FNIR against FPIR as the threshold sweeps every observed score (plus one above all)."""

    thresholds: np.ndarray
    fpir: np.ndarray
    fnir: np.ndarray


def det_curve(
    mated_scores: ArrayLike, mated_correct: ArrayLike, nonmated_scores: ArrayLike
) -> DetCurve:
    """Detection-error trade-off points, thresholds ascending (FPIR falls, FNIR rises)."""
    ms = _as_1d(mated_scores)
    nm = _as_1d(nonmated_scores)
    t = np.unique(np.concatenate([ms, nm]))
    t = np.append(t, _next_up(t[-1]) if t.size else 1.0)
    f = fpir(nm, t)
    fn = 1.0 - tpir(ms, mated_correct, t)
    return DetCurve(thresholds=t, fpir=f, fnir=fn)


# ----------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerificationResult:
    """k-fold verification accuracy: one threshold fitted per held-out fold."""

    mean: float
    std: float  # population std over folds (ddof=0), as the LFW reference code reports it
    fold_accuracy: list[float]
    fold_threshold: list[float]
    fold_ids: list[int]


def best_accuracy_threshold(scores: ArrayLike, same: ArrayLike) -> tuple[float, float]:
    """Threshold maximising verification accuracy on (scores, same), and that accuracy.

    Candidates are every midpoint between consecutive distinct scores plus one below and one
    above all scores; the first (lowest) maximum wins, so the result is deterministic.
    """
    s = _as_1d(scores)
    y = _as_1d(same, dtype=bool)
    if s.size == 0:
        raise ValueError("no pairs")
    u = np.unique(s)
    cands = np.concatenate([[u[0]], (u[:-1] + u[1:]) / 2.0, [_next_up(u[-1])]])
    tp = count_at_or_above(s[y], cands)  # genuine accepted
    fa = count_at_or_above(s[~y], cands)  # impostor accepted
    tn = (~y).sum() - fa
    acc = (tp + tn) / s.size
    i = int(np.argmax(acc))
    return float(cands[i]), float(acc[i])


def kfold_verification_accuracy(
    scores: ArrayLike, same: ArrayLike, folds: ArrayLike
) -> VerificationResult:
    """LFW protocol: for each fold, fit the threshold on the other folds, score the held-out one.

    The threshold never sees the fold it is judged on, so the mean is an honest estimate.
    """
    s = _as_1d(scores)
    y = _as_1d(same, dtype=bool)
    f = _as_1d(folds, dtype=np.int64)
    if not (s.size == y.size == f.size):
        raise ValueError("scores, same and folds differ in length")
    ids = sorted(int(v) for v in np.unique(f))
    if len(ids) < 2:
        raise ValueError("need at least two folds")
    accs, ths = [], []
    for k in ids:
        test = f == k
        t, _ = best_accuracy_threshold(s[~test], y[~test])
        pred = s[test] >= t
        accs.append(float(np.mean(pred == y[test])))
        ths.append(t)
    return VerificationResult(
        mean=float(np.mean(accs)), std=float(np.std(accs)), fold_accuracy=accs,
        fold_threshold=ths, fold_ids=ids,
    )


# ----------------------------------------------------------------------------- extrapolation


def fpir_at_watchlist_size(fmr: ArrayLike, n: int) -> np.ndarray:
    """FPIR of a watchlist of ``n`` people from the per-comparison false-match rate.

    FPIR(N) = 1 - (1 - FMR)^N. Assumes a non-mated probe's N comparisons are independent
    and equally likely to false-match (not quite true: some faces are "lookalike-prone",
    which makes real FPIR lower than this for the same mean FMR but burstier per person).
    Computed with log1p/expm1 so FMR ~ 1e-8 does not vanish in rounding.
    """
    f = np.clip(_as_1d(fmr), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.expm1(n * np.log1p(-f))


def fpir_rare_event_approx(fmr: ArrayLike, n: int) -> np.ndarray:
    """N * FMR: the first-order form of FPIR(N), accurate while N * FMR << 1."""
    return n * _as_1d(fmr)


def fmr_for_fpir(target_fpir: float, n: int) -> float:
    """Per-comparison FMR that a watchlist of ``n`` needs for FPIR(N) to equal the target.

    Inverse of ``fpir_at_watchlist_size``: FMR = 1 - (1 - FPIR)^(1/N) (~ FPIR / N).
    """
    if not 0.0 <= target_fpir < 1.0:
        raise ValueError("target FPIR must be in [0, 1)")
    if n < 1:
        raise ValueError("watchlist size must be >= 1")
    return float(-np.expm1(np.log1p(-target_fpir) / n))


# ----------------------------------------------------------------------------- intervals


def binomial_ci(
    k: int, n: int, confidence: float = 0.95, method: str = "clopper-pearson"
) -> tuple[float, float]:
    """Two-sided confidence interval for a rate of ``k`` events in ``n`` trials.

    Clopper-Pearson (exact, default) never undercovers, which matters for rare false
    matches: with k = 0 the upper bound is 1 - (alpha/2)^(1/n) ~ 3.7/n at 95%.
    Wilson is offered for comparison with published tables that use it.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= k <= n:
        raise ValueError("k must be in [0, n]")
    alpha = 1.0 - confidence
    if method == "clopper-pearson":
        lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
        hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
        return lo, hi
    if method == "wilson":
        z = float(norm.ppf(1 - alpha / 2))
        p = k / n
        den = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / den
        half = z / den * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return max(0.0, centre - half), min(1.0, centre + half)
    raise ValueError(f"unknown interval method {method!r}")


@dataclass(frozen=True)
class GroupRate:
    """An error rate for one group with its exact interval and a readable statement."""

    group: str
    k: int
    n: int
    rate: float
    lo: float
    hi: float
    ratio_to_overall: float | None = None  # rate / overall rate; None if overall is 0

    @property
    def text(self) -> str:
        """E.g. '3 of 19,900 = 1.5e-04 (95% CI 3.1e-05-4.4e-04)' or '0 of 19,900 (95% <= 1.9e-04)'."""
        if self.k == 0:
            return f"0 of {self.n:,} (95% upper bound {self.hi:.2g} = {self.hi * self.n:.1f}/n)"
        return f"{self.k:,} of {self.n:,} = {self.rate:.2g} (95% CI {self.lo:.2g}-{self.hi:.2g})"


def rate_with_ci(group: str, k: int, n: int, confidence: float = 0.95) -> GroupRate:
    """A ``GroupRate`` with a Clopper-Pearson interval."""
    lo, hi = binomial_ci(k, n, confidence)
    return GroupRate(group=group, k=int(k), n=int(n), rate=k / n, lo=lo, hi=hi)


@dataclass(frozen=True)
class GroupComparison:
    """Per-group rates against the overall rate: the fairness check of the goal."""

    groups: list[GroupRate]
    overall: GroupRate
    worst: GroupRate
    worst_over_overall: float | None  # None when the overall rate is 0 (nothing to compare)


def compare_groups(
    counts: Mapping[str, tuple[int, int]], overall: tuple[int, int] | None = None,
    confidence: float = 0.95,
) -> GroupComparison:
    """Rates per group (k events of n trials), overall rate and the worst/overall ratio.

    ``overall`` defaults to the pooled counts of all groups.
    """
    if not counts:
        raise ValueError("no groups")
    ok_, on_ = overall if overall is not None else (
        sum(k for k, _ in counts.values()), sum(n for _, n in counts.values())
    )
    ov = rate_with_ci("overall", ok_, on_, confidence)
    rows = []
    for g in sorted(counts):
        k, n = counts[g]
        r = rate_with_ci(g, k, n, confidence)
        ratio = r.rate / ov.rate if ov.rate > 0 else None
        rows.append(GroupRate(r.group, r.k, r.n, r.rate, r.lo, r.hi, ratio))
    worst = max(rows, key=lambda r: (r.rate, r.hi))
    return GroupComparison(
        groups=rows, overall=ov, worst=worst,
        worst_over_overall=(worst.rate / ov.rate) if ov.rate > 0 else None,
    )


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class GroupCalibration:
    """One group's position at the calibrated threshold."""

    group: str
    n_comparisons: int
    own_threshold: float  # lowest threshold this group alone would need
    false_matches: int  # impostor comparisons >= the common threshold
    fmr: float  # empirical FMR at the common threshold
    fmr_ci_hi: float  # 95% Clopper-Pearson upper bound of that FMR
    fpir_at_n: float  # FPIR(N) extrapolated from fmr
    fpir_at_n_ci_hi: float  # FPIR(N) extrapolated from fmr_ci_hi (what the data can vouch for)
    resolvable: bool  # required FMR * n >= 1: the data can see the target at all


@dataclass(frozen=True)
class WorstGroupCalibration:
    """Result of calibrating so that the worst group meets an FPIR target at size N."""

    threshold: float
    target_fpir: float
    watchlist_size: int
    required_fmr: float
    binding_group: str
    groups: list[GroupCalibration]
    binding_groups: list[str] = field(default_factory=list)
    tpir: float | None = None  # at ``threshold``, when mated results were given
    n_mated: int | None = None
    notes: list[str] = field(default_factory=list)


def calibrate_worst_group(
    impostor_scores: Mapping[str, ArrayLike],
    target_fpir: float,
    watchlist_size: int,
    mated_scores: ArrayLike | None = None,
    mated_correct: ArrayLike | None = None,
) -> WorstGroupCalibration:
    """Lowest threshold at which EVERY group's extrapolated FPIR(N) <= ``target_fpir``.

    Each group's impostor scores give an empirical FMR(t); FPIR(N) = 1 - (1 - FMR)^N is
    monotone in FMR, so the per-group condition is FMR_g(t) <= FMR_required, met from the
    group's own threshold upwards. The common threshold is the highest of those: the group
    owning it *binds*. When FMR_required * n_g < 1 a group can only meet the target with zero
    observed false matches, and its true FMR is known only up to ~3.7/n_g (``resolvable`` is
    False): the threshold is then "above every impostor we saw", not a demonstrated rate.
    """
    if not impostor_scores:
        raise ValueError("no groups to calibrate on")
    req = fmr_for_fpir(target_fpir, watchlist_size)
    arrays = {g: _as_1d(s) for g, s in impostor_scores.items()}
    own = {g: threshold_for_rate(a, req) for g, a in arrays.items()}
    t = max(own.values())
    # ties (e.g. a subgroup and the pooled set share their top impostor): the smallest group
    # is named, being the most specific; all tied groups are listed in ``binding_groups``
    tied = sorted((g for g in own if own[g] == t), key=lambda g: (arrays[g].size, g))
    binding = tied[0]
    rows = []
    for g in sorted(arrays):
        a = arrays[g]
        k = int(count_at_or_above(a, [t])[0])
        _, hi = binomial_ci(k, a.size)
        rows.append(GroupCalibration(
            group=g, n_comparisons=int(a.size), own_threshold=own[g], false_matches=k,
            fmr=k / a.size, fmr_ci_hi=hi,
            fpir_at_n=float(fpir_at_watchlist_size(k / a.size, watchlist_size)[0]),
            fpir_at_n_ci_hi=float(fpir_at_watchlist_size(hi, watchlist_size)[0]),
            resolvable=req * a.size >= 1.0,
        ))
    notes = []
    unres = [r.group for r in rows if not r.resolvable]
    if unres:
        notes.append(
            f"required FMR {req:.3g} is below 1/n for {len(unres)} of {len(rows)} groups: "
            "the threshold sits above every impostor score seen in them"
        )
    tp = n_m = None
    if mated_scores is not None:
        if mated_correct is None:
            mated_correct = np.ones(np.asarray(mated_scores).size, dtype=bool)
        tp = float(tpir(mated_scores, mated_correct, [t])[0])
        n_m = int(np.asarray(mated_scores).size)
    return WorstGroupCalibration(
        threshold=t, target_fpir=target_fpir, watchlist_size=watchlist_size, required_fmr=req,
        binding_group=binding, groups=rows, binding_groups=tied, tpir=tp, n_mated=n_m,
        notes=notes,
    )


# ----------------------------------------------------------------------------- tail model


@dataclass(frozen=True)
class TailFit:
    """Generalised-Pareto fit to the top of an impostor score distribution."""

    u: float  # tail starts here (scores above u are modelled)
    q: float  # share of scores above u
    shape: float
    scale: float
    n_tail: int

    def fmr(self, t: ArrayLike) -> np.ndarray:
        """Modelled FMR(t) = q * P(X > t | X > u) for t >= u."""
        tt = _as_1d(t)
        return self.q * genpareto.sf(np.maximum(tt - self.u, 0.0), self.shape, scale=self.scale)

    def threshold_for_fmr(self, fmr: float) -> float:
        """Modelled threshold with FMR = ``fmr`` (may exceed 1.0 for bounded cosines: read as 'no
        threshold reaches it according to this model')."""
        if fmr >= self.q:
            raise ValueError("target FMR is not in the modelled tail; lower tail_fraction")
        return float(self.u + genpareto.isf(fmr / self.q, self.shape, scale=self.scale))


def fit_tail(scores: ArrayLike, tail_fraction: float = 0.01, min_tail: int = 50) -> TailFit:
    """Peaks-over-threshold fit, used ONLY to indicate where FMR ~ 1e-8 may lie.

    An empirical FMR cannot go below 1/n, and 1/6,000 at a 10k watchlist needs FMR ~ 1.7e-8,
    i.e. ~10^8 impostor pairs per group. Extreme-value theory gives an estimate from the
    tail's shape; it is a model, several orders of magnitude beyond the data, and is reported
    as such, never used silently for the written threshold.
    """
    s = np.sort(_as_1d(scores))
    n_tail = max(min_tail, int(round(tail_fraction * s.size)))
    if n_tail >= s.size:
        raise ValueError("too few scores for a tail fit")
    u = float(s[s.size - n_tail - 1])
    exc = s[s.size - n_tail:] - u
    shape, _, scale = genpareto.fit(exc, floc=0.0)
    return TailFit(u=u, q=n_tail / s.size, shape=float(shape), scale=float(scale), n_tail=n_tail)
