"""Tracker logic that needs no model: a quality gate can delay a track's embedding, never hide it."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import TrackerSection
from edge.node.track import Tracker

pytestmark = pytest.mark.unit


def _track(tr: Tracker, width: float, frame: int = 0):
    return tr.update(np.array([[100, 100, width, width]], np.float32), frame)[0]


def test_gate_is_overridden_after_n_gated_faces_on_the_biggest_face():
    tr = Tracker(TrackerSection(embed_gated_after=3))
    t = _track(tr, 60)
    for w in (60, 70, 65):
        assert not tr.gate_overridden(t)
        t.box[2] = w
        tr.gated(t)
    t.box[2] = 60  # clearly smaller than the widest gated face (70): wait for a better one
    assert not tr.gate_overridden(t)
    t.box[2] = 66  # within the jitter of a still face's box
    assert tr.gate_overridden(t)


def test_gate_is_overridden_whatever_the_face_after_twice_n():
    tr = Tracker(TrackerSection(embed_gated_after=3))
    t = _track(tr, 80)
    for _ in range(6):
        tr.gated(t)
    t.box[2] = 20
    assert tr.gate_overridden(t)


def test_embedding_resets_the_gated_run():
    tr = Tracker(TrackerSection(embed_gated_after=2))
    t = _track(tr, 50)
    tr.gated(t)
    tr.gated(t)
    assert tr.gate_overridden(t)
    tr.embedded(t, 5)
    assert t.gated == 0 and not tr.gate_overridden(t)


def test_zero_disables_the_override():
    tr = Tracker(TrackerSection(embed_gated_after=0))
    t = _track(tr, 50)
    for _ in range(100):
        tr.gated(t)
    assert not tr.gate_overridden(t)


def _boxes(*rows):
    return np.array(rows, np.float32).reshape(-1, 4)


def test_a_walker_seen_every_sixth_frame_keeps_one_track():
    """A 30 px face moving 4 px a frame moves 24 px between two detections at interval 6:
    IoU with its unmoved box is 0.1, so IoU alone would start a new track every time."""
    tr = Tracker(TrackerSection(), interval=6)
    first = tr.update(_boxes([100, 100, 30, 30], [400, 100, 30, 30]), 0)
    ids = [t.track_id for t in first]
    for step in range(1, 6):
        f = 6 * step
        got = tr.update(_boxes([100 + 4 * f, 100, 30, 30], [400, 100, 30, 30]), f)
        assert [t.track_id for t in got] == ids, f"track lost at frame {f}"
    walker = first[0]
    assert abs(float(walker.velocity[0]) - 4.0) < 0.5  # the motion model has learnt its speed
    # a face far away, or of another size, is somebody else
    got = tr.update(_boxes([100 + 4 * 36 + 90, 100, 30, 30], [400, 100, 70, 70]), 36)
    assert all(t.track_id not in ids for t in got)


def test_a_jump_of_most_of_a_face_on_the_next_frame_is_another_face():
    tr = Tracker(TrackerSection(), interval=6)
    a = tr.update(_boxes([100, 100, 30, 30]), 0)[0]
    b = tr.update(_boxes([125, 100, 30, 30]), 1)[0]  # IoU 0.09 on the next frame: not the same face
    assert a.track_id != b.track_id


def test_the_same_move_over_a_longer_gap_is_the_same_face():
    """The search widens with the gap since a track was seen: 25 px in one frame is a jump,
    25 px in 4 frames is a walker (6 px a frame) - at interval 1 too."""
    tr = Tracker(TrackerSection())
    a = tr.update(_boxes([100, 100, 30, 30]), 0)[0]
    assert tr.update(_boxes([125, 100, 30, 30]), 4)[0].track_id == a.track_id


def test_two_missed_detections_do_not_end_a_track_at_interval_six():
    tr = Tracker(TrackerSection(max_missed_frames=10), interval=6)
    a = tr.update(_boxes([100, 100, 40, 40]), 0)[0]
    tr.update(_boxes(), 6)
    tr.update(_boxes(), 12)
    assert tr.update(_boxes([100, 100, 40, 40]), 18)[0].track_id == a.track_id
