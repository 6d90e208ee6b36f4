"""Evaluation maths against small cases worked out by hand (numbers in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.lab.evaluation import metrics as M

pytestmark = pytest.mark.unit

# A toy open-set experiment used by several tests.
# Mated searches (top-1 score, top-1 is the right subject):
#   0.9 right, 0.8 right, 0.7 WRONG, 0.6 right, 0.3 right
MATED = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
CORRECT = np.array([True, True, False, True, True])
# Non-mated searches (top-1 score): 0.75, 0.65, 0.5, 0.4, 0.2, 0.1, 0.05, 0.0
NONMATED = np.array([0.75, 0.65, 0.5, 0.4, 0.2, 0.1, 0.05, 0.0])


def test_tpir_counts_only_right_identity_above_threshold() -> None:
    # t=0.65: right & >=0.65 -> 0.9, 0.8 (0.7 is the wrong subject) -> 2/5 = 0.4
    # t=0.5 : 0.9, 0.8, 0.6 -> 3/5 = 0.6 ; t=0.0: all 4 right ones -> 0.8 (never 1.0)
    assert M.tpir(MATED, CORRECT, [0.65, 0.5, 0.0]).tolist() == pytest.approx([0.4, 0.6, 0.8])


def test_fpir_is_share_of_nonmated_at_or_above() -> None:
    # t=0.65: 0.75, 0.65 -> 2/8 ; t=0.5: +0.5 -> 3/8 ; t=0.8: none -> 0
    assert M.fpir(NONMATED, [0.65, 0.5, 0.8]).tolist() == pytest.approx([0.25, 0.375, 0.0])


def test_threshold_for_fpir_is_just_above_the_k_plus_1th_score() -> None:
    # target 0.25 of 8 searches -> k = 2 false alarms allowed; the 3rd highest score is 0.5,
    # so the threshold must be just above 0.5 (then 0.75 and 0.65 alarm: FPIR exactly 0.25).
    t = M.threshold_for_fpir(NONMATED, 0.25)
    assert t > 0.5 and t == pytest.approx(0.5, abs=1e-12)
    assert M.fpir(NONMATED, [t])[0] == 0.25
    # target 0.2 -> k = floor(1.6) = 1 -> above the 2nd highest (0.65)
    assert M.threshold_for_fpir(NONMATED, 0.2) == pytest.approx(0.65, abs=1e-12)
    # target 0 -> above everything (0.75)
    t0 = M.threshold_for_fpir(NONMATED, 0.0)
    assert t0 > 0.75 and M.fpir(NONMATED, [t0])[0] == 0.0


def test_threshold_with_ties_never_exceeds_target() -> None:
    # scores 0.5, 0.5, 0.5, 0.1 ; target 0.25 -> k=1, but the tie at 0.5 means any threshold
    # admitting one 0.5 admits three: the only valid choice is above 0.5 (FPIR 0).
    s = [0.5, 0.5, 0.5, 0.1]
    t = M.threshold_for_fpir(s, 0.25)
    assert t > 0.5 and M.fpir(s, [t])[0] == 0.0


def test_tpir_at_fpir_targets() -> None:
    # FPIR 0.25 -> t just above 0.5 -> right & > 0.5: 0.9, 0.8, 0.6 -> TPIR 3/5 = 0.6
    # FPIR 0.125 -> k = 1 -> t just above 0.65 -> 0.9, 0.8 -> 0.4
    pts = M.tpir_at_fpir(MATED, CORRECT, NONMATED, [0.25, 0.125])
    assert [p.tpir for p in pts] == pytest.approx([0.6, 0.4])
    assert [p.false_alarms for p in pts] == [2, 1]
    assert all(p.resolvable for p in pts)
    # 1/100 with only 8 non-mated searches cannot be shown: flagged as unresolvable
    assert not M.tpir_at_fpir(MATED, CORRECT, NONMATED, [0.01])[0].resolvable


def test_det_curve_endpoints_and_monotonic() -> None:
    det = M.det_curve(MATED, CORRECT, NONMATED)
    # lowest threshold (0.0) admits everything: FPIR 1, FNIR = 1 - 0.8 (one wrong id) = 0.2
    assert det.fpir[0] == 1.0 and det.fnir[0] == pytest.approx(0.2)
    # one above all scores: nothing alarms, nothing is found
    assert det.fpir[-1] == 0.0 and det.fnir[-1] == 1.0
    assert np.all(np.diff(det.fpir) <= 0) and np.all(np.diff(det.fnir) >= 0)
    # at t = 0.6 (a sweep point): FPIR = 2/8 (0.75, 0.65), FNIR = 1 - 3/5 = 0.4
    i = int(np.where(det.thresholds == 0.6)[0][0])
    assert det.fpir[i] == pytest.approx(0.25) and det.fnir[i] == pytest.approx(0.4)


def test_best_accuracy_threshold_and_kfold() -> None:
    # fold 1: same 0.9, 0.6 ; different 0.5, 0.1
    # fold 2: same 0.8, 0.3 ; different 0.4, 0.2
    scores = [0.9, 0.6, 0.5, 0.1, 0.8, 0.3, 0.4, 0.2]
    same = [1, 1, 0, 0, 1, 1, 0, 0]
    folds = [1, 1, 1, 1, 2, 2, 2, 2]
    # Held out fold 1 -> fit on fold 2 (sorted 0.2d 0.3s 0.4d 0.8s). Candidates and accuracy:
    #   0.2 ->2/4, 0.25 ->3/4, 0.35 ->2/4, 0.6 ->3/4, >0.8 ->2/4 : first best = 0.25.
    #   Fold 1 at 0.25: 0.9 ok, 0.6 ok, 0.5 (diff) wrongly accepted, 0.1 ok -> 3/4.
    # Held out fold 2 -> fit on fold 1 (0.1d 0.5d 0.6s 0.9s): 0.55 separates perfectly (4/4).
    #   Fold 2 at 0.55: 0.8 ok, 0.3 (same) missed, 0.4 ok, 0.2 ok -> 3/4.
    t, acc = M.best_accuracy_threshold(scores[4:], same[4:])
    assert (t, acc) == (pytest.approx(0.25), 0.75)
    r = M.kfold_verification_accuracy(scores, same, folds)
    assert r.fold_threshold == pytest.approx([0.25, 0.55])
    assert r.fold_accuracy == [0.75, 0.75]
    assert r.mean == 0.75 and r.std == 0.0


def test_kfold_std_is_population_std() -> None:
    # fold 1 is separable at anything in (0.4, 0.6); fold 2 likewise -> both 100%;
    # fold 3: same 0.45, different 0.55 -> with the threshold from folds 1+2 (0.5) both
    # are wrong -> 0%. Mean 2/3, population std = sqrt(((1/3)^2*2 + (2/3)^2)/3) = 0.4714
    scores = [0.6, 0.4, 0.6, 0.4, 0.45, 0.55]
    same = [1, 0, 1, 0, 1, 0]
    folds = [1, 1, 2, 2, 3, 3]
    r = M.kfold_verification_accuracy(scores, same, folds)
    assert r.fold_accuracy[2] == 0.0
    assert r.mean == pytest.approx(2 / 3)
    assert r.std == pytest.approx(math.sqrt(2 / 9), abs=1e-12)


def test_extrapolation_to_watchlist_size() -> None:
    # FMR 0.5, N 2: 1 - 0.5^2 = 0.75 ; FMR 0.1, N 3: 1 - 0.9^3 = 0.271
    assert M.fpir_at_watchlist_size([0.5, 0.1], 2)[0] == pytest.approx(0.75)
    assert M.fpir_at_watchlist_size([0.1], 3)[0] == pytest.approx(0.271)
    # rare-event approximation N*FMR: 1e-8 * 1e4 = 1e-4, and exact is within 1e-8 of it
    assert M.fpir_rare_event_approx([1e-8], 10_000)[0] == pytest.approx(1e-4)
    assert M.fpir_at_watchlist_size([1e-8], 10_000)[0] == pytest.approx(1e-4, rel=1e-4)
    # inverse: FPIR 0.75 at N=2 needs FMR 0.5 ; goal 1/6000 at 10k needs
    # 1 - (5999/6000)^(1/10000) = 1.66681e-8 (~ 1/6000/10000 = 1.66667e-8)
    assert M.fmr_for_fpir(0.75, 2) == pytest.approx(0.5)
    assert M.fmr_for_fpir(1 / 6000, 10_000) == pytest.approx(1.666805e-8, rel=1e-5)


def test_clopper_pearson_and_wilson() -> None:
    # k=0, n=100: upper = 1 - 0.025^(1/100) = 1 - exp(ln 0.025 / 100) = 0.036217
    assert M.binomial_ci(0, 100) == (0.0, pytest.approx(0.036217, abs=1e-6))
    # k=n=10: lower = 0.025^(1/10) = 0.691503
    assert M.binomial_ci(10, 10) == (pytest.approx(0.691503, abs=1e-6), 1.0)
    # 5 of 10 exact interval (standard table): 0.1871 - 0.8129
    lo, hi = M.binomial_ci(5, 10)
    assert (lo, hi) == (pytest.approx(0.18709, abs=1e-4), pytest.approx(0.81291, abs=1e-4))
    # Wilson 5 of 10, z=1.96: centre 0.5, half-width 1.96/1.38415*sqrt(0.025+0.009604)=0.26341
    lo, hi = M.binomial_ci(5, 10, method="wilson")
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-4), pytest.approx(0.76341, abs=1e-4))


def test_group_comparison_ratio_and_zero_text() -> None:
    # A: 2 of 100, B: 6 of 100, C: 0 of 200 -> pooled 8 of 400 = 0.02; worst B 0.06 -> 3x
    g = M.compare_groups({"A": (2, 100), "B": (6, 100), "C": (0, 200)})
    assert g.overall.rate == pytest.approx(0.02)
    assert g.worst.group == "B" and g.worst_over_overall == pytest.approx(3.0)
    c = next(r for r in g.groups if r.group == "C")
    # 0 of 200: upper bound 1 - 0.025^(1/200) = 0.018275 = 3.7/n
    assert c.hi == pytest.approx(0.018275, abs=1e-5)
    assert c.text.startswith("0 of 200 (95% upper bound") and "3.7/n" in c.text
    # with nothing observed anywhere the ratio is undefined, not 0 or inf
    assert M.compare_groups({"A": (0, 10)}).worst_over_overall is None


def test_worst_group_calibration_hand_case() -> None:
    # Target FPIR 0.75 at N=2 -> required FMR = 1 - 0.25^(1/2) = 0.5.
    # Group A impostors 0.4 0.3 0.2 0.1: k=floor(0.5*4)=2 allowed -> own t just above 0.2
    # Group B impostors 0.6 0.15 0.1 0.05: k=2 -> own t just above 0.1
    # Common threshold = max = just above 0.2 -> A binds.
    # At it: A has 0.4, 0.3 -> FMR 0.5 -> FPIR(2) = 1 - 0.5^2 = 0.75 (exactly the target)
    #        B has 0.6      -> FMR 0.25 -> FPIR(2) = 1 - 0.75^2 = 0.4375
    # Mated 0.9 ok, 0.25 ok, 0.21 WRONG, 0.15 ok -> found above t: 0.9, 0.25 -> TPIR 2/4
    cal = M.calibrate_worst_group(
        {"A": [0.4, 0.3, 0.2, 0.1], "B": [0.6, 0.15, 0.1, 0.05]},
        target_fpir=0.75, watchlist_size=2,
        mated_scores=[0.9, 0.25, 0.21, 0.15], mated_correct=[True, True, False, True],
    )
    assert cal.required_fmr == pytest.approx(0.5)
    assert cal.binding_group == "A"
    assert cal.threshold > 0.2 and cal.threshold == pytest.approx(0.2, abs=1e-12)
    a, b = cal.groups
    assert (a.false_matches, a.fmr, a.fpir_at_n) == (2, 0.5, pytest.approx(0.75))
    assert (b.false_matches, b.fmr, b.fpir_at_n) == (1, 0.25, pytest.approx(0.4375))
    assert b.own_threshold == pytest.approx(0.1, abs=1e-12)
    assert cal.tpir == 0.5
    assert all(g.resolvable for g in cal.groups) and not cal.notes


def test_calibration_flags_targets_below_resolution() -> None:
    # 10 impostor scores cannot show FMR 1e-3: the threshold goes above the maximum (0.9)
    # and the group is marked unresolvable.
    s = np.linspace(0.0, 0.9, 10)
    cal = M.calibrate_worst_group({"g": s}, target_fpir=1e-3, watchlist_size=1)
    assert cal.threshold > 0.9 and cal.groups[0].false_matches == 0
    assert not cal.groups[0].resolvable and cal.notes
    # what the data can vouch for: upper bound of 0 of 10 = 1 - 0.025^(0.1) = 0.3085
    assert cal.groups[0].fmr_ci_hi == pytest.approx(0.30850, abs=1e-4)


def test_calibration_tie_names_the_smaller_group() -> None:
    # "all" holds every score of "sub" plus lower ones: both top out at 0.8, so both need
    # a threshold just above 0.8; the smaller, more specific group is named as binding.
    cal = M.calibrate_worst_group({"all": [0.8, 0.3, 0.2, 0.1], "sub": [0.8, 0.1]}, 0.0, 1)
    assert cal.binding_group == "sub" and cal.binding_groups == ["sub", "all"]


def test_tail_fit_recovers_exponential_tail() -> None:
    # Exponential scores have a GPD tail with shape 0 and scale = mean (memoryless), so
    # FMR(t) = exp(-t/0.1) and FMR 1e-6 sits at t = 0.1 * ln(1e6) = 1.3816.
    rng = np.random.default_rng(0)
    s = rng.exponential(0.1, 200_000)
    fit = M.fit_tail(s, tail_fraction=0.01)
    assert abs(fit.shape) < 0.1
    assert fit.threshold_for_fmr(1e-6) == pytest.approx(1.3816, abs=0.08)
