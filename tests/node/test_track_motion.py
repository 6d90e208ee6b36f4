"""The tracker at low frame rates and in crowds, on synthetic box sequences (no model).

A slow node processes a 25 fps camera at ~2 fps: frame indices 12 apart, a walker's face
moves more than its own width between two looks. Every fragment of a track is embedded and
decided afresh, so with the cool-down at 0 a fragment is an alert.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import TrackerSection, load_config
from edge.node.track import Track, Tracker, tracking_config

pytestmark = pytest.mark.unit

GAP = 12  # frame indices between two processed frames: 25 fps camera, ~2 fps node


def _boxes(*rows):
    return np.array(rows, np.float32).reshape(-1, 4)


def _ids(tracks):
    return [None if t is None else t.track_id for t in tracks]


def test_a_walker_at_two_fps_keeps_one_track():
    """50 px face, 6 px a frame to the right and 1 px down: 72 px (1.4 face widths) between
    two looks, so the boxes of consecutive looks do not even overlap."""
    tr = Tracker(TrackerSection())
    ids = set()
    for k in range(12):
        f = GAP * k
        ids |= set(_ids(tr.update(_boxes([100 + 6 * f, 300 + f, 50, 50]), f)))
    assert len(ids) == 1
    assert tr.active() == 1


def test_a_walker_towards_the_camera_at_two_fps_keeps_one_track():
    """The face grows from 40 to ~90 px (by ~8% a look) while it drifts down and left."""
    tr = Tracker(TrackerSection())
    ids = set()
    w = 40.0
    x, y = 900.0, 200.0
    for k in range(11):
        ids |= set(_ids(tr.update(_boxes([x, y, w, w]), GAP * k)))
        x -= 30
        y += 20
        w *= 1.08
    assert len(ids) == 1


def test_two_walkers_crossing_at_two_fps_do_not_swap():
    """Two faces of the same size walk towards each other (6 px a frame each, 72 px a look)
    and pass with their boxes overlapping: each keeps its own track after the crossing."""
    tr = Tracker(TrackerSection())
    first = tr.update(_boxes([100, 100, 40, 40], [600, 125, 40, 40]), 0)
    a, b = first[0].track_id, first[1].track_id
    for k in range(1, 9):
        f = GAP * k
        got = tr.update(_boxes([100 + 6 * f, 100, 40, 40], [600 - 6 * f, 125, 40, 40]), f)
        assert _ids(got) == [a, b], f"swapped or lost at frame {f}"


def test_two_walkers_crossing_at_full_rate_do_not_swap():
    tr = Tracker(TrackerSection())
    first = tr.update(_boxes([100, 100, 40, 40], [400, 110, 40, 40]), 0)
    a, b = first[0].track_id, first[1].track_id
    for f in range(1, 60):
        got = tr.update(_boxes([400 - 5 * f, 110, 40, 40], [100 + 5 * f, 100, 40, 40]), f)
        # rows listed the other way round: association must not follow the row order
        assert _ids(got) == [b, a], f"swapped or lost at frame {f}"


def test_a_stranger_appearing_far_from_the_prediction_is_a_new_track():
    tr = Tracker(TrackerSection())
    for k in range(6):
        t = tr.update(_boxes([100 + 6 * GAP * k, 300, 50, 50]), GAP * k)[0]
    # a face 5 widths ahead of where the walker should be, and one of twice its size
    f = GAP * 6
    got = tr.update(_boxes([100 + 6 * f + 250, 300, 50, 50], [100 + 6 * f, 300, 110, 110]), f)
    assert t.track_id not in _ids(got)


def test_a_low_score_detection_continues_a_track_but_never_starts_one():
    tr = Tracker(TrackerSection(), high_score=0.7)
    t = tr.update(_boxes([100, 100, 40, 40]), 0, np.array([0.9]))[0]
    # the face turns away (score 0.55) while a low-score blob appears somewhere else
    got = tr.update(_boxes([104, 100, 40, 40], [600, 400, 40, 40]), 1, np.array([0.55, 0.6]))
    assert got[0] is t and got[1] is None
    assert tr.active() == 1
    assert not tr.embeddable(0.55) and tr.embeddable(0.9)


def test_low_score_detections_keep_a_track_alive_through_a_turned_head():
    """Ten frames of low-score detections (past max_missed_frames = 5): the track goes on;
    without them (the detector at its own threshold) the face comes back as a new track."""
    cfg = TrackerSection(max_missed_frames=5, max_missed_detections=2)
    with_low, without = Tracker(cfg, high_score=0.7), Tracker(cfg, high_score=0.7)
    a = with_low.update(_boxes([100, 100, 40, 40]), 0, np.array([0.9]))[0]
    b = without.update(_boxes([100, 100, 40, 40]), 0, np.array([0.9]))[0]
    for f in range(1, 11):
        with_low.update(_boxes([100 + 2 * f, 100, 40, 40]), f, np.array([0.5]))
        without.update(_boxes(), f, np.array([]))
    back = _boxes([122, 100, 40, 40])
    assert with_low.update(back, 11, np.array([0.9]))[0] is a
    assert without.update(back, 11, np.array([0.9]))[0].track_id != b.track_id


def test_a_track_at_two_fps_survives_missed_looks_then_ends():
    """max_missed_frames (10) is less than one gap: the number of missed detector runs
    decides, so a face missed on 2 looks is found again, one missed on 3 is not."""
    cfg = TrackerSection(max_missed_frames=10, max_missed_detections=2)
    tr = Tracker(cfg)
    a = tr.update(_boxes([100, 100, 50, 50]), 0)[0]
    tr.update(_boxes(), GAP)
    tr.update(_boxes(), 2 * GAP)
    assert tr.update(_boxes([100, 100, 50, 50]), 3 * GAP)[0] is a
    for k in (4, 5, 6):
        tr.update(_boxes(), k * GAP)
    assert tr.active() == 0
    assert tr.update(_boxes([100, 100, 50, 50]), 7 * GAP)[0] is not a


def test_at_full_rate_frames_decide_when_a_track_ends():
    tr = Tracker(TrackerSection(max_missed_frames=10, max_missed_detections=2))
    a = tr.update(_boxes([100, 100, 50, 50]), 0)[0]
    for f in range(1, 12):
        tr.update(_boxes(), f)
    assert tr.update(_boxes([100, 100, 50, 50]), 12)[0] is not a


def test_disabled_tracker_gives_each_confident_face_its_own_track():
    tr = Tracker(TrackerSection(enabled=False), high_score=0.7)
    got = tr.update(_boxes([100, 100, 40, 40], [300, 100, 40, 40]), 0, np.array([0.9, 0.5]))
    assert got[0] is not None and got[1] is None
    assert tr.active() == 0


def test_a_track_keeps_only_boxes_motion_and_scores():
    """No appearance feature: after tracking and scoring, a track's arrays are its box and its
    8-dim Kalman state, nothing with the size of an image, crop, landmarks or embedding."""
    tr = Tracker(TrackerSection())
    t = tr.update(_boxes([100, 100, 50, 50]), 0)[0]
    tr.update(_boxes([106, 100, 50, 50]), 1)
    t.add_score("S1", 0, 0.7, 42.0)
    arrays = {k: v.shape for k, v in vars(t).items() if isinstance(v, np.ndarray)}
    assert arrays == {"box": (4,), "mean": (8,), "cov": (8, 8)}
    for look in t.looks:
        assert {type(v) for v in vars(look).values()} <= {float, str}


def test_fused_uses_the_best_quality_faces_not_the_best_scores():
    t = Track(1, np.zeros(4, np.float32), 0, 0)
    t.add_score("S1", 0, 0.91, quality=12.0)  # a small, turned face: a lucky high score
    t.add_score("S1", 0, 0.52, quality=80.0)
    t.add_score("S1", 0, 0.58, quality=75.0)
    assert t.fused("S1", 2) == pytest.approx(0.55)  # top-2 by score would be 0.745
    assert t.fused("S1", 3) == pytest.approx((0.91 + 0.52 + 0.58) / 3)
    assert t.fused("S1", 4) == 0.0  # fewer embeddings than k: no decision yet
    assert t.fused("S1", 1) == pytest.approx(0.91)  # k = 1: any one face may decide


def test_fused_counts_only_the_looks_that_named_the_subject():
    t = Track(1, np.zeros(4, np.float32), 0, 0)
    t.add_score("S1", 0, 0.8, quality=20.0)
    t.add_score("S2", 1, 0.4, quality=90.0)
    assert t.fused("S1", 2) == 0.0  # only one look named S1
    t.add_score("S1", 0, 0.6, quality=50.0)
    t.add_score("S1", 0, 0.3, quality=10.0)
    assert t.fused("S1", 2) == pytest.approx(0.7)  # S2's better face is not counted
    assert t.fused("S2", 1) == pytest.approx(0.4)


def test_fused_with_equal_quality_is_the_former_top_k_by_score():
    t = Track(1, np.zeros(4, np.float32), 0, 0)
    for v in (0.2, 0.9, 0.5):
        t.add_score("X", 0, v)
    assert t.fused("X", 2) == pytest.approx(0.7)


def test_only_the_nodes_detector_keeps_low_score_faces():
    cfg = load_config()
    low = tracking_config(cfg)
    assert low.detector.score_threshold == cfg.tracker.low_score_threshold
    assert low.detector.score_threshold < cfg.detector.score_threshold
    assert cfg.detector.score_threshold == 0.7  # the caller's config is not changed
    off = load_config(overrides={"tracker": {"enabled": False}})
    assert tracking_config(off).detector.score_threshold == off.detector.score_threshold
