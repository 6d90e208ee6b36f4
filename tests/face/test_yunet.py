"""YuNet on ONNX Runtime must find exactly what OpenCV's FaceDetectorYN finds, in buffers we zero."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import load_config
from edge.errors import ModelError
from edge.face.detectors.yunet_onnx import YuNetOrtDetector, yunet_graph
from edge.face.detectors.yunet_opencv import YuNetDetector
from edge.face.registry import make_detector
from edge.privacy import FaceBuffers


def _pair(**det):
    cfg = load_config(overrides={"detector": det, "privacy": {"lock_memory": False}})
    return make_detector(cfg.detector), make_detector(cfg.detector.model_copy(update={"backend": "opencv"}))


def _detect(d, img):
    b = FaceBuffers(32, 128, lock=False)
    n = d(img, b)
    out = b.boxes[:n].copy(), b.landmarks[:n].copy(), b.scores[:n].copy()
    b.zeroize()
    assert b.is_clear(), "every detector buffer (scaled frame, output maps, candidates) is zeroed"
    return out


@pytest.mark.parametrize("width,det", [
    (None, {}),  # t1.jpg as it is (1280 px: scaled to 576 at min_face_px 32)
    (1920, {}),  # upscaled to 1080p-ish width: scaled down for the detector
    (1280, {"input_width": 500}),  # a width that is not a multiple of 32: padded input
    (800, {"min_face_px": 48, "score_threshold": 0.5}),
])
def test_onnxruntime_backend_matches_opencv(models_ready, sample_images, width, det):
    img = cv2.imread(str(sample_images / "t1.jpg"))
    if width:
        img = cv2.resize(img, (width, int(img.shape[0] * width / img.shape[1])))
    ort_det, cv_det = _pair(**det)
    assert isinstance(ort_det, YuNetOrtDetector) and isinstance(cv_det, YuNetDetector)
    a, b = _detect(ort_det, img), _detect(cv_det, img)
    assert len(a[0]) == len(b[0]) >= 5
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=0.05)  # pixels / score: same model, same decoding


def test_no_face_frame_gives_zero(models_ready):
    ort_det, _ = _pair()
    assert _detect(ort_det, np.full((480, 640, 3), 90, np.uint8))[0].shape == (0, 4)


def test_non_yunet_graph_is_refused_with_a_hint(models_ready):
    from edge.face import model_files as models

    sface = models.resolve("sface_2021dec").read_bytes()
    with pytest.raises(ModelError, match='backend = "opencv"'):
        yunet_graph(sface)
    with pytest.raises(ModelError, match="not a valid ONNX"):
        yunet_graph(b"not a model")


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
def test_one_detector_serves_two_pipelines_without_mixing_their_buffers(models_ready, sample_images,
                                                                       backend):
    """Models are shared between cameras' pipelines: a frame's scaled copy and maps must land
    in the buffers of the pipeline that called, never in the one that called before."""
    img = cv2.imread(str(sample_images / "t1.jpg"))
    det = _pair()[0 if backend == "onnxruntime" else 1]
    first, second = FaceBuffers(32, 128, lock=False), FaceBuffers(32, 128, lock=False)
    assert det(img, first) == 6
    first.zeroize()
    assert det(img, second) == 6
    assert first.is_clear(), "the second pipeline's frame was written into the first one's buffers"
    assert second.scaled is not None and second.scaled.any()
    second.zeroize()
    assert second.is_clear()
