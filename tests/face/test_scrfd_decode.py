"""SCRFD's anchor decoding on hand-made output maps (model-free)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.face.detectors.rows import ROW
from edge.face.detectors.scrfd import decode_level

pytestmark = pytest.mark.unit

STRIDE, COLS, ROWS, ANCHORS = 8, 4, 3, 2


def _maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = COLS * ROWS * ANCHORS
    return (np.zeros(count, np.float32), np.zeros((count, 4), np.float32),
            np.zeros((count, 10), np.float32))


def test_a_candidate_decodes_from_its_cell_centre_in_strides():
    score, box, pts = _maps()
    i = (1 * COLS + 2) * ANCHORS + 1  # grid row 1, column 2, second anchor: centre (16, 8)
    score[i] = 0.9
    box[i] = (1.0, 0.5, 2.0, 1.5)  # left, top, right, bottom distances, in strides
    pts[i] = np.arange(10, dtype=np.float32) / 10.0
    out = np.zeros((16, ROW), np.float32)
    assert decode_level(STRIDE, COLS, ANCHORS, score, box, pts, 0.5, out) == 1
    x, y = 16 - 8.0, 8 - 4.0
    np.testing.assert_allclose(out[0, :4], (x, y, 24.0, 16.0))  # x1, y1, w = (1 + 2) * 8, h
    want = [(16 + 8 * pts[i, 2 * p], 8 + 8 * pts[i, 2 * p + 1]) for p in range(5)]
    np.testing.assert_allclose(out[0, 4:14], np.ravel(want), rtol=1e-6)
    assert out[0, 14] == pytest.approx(0.9)
    assert not out[1:].any()


def test_threshold_and_capacity_keep_the_best_candidates():
    score, box, pts = _maps()
    score[[3, 7, 11, 20]] = (0.6, 0.95, 0.4, 0.8)
    out = np.zeros((2, ROW), np.float32)
    assert decode_level(STRIDE, COLS, ANCHORS, score, box, pts, 0.5, out) == 2
    assert sorted(out[:, 14].tolist()) == pytest.approx([0.8, 0.95])  # 0.6 dropped for room, 0.4 below
    assert decode_level(STRIDE, COLS, ANCHORS, score, box, pts, 0.99, out) == 0
    assert decode_level(STRIDE, COLS, ANCHORS, score, box, pts, 0.5, out[:0]) == 0


def test_one_anchor_layout_maps_rows_to_cells_one_to_one():
    score = np.zeros(COLS * ROWS, np.float32)
    box = np.zeros((COLS * ROWS, 4), np.float32)
    pts = np.zeros((COLS * ROWS, 10), np.float32)
    score[COLS * 2 + 3] = 0.7  # grid row 2, column 3: centre (24, 16) at stride 8
    out = np.zeros((4, ROW), np.float32)
    assert decode_level(STRIDE, COLS, 1, score, box, pts, 0.5, out) == 1
    assert out[0, :2].tolist() == [24.0, 16.0] and out[0, 4:6].tolist() == [24.0, 16.0]
