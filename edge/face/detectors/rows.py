"""Detector rows into FaceBuffers: the one format every detector decodes into, and its NMS.

A row is 15 float32 values at detector scale: x, y, w, h, five (x, y) points (eyes, nose,
mouth corners), score. Candidate rows live in a ``FaceBuffers.whole`` buffer; the faces
kept are copied best first into ``bufs.boxes/scores/landmarks`` in frame pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.privacy import FaceBuffers

ROW = 15
MAX_CANDIDATES = 4096  # rows above the score threshold before NMS (a crowd gives a few hundred)


def nms_order(cand: np.ndarray, k: int, score_threshold: float, nms_threshold: float) -> np.ndarray:
    """Indices into ``cand[:k]`` that survive non-maximum suppression, best first."""
    keep = cv2.dnn.NMSBoxes(
        cand[:k, 0:4].astype(np.float64),  # type: ignore[arg-type]  # stubs say Sequence; takes arrays
        cand[:k, 14].astype(np.float64),  # type: ignore[arg-type]  # (same stub gap)
        score_threshold, nms_threshold, 1.0, 5000)
    return np.asarray(keep, np.int64).reshape(-1)


def store_rows(faces: np.ndarray, order: np.ndarray, bufs: FaceBuffers, s: float, min_face_px: int) -> int:
    """Copy rows ``faces[order]``, best first, into bufs in frame pixels (``s`` frame pixels per
    detector pixel), skipping faces narrower than ``min_face_px``; sets and returns ``bufs.n``."""
    n = 0
    for i in order:
        if n >= bufs.max_faces:
            break
        row = faces[i]
        fw = row[2] * s
        if fw < min_face_px:
            continue
        bufs.det_raw[n] = row
        bufs.boxes[n, 0] = row[0] * s
        bufs.boxes[n, 1] = row[1] * s
        bufs.boxes[n, 2] = fw
        bufs.boxes[n, 3] = row[3] * s
        np.multiply(row[4:14].reshape(5, 2), s, out=bufs.landmarks[n])
        bufs.scores[n] = row[14]
        n += 1
    bufs.n = n
    return n
