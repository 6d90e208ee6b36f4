"""The node with stand-in models: low-score detections move tracks on and are never embedded."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import load_config
from edge.face.registry import FaceModels
from edge.node.pipeline import Node, face_quality
from edge.node.sources import Frame
from edge.privacy import FaceBuffers
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta

pytestmark = pytest.mark.unit

DIM = 8


class RowsDetector:
    """Writes the rows it is given for each frame (box, score), landmarks inside the box."""

    input_size = (320, 240)

    def __init__(self) -> None:
        self.rows: list[tuple[list[float], float]] = []

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        for i, (box, score) in enumerate(self.rows):
            x, y, w, h = box
            bufs.boxes[i] = box
            bufs.scores[i] = score
            bufs.landmarks[i] = [[x + 0.3 * w, y + 0.4 * h], [x + 0.7 * w, y + 0.4 * h],
                                 [x + 0.5 * w, y + 0.6 * h], [x + 0.35 * w, y + 0.8 * h],
                                 [x + 0.65 * w, y + 0.8 * h]]
        bufs.n = len(self.rows)
        return bufs.n


class UnitEmbedder:
    """Every crop embeds to the same unit vector (the enrolled subject's)."""

    dim = DIM
    input_size = 112
    providers = ["CPUExecutionProvider"]

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, bufs: FaceBuffers, n: int) -> int:
        self.calls += n
        bufs.emb[:n] = 0.0
        bufs.emb[:n, 0] = 1.0
        return n


def _node() -> tuple[Node, RowsDetector, UnitEmbedder]:
    cfg = load_config(overrides={"alerts": {"console": False, "cooldown_s": 0.0},
                                 "privacy": {"lock_memory": False},
                                 "quality": {"enabled": False}})
    emb = np.zeros((1, DIM), np.float32)
    emb[0, 0] = 1.0
    wl = Watchlist(WatchlistMeta(deployment_id="t"), {"S1": Subject("S1", "S 1", "t")},
                   [Entry("S1/1", "S1", "ref.jpg")], emb)
    det, embedder = RowsDetector(), UnitEmbedder()
    return Node(cfg, wl, FaceModels(det, embedder)), det, embedder


def _frame(node: Node, index: int) -> Frame:
    node.ring.ensure_shape((240, 320, 3))
    slot = node.ring.acquire(timeout=5)
    assert slot is not None
    img = node.ring.slot(slot)
    img[:] = 128
    return Frame(index, 0.0, slot, img)


def test_low_score_rows_continue_tracks_but_are_never_embedded_or_counted():
    node, det, embedder = _node()
    det.rows = [([40, 40, 60, 60], 0.55)]  # a low-score face alone: no track, no embedding
    assert node.process(_frame(node, 0)) == []
    assert embedder.calls == 0 and node.tracker.active() == 0 and node.stats.faces_seen == 0
    det.rows = [([40, 40, 60, 60], 0.9), ([200, 40, 60, 60], 0.6)]
    alerts = node.process(_frame(node, 1))
    assert embedder.calls == 1 and len(alerts) == 1 and node.stats.faces_seen == 1
    track_id = alerts[0].track_id
    det.rows = [([43, 40, 60, 60], 0.5)]  # the same face, turned: it carries the track
    node.process(_frame(node, 2))
    assert [t.track_id for t in node.tracker.tracks] == [track_id]
    assert embedder.calls == 1
    assert node.bufs.is_clear()


def test_face_quality_prefers_big_frontal_faces():
    box = np.array([0, 0, 80, 80], np.float32)
    frontal = np.array([[24, 32], [56, 32], [40, 48], [28, 64], [52, 64]], np.float32)
    turned = frontal.copy()
    turned[2, 0] = 54  # nose near the right eye: strong yaw
    assert face_quality(box, frontal) == pytest.approx(80.0, rel=0.05)
    assert face_quality(box, turned) < 0.7 * face_quality(box, frontal)
    assert face_quality(box * 0.5, frontal * 0.5) == pytest.approx(0.5 * face_quality(box, frontal))
