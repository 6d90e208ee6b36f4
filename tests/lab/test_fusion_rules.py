"""The fusion study's per-track maths (benchmarks/fusion_study.py) on hand-computed cases:
the node's track rule replayed, TPIR from hit intervals, the vectorised fused score, impostor
score padding, the video-like perturbation and the multi-photo pseudo-tracks."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import fusion_study as F  # noqa: E402

from edge.node.track import Track  # noqa: E402

pytestmark = pytest.mark.unit

# ----------------------------------------------------------------------------- the track rule


def test_track_events_follow_the_node_rule() -> None:
    frames = [("A", 0.5), ("B", 0.7), ("A", 0.6), ("A", 0.3)]
    # m = 1: the fused score is the best single score so far for that subject
    assert F.track_events(frames, 1) == [("A", 0.5), ("B", 0.7), ("A", 0.6), ("A", 0.6)]
    # m = 2: 0 until a subject has two scores, then the mean of its best two
    ev = F.track_events(frames, 2)
    assert [s for s, _ in ev] == ["A", "B", "A", "A"]
    assert [round(f, 6) for _, f in ev] == [0.0, 0.0, 0.55, 0.55]
    # m = 3: A's three scores 0.5, 0.6, 0.3 -> 0.4667
    assert F.track_events(frames, 3)[-1][1] == pytest.approx((0.5 + 0.6 + 0.3) / 3)


def test_first_alert_and_alarm_score() -> None:
    ev = F.track_events([("A", 0.5), ("B", 0.7), ("A", 0.6)], 1)
    assert F.first_alert(ev, 0.45) == "A"  # A reaches it first
    assert F.first_alert(ev, 0.55) == "B"  # A's 0.5 misses, B's 0.7 comes next
    assert F.first_alert(ev, 0.65) == "B"
    assert F.first_alert(ev, 0.75) is None
    assert F.alarm_score(ev) == 0.7
    assert F.alarm_score([]) == -math.inf


def test_hit_intervals_hand_computed() -> None:
    ev = F.track_events([("A", 0.5), ("B", 0.7), ("A", 0.6)], 1)
    # A alerts first for t <= 0.5; A's 0.6 never comes first (B's 0.7 precedes it)
    assert F.hit_intervals(ev, "A") == [(-math.inf, 0.5)]
    assert F.hit_intervals(ev, "B") == [(0.5, 0.7)]
    assert F.hit_intervals(ev, "C") == []
    # two tracks: one right (A at 0.8), one wrong then right: (0.4, 0.9]
    t1 = F.hit_intervals(F.track_events([("A", 0.8)], 1), "A")
    t2 = F.hit_intervals(F.track_events([("B", 0.4), ("A", 0.9)], 1), "A")
    th = [0.3, 0.4, 0.41, 0.8, 0.85, 0.9, 0.95]
    got = F.tpir_from_intervals(t1 + t2, 2, th)
    np.testing.assert_allclose(got, [0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 0.0])
    with pytest.raises(ValueError):
        F.tpir_from_intervals([], 0, [0.5])


def test_intervals_agree_with_simulating_the_node() -> None:
    """TPIR read off the intervals equals deciding every track at every threshold."""
    rng = np.random.default_rng(7)
    subjects = ["A", "B", "C"]
    tracks = [[(subjects[rng.integers(3)], float(rng.uniform(0, 1))) for _ in range(rng.integers(0, 6))]
              for _ in range(300)]
    grid = np.linspace(0.0, 1.0, 101)
    for m in (1, 2, 3):
        events = [F.track_events(t, m) for t in tracks]
        intervals = [iv for ev in events for iv in F.hit_intervals(ev, "A")]
        brute = [np.mean([F.first_alert(ev, t) == "A" for ev in events]) for t in grid]
        np.testing.assert_allclose(F.tpir_from_intervals(intervals, len(tracks), grid), brute)
        alarms = np.array([F.alarm_score(ev) for ev in events])
        brute_fa = [np.mean([F.first_alert(ev, t) is not None for ev in events]) for t in grid]
        np.testing.assert_allclose([np.mean(alarms >= t) for t in grid], brute_fa)


def test_fused_matrix_equals_track_fused() -> None:
    """The vectorised form used for millions of comparisons is the node's Track.fused."""
    rng = np.random.default_rng(3)
    s = rng.uniform(-0.2, 1.0, (500, 5)).astype(np.float32)
    s[rng.uniform(size=s.shape) < 0.25] = np.nan  # frames without a face
    for k in range(1, 6):
        for m in (1, 2, 3):
            got = F.fused_matrix(s[:, :k], m)
            for r in range(s.shape[0]):
                t = Track(0, np.zeros(4, np.float32), 0, 0)
                for v in s[r, :k]:
                    if not np.isnan(v):
                        t.add_score("X", 0, float(v))
                n_ok = int(np.sum(~np.isnan(s[r, :k])))
                if n_ok < m:
                    assert np.isnan(got[r])  # Track.fused gives 0.0: never alerts
                    assert t.fused("X", m) == 0.0
                else:
                    assert got[r] == pytest.approx(t.fused("X", m), abs=1e-6)
    # hand case: best two of (0.2, 0.9, nan, 0.5) = 0.7
    assert F.fused_matrix(np.array([[0.2, 0.9, np.nan, 0.5]]), 2)[0] == pytest.approx(0.7)


