"""Detector input size and frame scaling (edge.face.scaling): model-free."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.face.scaling import YUNET_MIN_FACE_AT_INPUT, detector_size, detector_width, pad32, scale_frame
from edge.privacy import FaceBuffers

pytestmark = pytest.mark.unit


def test_scaling_is_antialiased_and_leaves_nothing_behind():
    """Whole-factor area averaging then bilinear: fine detail (1-px stripes, like hair or
    fabric) averages out as with INTER_AREA instead of turning into moire as with bilinear
    alone; and the intermediate image is a face buffer zeroed with the rest."""
    img = np.zeros((1080, 1920, 3), np.uint8)
    img[:, ::2] = 255  # 1-px stripes: mean 127.5
    b = FaceBuffers(4, 128, lock=False)
    out = np.zeros((486, 864, 3), np.uint8)
    scale_frame(img, (864, 486), out, b)
    area = cv2.resize(img, (864, 486), interpolation=cv2.INTER_AREA)
    linear = cv2.resize(img, (864, 486), interpolation=cv2.INTER_LINEAR)
    assert np.abs(area.astype(float) - 127.5).max() < 20  # the reference averages
    assert np.abs(linear.astype(float) - 127.5).max() > 100  # bilinear alone aliases
    assert np.abs(out.astype(float) - 127.5).max() < 5
    assert b.whole("scaled_mid", (540, 960, 3)).any()
    b.zeroize()
    assert b.is_clear()


@pytest.mark.parametrize("frame_w,min_face,configured,want", [
    (1920, 32, 0, 864),  # 1920 * 14 / 32 = 840, rounded up to 32
    (1920, 64, 0, 448),  # 420 -> 448
    (1280, 32, 0, 576),
    (640, 64, 0, 320),  # never under 320 ...
    (300, 32, 0, 300),  # ... nor over the frame
    (1920, 32, 500, 500),  # configured: taken as it is, up to the frame width
    (400, 32, 500, 400),
])
def test_detector_width(frame_w, min_face, configured, want):
    assert detector_width(frame_w, min_face, configured) == want
    if not configured and 320 < want < frame_w:
        # the rule: faces of min_face_px are still YUNET_MIN_FACE_AT_INPUT wide at the input
        assert min_face * want / frame_w >= YUNET_MIN_FACE_AT_INPUT


def test_detector_size_keeps_the_aspect_and_pads_to_the_coarsest_stride():
    dw, dh, s = detector_size(1920, 1080, 32)
    assert (dw, dh) == (864, 486) and s == pytest.approx(1920 / 864)
    assert (pad32(dw), pad32(dh)) == (864, 512)
    assert [pad32(n) for n in (1, 31, 32, 33, 500)] == [32, 32, 32, 64, 512]
