"""The detector's input size and the frame scaling into it.

The detector input is the frame scaled down to the smallest width at which faces of
``min_face_px`` are still found, which is most of the speed on a 2-core CPU.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edge.privacy import FaceBuffers

# YuNet finds faces down to roughly this many pixels wide at its input (SCRFD's smallest
# anchors, 16 px at stride 8, are about the same).
YUNET_MIN_FACE_AT_INPUT = 14
# Scaling to the detector width: OpenCV's INTER_AREA (proper averaging) is slow at a
# non-integer ratio (4.6-6.7 ms for 1920 -> 864, a third of the detector), bilinear alone
# aliases at ratios over 2, which moves landmarks enough to lose a borderline match. So:
# INTER_AREA by a whole factor (its fast path, 0.3 ms), then bilinear for the remaining
# ratio under 2 (0.3 ms). docs/PERFORMANCE.md has the comparison on the arcade clip.
SCALE_INTERP = cv2.INTER_LINEAR


def scale_frame(frame: np.ndarray, size: tuple[int, int], dst: np.ndarray, bufs: FaceBuffers) -> None:
    """``frame`` scaled to ``size`` (w, h) into ``dst``; any intermediate is a zeroed face buffer."""
    h, w = frame.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2:
        hk, wk = h // k, w // k
        mid = bufs.whole("scaled_mid", (hk, wk, 3), np.uint8)
        cv2.resize(frame[: hk * k, : wk * k], (wk, hk), dst=mid, interpolation=cv2.INTER_AREA)
        frame = mid
    cv2.resize(frame, size, dst=dst, interpolation=SCALE_INTERP)


def detector_width(frame_w: int, min_face_px: int, configured: int = 0) -> int:
    """Detector input width: configured, or just small enough that min_face_px faces survive."""
    if configured:
        return min(configured, frame_w)
    width = frame_w * YUNET_MIN_FACE_AT_INPUT / max(min_face_px, 1)
    width = int(math.ceil(max(320.0, min(float(frame_w), width)) / 32.0) * 32)
    return min(width, frame_w)


def detector_size(frame_w: int, frame_h: int, min_face_px: int, configured: int = 0
                  ) -> tuple[int, int, float]:
    """(w, h) of the scaled frame the detector reads, and frame pixels per detector pixel."""
    dw = detector_width(frame_w, min_face_px, configured)
    dh = max(1, int(round(frame_h * dw / frame_w)))
    return dw, dh, frame_w / dw


def pad32(n: int) -> int:
    """``n`` rounded up to a multiple of 32, the coarsest stride of YuNet's and SCRFD's maps."""
    return (n - 1) // 32 * 32 + 32
