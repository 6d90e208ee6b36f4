"""Device tensors (privacy.DeviceBuffers) hold what the models read and write on a GPU, and the
frame's zeroize clears them: checked by reading them back from the device, with a positive
control (zeroing off must still see the data).

The ONNX Runtime code paths run here on OrtValues allocated on 'cpu' by ONNX Runtime, which
behave as 'cuda' ones do (allocated by ORT, bound by pointer, copied in and out with
update_inplace); the same tests run on 'cuda' where a CUDA device is there, and skip with
"no CUDA device" elsewhere. The torch tensors' tests skip where torch is not importable.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import DetectorSection, RecognizerSection
from edge.face import device as dev
from edge.face.align import Aligner
from edge.face.registry import make_detector, make_embedder
from edge.privacy import DeviceBuffers, FaceBuffers
from edge.switches import TEST_DISABLE_ENV

NO_CUDA = "no CUDA device"


def ort_cuda() -> bool:
    """ONNX Runtime has its CUDA provider and can allocate on a device."""
    if dev.CUDA_EP not in dev.ort.get_available_providers():
        return False
    try:
        dev.OrtDeviceArray((1,), np.float32, "cuda")
    except Exception:  # noqa: BLE001 - no driver, no device
        return False
    return True


def torch_cuda() -> bool:
    return dev.torch_missing() is None and dev.torch_backend().cuda_available()


ORT_DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not ort_cuda(), reason=NO_CUDA)),
]


def _bufs(zeroize: bool = True) -> FaceBuffers:
    return FaceBuffers(32, 128, zeroize=zeroize, lock=False)


@pytest.fixture
def zeroize_off_allowed(monkeypatch):
    monkeypatch.setenv(TEST_DISABLE_ENV, "1")


@pytest.mark.unit
@pytest.mark.parametrize("device", ORT_DEVICES)
def test_ort_device_array_round_trip_zero_and_read_back(device):
    a = dev.OrtDeviceArray((4, 8), np.float32, device)
    assert a.nonzero() == 0 and a.nbytes == 128  # new device memory starts zeroed
    host = np.arange(32, dtype=np.float32).reshape(4, 8)
    a.write(host)
    assert a.nonzero() == 31
    out = np.zeros_like(host)
    a.read_into(out)
    np.testing.assert_array_equal(out, host)
    a.zero()
    assert a.nonzero() == 0
    np.testing.assert_array_equal(host, np.arange(32, dtype=np.float32).reshape(4, 8))  # source untouched


@pytest.mark.unit
def test_device_buffers_are_kept_per_key_and_replaced_zeroed_on_a_new_shape():
    d = DeviceBuffers()
    make = dev.ort_array("cpu")
    a = d.get("x", (2, 3), np.float32, make)
    assert d.get("x", (2, 3), np.float32, make) is a  # bound once, reused every frame
    a.write(np.ones((2, 3), np.float32))
    b = d.get("x", (3, 3), np.float32, make)
    assert b is not a and a.nonzero() == 0  # the old tensor was zeroed before it was dropped
    b.write(np.ones((3, 3), np.float32))
    assert len(d) == 1 and d.nbytes == 36 and not d.is_clear()
    d.zeroize()
    assert d.is_clear() and d.nonzero() == {"x": 0}


@pytest.mark.unit
def test_face_buffers_zeroize_clears_its_device_tensors_and_is_clear_reads_them_back():
    b = _bufs()
    t = b.device.get("t", (16,), np.uint8, dev.ort_array("cpu"))
    t.write(np.full(16, 7, np.uint8))
    assert not b.is_clear(), "is_clear must read the device tensors back"
    b.zeroize()
    assert b.is_clear() and t.nonzero() == 0


@pytest.mark.unit
def test_positive_control_zeroize_off_leaves_device_data(zeroize_off_allowed):
    b = _bufs(zeroize=False)
    t = b.device.get("t", (16,), np.uint8, dev.ort_array("cpu"))
    t.write(np.full(16, 7, np.uint8))
    b.zeroize()
    assert t.nonzero() == 16 and not b.is_clear()


def _photo(sample_images) -> np.ndarray:
    return cv2.imread(str(sample_images / "t1.jpg"))


def _models(device: str):
    """The ORT detector and recogniser bound to device tensors on ``device`` ('cpu': the same
    code as 'cuda', on ORT-allocated host memory)."""
    det = make_detector(DetectorSection(device="cuda" if device == "cuda" else "cpu"))
    emb = make_embedder(RecognizerSection(device="cuda" if device == "cuda" else "cpu", max_batch=4))
    det.io_device = emb.io_device = device
    return det, emb


def _frame(det, emb, img, b):
    n = det(img, b)
    Aligner(emb.input_size)(img, b, list(range(n)))
    emb(b, n)
    return n


@pytest.mark.parametrize("device", ORT_DEVICES)
def test_device_bound_models_equal_the_host_path_and_are_zeroed(models_ready, sample_images, device):
    img = _photo(sample_images)
    host_det = make_detector(DetectorSection(device="cpu"))
    host_emb = make_embedder(RecognizerSection(device="cpu"))
    ref = _bufs()
    n = _frame(host_det, host_emb, img, ref)
    assert n >= 5 and len(ref.device) == 0  # the CPU path has no device tensors

    det, emb = _models(device)
    b = _bufs()
    assert _frame(det, emb, img, b) == n
    np.testing.assert_allclose(b.boxes[:n], ref.boxes[:n], atol=0.05)
    np.testing.assert_allclose(b.landmarks[:n], ref.landmarks[:n], atol=0.05)
    cos = (b.emb[:n] * ref.emb[:n]).sum(1)
    assert cos.min() >= 0.999
    seen = b.device.nonzero()
    assert set(seen) == {"det_scaled", "det_maps", "rec_blob", "rec_emb"}
    assert all(seen.values()), "every device tensor saw the frame's data"
    b.zeroize()
    assert b.is_clear() and not any(b.device.nonzero().values())
    # the next frame rebinds nothing and gives the same answer (buffers stable, zeroed between)
    assert _frame(det, emb, img, b) == n
    np.testing.assert_allclose(b.emb[:n], ref.emb[:n], atol=1e-3)
    b.zeroize()
    ref.zeroize()


@pytest.mark.parametrize("device", ORT_DEVICES)
def test_positive_control_device_bound_models_leave_data_without_zeroize(
        models_ready, sample_images, zeroize_off_allowed, device):
    det, emb = _models(device)
    b = _bufs(zeroize=False)
    n = _frame(det, emb, _photo(sample_images), b)
    b.zeroize()
    seen = b.device.nonzero()
    assert n and seen["rec_emb"] > 0 and seen["det_scaled"] > 0


TORCH_DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(dev.torch_missing() is not None,
                                                 reason=f"torch path: {dev.torch_missing()}")),
    pytest.param("cuda", marks=pytest.mark.skipif(not torch_cuda(), reason=NO_CUDA)),
]


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_torch_device_array_zero_and_read_back(device):
    tb = dev.torch_backend()
    d = DeviceBuffers()
    a = d.get("t", (4, 4), np.float32, tb.torch_array(device))
    assert a.nonzero() == 0 and a.nbytes == 64
    a.tensor.fill_(3.0)
    assert not d.is_clear() and a.nonzero() == 16
    d.zeroize()
    assert d.is_clear()


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_torch_positive_control_zeroize_off_leaves_data(zeroize_off_allowed, device):
    tb = dev.torch_backend()
    d = DeviceBuffers(zeroize=False)
    d.get("t", (4, 4), np.float32, tb.torch_array(device)).tensor.fill_(3.0)
    d.zeroize()
    assert d.nonzero() == {"t": 16}


EDGEFACE = Path(__file__).resolve().parents[3] / "shared" / "models" / "edgeface_xs" / "edgeface_xs.onnx"
EDGEFACE_SHA = "e0e6caf2f5dd1118401a709dd6ac0d5b60b18bc441991b1b88afde8f5f4f61bb"


@pytest.mark.parametrize("device", ORT_DEVICES)
def test_a_fused_recogniser_on_device_tensors_equals_the_host_path_and_every_part_is_zeroed(
        models_ready, sample_images, device):
    if not EDGEFACE.is_file():
        pytest.skip(f"needs ../shared/models/edgeface_xs (test use only): {EDGEFACE} is absent")
    fuse = [{"kind": "onnx", "model": str(EDGEFACE), "sha256": EDGEFACE_SHA}]
    img = _photo(sample_images)
    det = make_detector(DetectorSection(device="cpu"))
    host = make_embedder(RecognizerSection(device="cpu", fuse=fuse))
    ref = FaceBuffers(32, host.dim, lock=False)
    n = _frame(det, host, img, ref)
    on_dev = make_embedder(RecognizerSection(device="cpu", fuse=fuse))
    for member in on_dev.members:
        member.io_device = device
    b = FaceBuffers(32, on_dev.dim, lock=False)
    assert _frame(det, on_dev, img, b) == n >= 5
    np.testing.assert_allclose(b.emb[:n], ref.emb[:n], atol=1e-3)
    seen = b.device.nonzero()
    assert {"rec_blob", "rec_emb_128", "rec_emb_512"} <= set(seen) and all(seen.values())
    b.zeroize()
    ref.zeroize()
    assert b.is_clear() and not any(b.device.nonzero().values())
