"""Detect + align + embed for offline tools (watchlist enrolment, evaluation, tests).

The live node never uses this: it runs the stages on privacy buffers (``edge.node.pipeline``).
Enrolment and evaluation work on consented or research images and need the results as
ordinary arrays, so :meth:`FaceEngine.faces` returns copies and then zeroes its buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import Config, load_config
from edge.face.align import Aligner
from edge.face.registry import FaceModels, load_face_models
from edge.privacy import FaceBuffers


@dataclass
class FaceResult:
    bbox: np.ndarray  # x, y, w, h
    score: float
    landmarks: np.ndarray  # 5 x 2
    embedding: np.ndarray  # L2-normalised
    crop: np.ndarray  # aligned 112x112 BGR


class FaceEngine:
    """One detector + one recogniser, with their own small buffer set.

    ``models`` shares an already loaded pair (e.g. a node's); by default the configured pair
    is loaded through :mod:`edge.face.registry`, as the node loads its own.
    """

    def __init__(self, cfg: Config, models: FaceModels | None = None) -> None:
        self.cfg = cfg
        models = models or load_face_models(cfg)
        self.detector = models.detector
        self.embedder = models.embedder
        self.aligner = Aligner(self.embedder.input_size)
        self.bufs = FaceBuffers(cfg.detector.max_faces, self.embedder.dim, lock=False,
                                input_size=self.embedder.input_size)

    @classmethod
    def from_config(cls, cfg: Config | None = None, **overrides: dict) -> FaceEngine:
        return cls(cfg or load_config(overrides=overrides or None))

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def faces(self, image: np.ndarray, pad: float = 0.0) -> list[FaceResult]:
        """All faces in a BGR image, largest first. ``pad`` adds a black border (fraction of
        the size) so tight face crops (LFW-style) still contain a whole face for the detector."""
        if pad > 0:
            ph, pw = int(image.shape[0] * pad), int(image.shape[1] * pad)
            image = cv2.copyMakeBorder(image, ph, ph, pw, pw, cv2.BORDER_CONSTANT, value=0)
        else:
            ph = pw = 0
        b = self.bufs
        try:
            n = self.detector(image, b)
            idx = list(range(n))
            self.aligner(image, b, idx)
            self.embedder(b, n)
            out = []
            for i in range(n):
                box = b.boxes[i].copy()
                lmk = b.landmarks[i].copy()
                box[0] -= pw
                box[1] -= ph
                lmk[:, 0] -= pw
                lmk[:, 1] -= ph
                out.append(FaceResult(box, float(b.scores[i]), lmk, b.emb[i].copy(),
                                      b.crops[i].copy()))
            out.sort(key=lambda f: -float(f.bbox[2] * f.bbox[3]))
            return out
        finally:
            b.zeroize()

    def embed_path(self, path: str, pad: float = 0.0) -> list[FaceResult]:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable image: {path}")
        return self.faces(img, pad)