def test_impostor_scores_counts_and_padding() -> None:
    s = F.ImpostorScores(n=10, kept=np.array([0.3, 0.5, 0.8], np.float32), floor=0.2)
    assert s.count_ge(0.5) == 2 and s.count_ge(0.81) == 0 and s.count_ge(0.2) == 3
    with pytest.raises(ValueError):
        s.count_ge(0.1)
    p = s.padded()
    assert p.size == 10 and np.sum(p >= 0.5) == 2 and p.max() == pytest.approx(0.8)


def test_video_like_frames_are_deterministic_and_mild() -> None:
    img = np.full((150, 150, 3), 120, np.uint8)
    cv2.circle(img, (75, 75), 40, (30, 60, 200), -1)
    a, pa = F.video_like_frame(img, F.frame_rng("x.jpg", 1))
    b, pb = F.video_like_frame(img, F.frame_rng("x.jpg", 1))
    c, _ = F.video_like_frame(img, F.frame_rng("x.jpg", 2))
    assert np.array_equal(a, b) and np.array_equal(pa, pb) and not np.array_equal(a, c)
    assert a.shape == img.shape
    assert 0.92 <= pa[2] <= 1.08 and 35 <= pa[8] <= 90


def test_multi_photo_tracks_are_disjoint_and_searched_both_ways() -> None:
    ident = np.array(["A"] * 7 + ["B"] * 3 + ["C"] * 11, dtype=object)
    names = [f"{x}_{i:04d}.jpg" for i, x in enumerate(ident)]
    mated = np.array([i for i in range(len(ident)) if i not in (0, 7, 10)])  # first = enrolled
    h = SimpleNamespace(pool=SimpleNamespace(identity=ident, names=names), mated=mated)
    m, n = F.multi_photo_tracks(h, 5)
    # A: 6 probes -> 1 track; B: 2 probes -> none; C: 10 probes -> 2 tracks
    assert [t.identity for t in m] == ["A", "C", "C"]
    assert all(t.mated for t in m) and not any(t.mated for t in n)
    assert [t.frames for t in m] == [t.frames for t in n]
    used = [p for t in m for p, f in t.frames]
    assert len(used) == len(set(used)) == 15 and all(f == 0 for t in m for _, f in t.frames)
    assert all(ident[p] == t.identity for t in m for p, _ in t.frames)
    assert not set(used) & {0, 7, 10}  # enrolment images are never probes
    # deterministic
    assert [t.frames for t in F.multi_photo_tracks(h, 5)[0]] == [t.frames for t in m]
