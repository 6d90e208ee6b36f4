"""Face detection: YuNet through OpenCV's FaceDetectorYN, or an insightface SCRFD pack.

Detections are written into :class:`edge.privacy.FaceBuffers` (boxes, scores, 5-point
landmarks in frame pixels); the detector's own output arrays are zeroed after copying.
The detector input is the frame scaled down to the smallest width at which faces of
``min_face_px`` are still found, which is most of the speed on a 2-core CPU.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from edge import models
from edge.config import DetectorSection
from edge.errors import ModelError
from edge.privacy import FaceBuffers

log = logging.getLogger(__name__)
# OpenCV's DNN prints backend notices on stderr for every net; keep real errors only.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

# YuNet finds faces down to roughly this many pixels wide at its input.
YUNET_MIN_FACE_AT_INPUT = 14


def detector_width(frame_w: int, min_face_px: int, configured: int = 0) -> int:
    """Detector input width: configured, or just small enough that min_face_px faces survive."""
    if configured:
        return min(configured, frame_w)
    width = frame_w * YUNET_MIN_FACE_AT_INPUT / max(min_face_px, 1)
    width = int(math.ceil(max(320.0, min(float(frame_w), width)) / 32.0) * 32)
    return min(width, frame_w)


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
        self._in_size: tuple[int, int] | None = None
        self._scaled: np.ndarray | None = None
        self._scale = 1.0

    def _prepare(self, frame_shape: tuple[int, ...], bufs: FaceBuffers) -> None:
        h, w = frame_shape[:2]
        dw = detector_width(w, self.cfg.min_face_px, self.cfg.input_width)
        dh = max(1, int(round(h * dw / w)))
        self._scale = w / dw
        self._in_size = (dw, dh)
        self.net.setInputSize((dw, dh))
        if dw != w:
            # the scaled copy of the frame is a face buffer too: allocated locked, zeroed per frame
            self._scaled = bufs.scaled_frame((dh, dw, 3))
        else:
            self._scaled = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        if self._in_size is None or self._shape != (h, w):
            self._shape = (h, w)
            self._prepare(frame.shape, bufs)
        img = frame
        if self._scaled is not None:
            cv2.resize(frame, self._in_size, dst=self._scaled, interpolation=cv2.INTER_AREA)
            img = self._scaled
        _, faces = self.net.detect(img)
        if faces is None or len(faces) == 0:
            bufs.n = 0
            return 0
        n = self._store(faces, bufs, w, h)
        faces.fill(0)
        return n

    _shape: tuple[int, int] | None = None

    def _store(self, faces: np.ndarray, bufs: FaceBuffers, w: int, h: int) -> int:
        s = self._scale
        n = 0
        order = np.argsort(-faces[:, 14])
        for i in order:
            if n >= bufs.max_faces:
                break
            row = faces[i]
            fw = row[2] * s
            if fw < self.cfg.min_face_px:
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


class InsightFaceDetector:
    """An insightface SCRFD/RetinaFace pack loaded through ``insightface.model_zoo``.

    For users with insightface model packs; the bundled default is YuNet.
    """

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        from insightface.model_zoo import model_zoo

        self.cfg = cfg
        path = models.resolve(cfg.model, models.models_dir(models_dir), cfg.sha256)
        try:
            self.model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file
            raise ModelError(f"detector model {path.name} could not be loaded: {exc}") from None
        if self.model is None or getattr(self.model, "taskname", "") != "detection":
            raise ModelError(f"{path.name} is not an insightface detection model")
        self.model.prepare(-1, det_thresh=cfg.score_threshold)
        self._in_size: tuple[int, int] | None = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        dw = detector_width(w, self.cfg.min_face_px, self.cfg.input_width)
        size = (dw, int(math.ceil(h * dw / w / 32.0) * 32))
        self._in_size = size
        det, kpss = self.model.detect(frame, input_size=size, max_num=bufs.max_faces)
        n = 0
        for i in range(len(det)):
            x1, y1, x2, y2, score = det[i]
            if x2 - x1 < self.cfg.min_face_px or kpss is None:
                continue
            bufs.boxes[n] = (x1, y1, x2 - x1, y2 - y1)
            bufs.scores[n] = score
            bufs.landmarks[n] = kpss[i]
            n += 1
        det.fill(0)
        if kpss is not None:
            kpss.fill(0)
        bufs.n = n
        return n


def make_detector(cfg: DetectorSection, models_dir: str | None = None):
    """The configured detector."""
    if cfg.kind == "yunet":
        return YuNetDetector(cfg, models_dir)
    return InsightFaceDetector(cfg, models_dir)
