"""5-point similarity alignment to the 112x112 template the recognisers were trained on.

The transform comes from insightface's ``face_align.estimate_norm`` (ArcFace template);
the warp writes straight into the privacy-owned crop buffer (``dst=``) so no aligned face
ever exists outside :class:`edge.privacy.FaceBuffers`.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from insightface.utils import face_align

from edge.privacy import FaceBuffers

# insightface calls a scikit-image API deprecated in 0.26; the maths is unchanged.
warnings.filterwarnings("ignore", category=FutureWarning, module="insightface.utils.face_align")


class Aligner:
    """Warp the faces listed in ``idx`` into ``bufs.crops[0:len(idx)]``."""

    def __init__(self, size: int = 112) -> None:
        self.size = size

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers, idx: list[int]) -> int:
        for k, i in enumerate(idx):
            m = face_align.estimate_norm(bufs.landmarks[i], image_size=self.size)
            bufs.affine[k] = m
            m.fill(0)
            cv2.warpAffine(
                frame, bufs.affine[k], (self.size, self.size), dst=bufs.crops[k],
                borderMode=cv2.BORDER_CONSTANT, borderValue=0,
            )
        return len(idx)


def align_one(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Offline helper (enrolment, evaluation, tests): aligned crop as a new array."""
    m = face_align.estimate_norm(np.asarray(landmarks, np.float32).reshape(5, 2), image_size=size)
    return cv2.warpAffine(image, m, (size, size), borderValue=0.0)
