"""The torch backend (onnx2torch from the same verified ONNX bytes) computes what ONNX Runtime
computes, on real photos: boxes and landmarks within 0.5 px, scores within 1e-3, embeddings'
cosine to the ONNX Runtime CPU embedding >= 0.999; and its device tensors are zeroed.

Runs where torch and onnx2torch are importable (the [gpu] extra; CI does not install it) and
skips with that reason elsewhere; on 'cpu' always, on 'cuda' where torch has a CUDA device.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import SHARED, pad

from edge.config import DetectorSection, RecognizerSection
from edge.face import device as dev
from edge.face.align import Aligner
from edge.face.registry import make_detector, make_embedder
from edge.privacy import FaceBuffers
from edge.switches import TEST_DISABLE_ENV

MISSING = dev.torch_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"torch path: {MISSING}")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    MISSING is not None or not dev.torch_backend().cuda_available(), reason="no CUDA device"))]
BOX_PX = 0.5
COS = 0.999


@pytest.fixture(scope="module")
def onnxruntime_models(models_ready):
    return make_detector(DetectorSection(device="cpu")), make_embedder(RecognizerSection(device="cpu"))


@pytest.fixture(scope="module", params=DEVICES)
def torch_models(request, models_ready):
    det = make_detector(DetectorSection(backend="torch", device=request.param))
    emb = make_embedder(RecognizerSection(backend="torch", device=request.param))
    tb = dev.torch_backend()
    assert isinstance(det, tb.TorchYuNetDetector) and isinstance(emb, tb.TorchEmbedder)
    return det, emb


def _run(det, emb, img, zeroize=True):
    b = FaceBuffers(32, 128, lock=False, zeroize=zeroize)
    n = det(img, b)
    Aligner(emb.input_size)(img, b, list(range(n)))
    emb(b, n)
    return b, n


def _photos(sample_images) -> list[tuple[str, np.ndarray]]:
    out = [("t1.jpg", cv2.imread(str(sample_images / "t1.jpg"))),
           ("Tom_Hanks (padded)", pad(cv2.imread(str(sample_images / "Tom_Hanks_54745.png")), 1.0))]
    clip = SHARED / "videos" / "walking_arcade_1080p.mp4"  # ../shared/data: crowds at 1080p
    cap = cv2.VideoCapture(str(clip))
    for i in range(41 if clip.exists() else 0):
        ok, frame = cap.read()
        if ok and i in (0, 40):
            out.append((f"arcade frame {i}", frame))
    cap.release()
    return out


def test_torch_equals_onnxruntime_on_real_photos(onnxruntime_models, torch_models, sample_images):
    faces = 0
    for name, img in _photos(sample_images):
        ref, n = _run(*onnxruntime_models, img)
        got, m = _run(*torch_models, img)
        assert m == n, name
        np.testing.assert_allclose(got.boxes[:n], ref.boxes[:n], atol=BOX_PX, err_msg=name)
        np.testing.assert_allclose(got.landmarks[:n], ref.landmarks[:n], atol=BOX_PX, err_msg=name)
        np.testing.assert_allclose(got.scores[:n], ref.scores[:n], atol=1e-3, err_msg=name)
        cos = (got.emb[:n] * ref.emb[:n]).sum(1)
        assert n == 0 or cos.min() >= COS, (name, float(cos.min()))
        faces += n
        for b in (ref, got):
            b.zeroize()
            assert b.is_clear()
    assert faces >= 10


def test_torch_device_tensors_hold_the_frame_until_zeroize(torch_models, sample_images):
    b, n = _run(*torch_models, cv2.imread(str(sample_images / "t1.jpg")))
    seen = b.device.nonzero()
    assert n >= 5 and set(seen) == {"det_scaled", "det_maps", "rec_blob", "rec_emb"}
    assert all(seen.values())
    b.zeroize()
    assert not any(b.device.nonzero().values()) and b.is_clear()


def test_torch_positive_control_zeroize_off_leaves_device_data(torch_models, sample_images, monkeypatch):
    monkeypatch.setenv(TEST_DISABLE_ENV, "1")
    b, n = _run(*torch_models, cv2.imread(str(sample_images / "t1.jpg")), zeroize=False)
    b.zeroize()
    seen = b.device.nonzero()
    assert n and seen["rec_emb"] > 0 and seen["det_scaled"] > 0


@pytest.mark.parametrize("device", DEVICES)
def test_torch_batch_detector_equals_the_onnxruntime_batch(models_ready, sample_images, device):
    from edge.face.batch import YuNetBatchDetector

    t1 = cv2.resize(cv2.imread(str(sample_images / "t1.jpg")), (1920, 1080))
    frames = [t1, cv2.flip(t1, 1), cv2.resize(t1, (1280, 720))]
    ort_b = YuNetBatchDetector(DetectorSection(device="cpu"), (1920, 1080), 4)
    tb = dev.torch_backend()
    torch_b = tb.TorchYuNetBatchDetector(DetectorSection(), (1920, 1080), 4, device)
    w1, w2 = FaceBuffers(32, 128, lock=False), FaceBuffers(32, 128, lock=False)
    a = [FaceBuffers(32, 128, lock=False) for _ in frames]
    b = [FaceBuffers(32, 128, lock=False) for _ in frames]
    assert ort_b.detect(frames, a, w1) == torch_b.detect(frames, b, w2)
    for x, y in zip(a, b, strict=True):
        assert x.n >= 5
        np.testing.assert_allclose(y.boxes[:x.n], x.boxes[:x.n], atol=BOX_PX)
        np.testing.assert_allclose(y.landmarks[:x.n], x.landmarks[:x.n], atol=BOX_PX)
    assert all(w2.device.nonzero().values())
    w2.zeroize()
    assert w2.is_clear()
