"""Which class implements which configured model: one table, one entry per implementation.

A new detector or recogniser is one module with one class that follows
:mod:`edge.face.protocols`, plus one line in the table below. ``load_face_models`` builds
the pair a node (or several cameras' pipelines) share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.config import Config, DetectorSection, RecognizerSection
from edge.errors import ConfigError
from edge.face.detect import InsightFaceDetector, YuNetDetector, YuNetOrtDetector
from edge.face.embed import load_embedder
from edge.face.protocols import Detector, Embedder

DetectorFactory = Callable[[DetectorSection, str | None], Detector]
EmbedderFactory = Callable[[RecognizerSection, str | None], Embedder]

# (detector.kind, detector.backend) -> class; the backend is YuNet's runtime choice
DETECTORS: dict[tuple[str, str], DetectorFactory] = {
    ("yunet", "onnxruntime"): YuNetOrtDetector,
    ("yunet", "opencv"): YuNetDetector,
    ("insightface", "onnxruntime"): InsightFaceDetector,
    ("insightface", "opencv"): InsightFaceDetector,
}
EMBEDDERS: dict[str, EmbedderFactory] = {
    "sface": load_embedder,
    "insightface": load_embedder,
}


def make_detector(cfg: DetectorSection, models_dir: str | None = None) -> Detector:
    """The configured detector, loaded from verified model bytes."""
    factory = DETECTORS.get((cfg.kind, cfg.backend))
    if factory is None:
        raise ConfigError(f"detector.kind = {cfg.kind!r} with backend {cfg.backend!r}: no such detector")
    return factory(cfg, models_dir)


def make_embedder(cfg: RecognizerSection, models_dir: str | None = None) -> Embedder:
    """The configured recogniser, loaded from verified model bytes."""
    factory = EMBEDDERS.get(cfg.kind)
    if factory is None:
        raise ConfigError(f"recognizer.kind = {cfg.kind!r}: no such recogniser")
    return factory(cfg, models_dir)


@dataclass(frozen=True)
class FaceModels:
    """One detector and one recogniser, loaded once and shared by every pipeline that uses them."""

    detector: Detector
    embedder: Embedder


def load_face_models(cfg: Config) -> FaceModels:
    return FaceModels(make_detector(cfg.detector, cfg.models.dir),
                      make_embedder(cfg.recognizer, cfg.models.dir))
