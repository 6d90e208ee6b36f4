"""Several cameras' frames through the models at once (edge.face.batch) give what the
one-frame-at-a-time path gives, and the batch's buffers are zeroed with the frames'."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SHARED

from edge.config import DetectorSection, RecognizerSection
from edge.face.align import Aligner
from edge.face.batch import CameraBatch, YuNetBatchDetector
from edge.face.detectors.yunet_onnx import yunet_graph
from edge.face.registry import make_detector, make_embedder
from edge.privacy import FaceBuffers
from edge.switches import TEST_DISABLE_ENV

SIZE = (1920, 1080)


@pytest.fixture(scope="module")
def frames(models_ready, sample_images) -> list[np.ndarray]:
    """Six 1080p camera frames: the bundled group photo, shifted and mirrored, and, where
    ../shared/data is there, three frames of the arcade clip (a crowd walking)."""
    t1 = cv2.resize(cv2.imread(str(sample_images / "t1.jpg")), SIZE)
    out = [t1, cv2.flip(t1, 1), np.roll(t1, 200, axis=1)]
    clip = SHARED / "videos" / "walking_arcade_1080p.mp4"
    cap = cv2.VideoCapture(str(clip))
    for i in range(61 if clip.exists() else 0):
        ok, f = cap.read()
        if ok and i % 30 == 0:
            out.append(f)
    cap.release()
    return out


@pytest.fixture(scope="module")
def single(models_ready):
    return make_detector(DetectorSection(device="cpu")), make_embedder(RecognizerSection(device="cpu"))


def _one_at_a_time(det, emb, frame):
    b = FaceBuffers(32, 128, lock=False)
    n = det(frame, b)
    Aligner(emb.input_size)(frame, b, list(range(n)))
    emb(b, n)
    out = b.boxes[:n].copy(), b.landmarks[:n].copy(), b.scores[:n].copy(), b.emb[:n].copy()
    b.zeroize()
    return out


def _batch(device: str | None = None, max_frames: int = 8, max_batch: int = 256, zeroize: bool = True):
    det = YuNetBatchDetector(DetectorSection(device="cpu"), SIZE, max_frames)
    emb = make_embedder(RecognizerSection(device="cpu", max_batch=max_batch))
    if device is not None:  # the device-tensor path, on ORT-allocated 'cpu' OrtValues
        det.io_device = emb.io_device = device
    return CameraBatch(det, emb, max_faces=256, zeroize=zeroize, lock=False)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_batch_equals_one_frame_at_a_time(frames, single, device):
    cb = _batch(device)
    bufs = [FaceBuffers(32, 128, lock=False) for _ in frames]
    counts = cb.run(frames, bufs)
    assert sum(counts) >= 15 and all(counts)
    for f, b, n in zip(frames, bufs, counts, strict=True):
        boxes, lms, scores, emb = _one_at_a_time(*single, f)
        assert n == len(boxes)
        np.testing.assert_allclose(b.boxes[:n], boxes, atol=1e-3)  # the same input, the same maps
        np.testing.assert_allclose(b.landmarks[:n], lms, atol=1e-3)
        np.testing.assert_allclose(b.scores[:n], scores, atol=1e-5)
        assert (b.emb[:n] * emb).sum(1).min() >= 0.9999  # batch of all faces vs one at a time
    assert cb.work.n == sum(counts) and set(cb.stage_s) == {"detect", "align", "embed", "zeroize"}
    cb.zeroize(bufs)
    assert cb.work.is_clear() and all(b.is_clear() for b in bufs)
    if device is not None:
        assert set(cb.work.device.nonzero()) == {"batch_scaled", "batch_maps", "rec_blob", "rec_emb"}


def test_a_batch_of_fewer_frames_than_its_size_and_the_next_batch_are_right(frames, single):
    cb = _batch(max_frames=4)
    for chunk in (frames[:2], frames[1:4]):
        bufs = [FaceBuffers(32, 128, lock=False) for _ in chunk]
        counts = cb.run(chunk, bufs)
        for f, b, n in zip(chunk, bufs, counts, strict=True):
            boxes, _, _, emb = _one_at_a_time(*single, f)
            np.testing.assert_allclose(b.boxes[:n], boxes, atol=1e-3)
            assert (b.emb[:n] * emb).sum(1).min() >= 0.9999
        cb.zeroize(bufs)
    with pytest.raises(ValueError, match="1..4 frames"):
        cb.detect(frames[:5], [FaceBuffers(32, 128, lock=False) for _ in range(5)])


def test_recogniser_batches_smaller_than_the_faces_give_the_same_embeddings(frames):
    big, small = _batch(max_batch=256), _batch(max_batch=3)
    a = [FaceBuffers(32, 128, lock=False) for _ in frames]
    b = [FaceBuffers(32, 128, lock=False) for _ in frames]
    assert big.run(frames, a) == small.run(frames, b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.emb[:x.n], y.emb[:y.n], atol=1e-4)


@pytest.mark.parametrize("size,same", [((1280, 720), True), ((2560, 1440), True),
                                       ((1000, 700), False), ((1280, 1280), False)])
def test_frames_of_other_sizes_are_letterboxed(frames, size, same):
    """A frame of the batch's aspect is scaled to exactly the detector's input: the same
    faces as the single-frame detector at that width. Another aspect is padded further (to the
    batch's fixed input), which moves boxes near the padding by a pixel or so."""
    cb = _batch()
    f = cv2.resize(frames[0], size)
    b = [FaceBuffers(32, 128, lock=False)]
    n = cb.detect([f], b)[0]
    fit_w, fit_h = cb.detector._fit
    s = max(size[0] / fit_w, size[1] / fit_h)
    ref = make_detector(DetectorSection(device="cpu", input_width=min(fit_w, round(size[0] / s))))
    r = FaceBuffers(32, 128, lock=False)
    assert ref(f, r) == n >= 5
    mine, theirs = b[0].boxes[:n], r.boxes[:n]
    if same:
        np.testing.assert_allclose(mine, theirs, atol=1e-3)
    else:
        o1, o2 = np.argsort(mine[:, 0]), np.argsort(theirs[:, 0])
        np.testing.assert_allclose(mine[o1], theirs[o2], atol=2.0)
    cb.zeroize(b)


def test_positive_control_batch_buffers_keep_data_without_zeroize(frames, monkeypatch):
    monkeypatch.setenv(TEST_DISABLE_ENV, "1")
    cb = _batch(device="cpu", zeroize=False)
    bufs = [FaceBuffers(32, 128, lock=False, zeroize=False) for _ in frames[:2]]
    cb.run(frames[:2], bufs)
    cb.zeroize(bufs)
    assert not cb.work.is_clear() and cb.work.device.nonzero()["batch_scaled"] > 0


def test_batched_graph_keeps_the_batch_dim_in_every_head(models_ready):
    import onnx

    from edge.face import model_files as models

    g = onnx.load_from_string(yunet_graph(models.resolve("yunet_2023mar").read_bytes(), batch=True)).graph
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "n"
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    heads = [inits[n.input[1]] for n in g.node if n.op_type == "Reshape"]
    assert len(heads) == 12 and all(h[0] == 0 for h in heads)
