"""YuNet on OpenCV's ``FaceDetectorYN`` (``detector.backend = "opencv"``).

The reference the ONNX Runtime backend is tested against, and the backend for YuNet
versions other than 2023mar. OpenCV's DNN keeps its own scaled copy of the frame inside the
network until the next frame (docs/PRIVACY.md, known limits).
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import DetectorSection
from edge.errors import ModelError
from edge.face import model_files as models
from edge.face.detectors.rows import store_rows
from edge.face.scaling import detector_size, scale_frame
from edge.privacy import FaceBuffers

# OpenCV's DNN prints backend notices on stderr for every net; keep real errors only.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class YuNetDetector:
    """OpenCV YuNet. ``__call__(frame, bufs)`` fills bufs and returns the face count."""

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        self.cfg = cfg
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        try:
            self.net = cv2.FaceDetectorYN.create(
                "onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8), (320, 320),
                cfg.score_threshold, cfg.nms_threshold, 5000,
            )
        except cv2.error as exc:
            raise ModelError(f"detector model {cfg.model} could not be loaded: {exc.msg}") from None
        self._shape: tuple[int, int] | None = None
        self._in_size: tuple[int, int] = (0, 0)
        self._scale = 1.0

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size if self._shape is not None else None

    def _prepare(self, h: int, w: int) -> None:
        dw, dh, self._scale = detector_size(w, h, self.cfg.min_face_px, self.cfg.input_width)
        self._in_size = (dw, dh)
        self.net.setInputSize((dw, dh))

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        if self._shape != (h, w):
            self._shape = (h, w)
            self._prepare(h, w)
        img = frame
        dw, dh = self._in_size
        if dw != w:
            # the scaled copy of the frame is a face buffer too (locked, zeroed per frame), taken
            # from this call's bufs: one detector may serve several pipelines in turn
            img = bufs.scaled_frame((dh, dw, 3))
            scale_frame(frame, self._in_size, img, bufs)
        _, faces = self.net.detect(img)
        if faces is None or len(faces) == 0:
            bufs.n = 0
            return 0
        n = store_rows(faces, np.argsort(-faces[:, 14]), bufs, self._scale, self.cfg.min_face_px)
        faces.fill(0)
        return n
