"""One model, several worker threads: calls one at a time.

A detector or recogniser keeps its I/O binding between calls (see :mod:`edge.face.protocols`),
so two threads must never run one instance at once. The site's workers share one pair of
models through these wrappers: while one worker holds the detector, another can embed,
align or decode, which is where running several cameras' frames at once pays on a CPU.
"""

from __future__ import annotations

import threading

import numpy as np

from edge.face.protocols import Detector, Embedder
from edge.face.registry import FaceModels
from edge.privacy import FaceBuffers


class SerialDetector:
    """A detector that several threads may call; the calls run one at a time."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.inner.input_size

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        with self._lock:
            return self.inner(frame, bufs)


class SerialEmbedder:
    """A recogniser that several threads may call; the calls run one at a time."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.input_size = inner.input_size
        self.providers = inner.providers
        self._lock = threading.Lock()

    def __call__(self, bufs: FaceBuffers, n: int) -> int:
        with self._lock:
            return self.inner(bufs, n)


def serial(models: FaceModels) -> FaceModels:
    """The same models, safe to share between threads (each call runs alone)."""
    return FaceModels(SerialDetector(models.detector), SerialEmbedder(models.embedder))
