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
