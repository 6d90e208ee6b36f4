"""Which class implements which configured model: one table, one entry per implementation.

A new detector or recogniser is one module with one class that follows
:mod:`edge.face.protocols`, plus one line in the table below. ``load_face_models`` builds
the pair a node (or several cameras' pipelines) share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge.config import Config, DetectorSection, RecognizerModel, RecognizerSection
from edge.errors import ConfigError
from edge.face.detectors.scrfd import ScrfdDetector
from edge.face.detectors.yunet_onnx import YuNetOrtDetector, load_yunet_torch
from edge.face.detectors.yunet_opencv import YuNetDetector
from edge.face.embedders.fused import FusedEmbedder
from edge.face.embedders.insightface_pack import load_insightface_pack
from edge.face.embedders.onnx_embedder import CropEmbedder
from edge.face.embedders.onnx_file import load_onnx_file
from edge.face.embedders.sface import load_sface
from edge.face.protocols import Detector, Embedder

DetectorFactory = Callable[[DetectorSection, str | None], Detector]
EmbedderFactory = Callable[[RecognizerModel, str | None], Embedder]

# (detector.kind, detector.backend) -> class. The backend is YuNet's runtime choice; an
# insightface pack's detector (SCRFD) runs on ONNX Runtime whichever is configured.
DETECTORS: dict[tuple[str, str], DetectorFactory] = {
    ("yunet", "onnxruntime"): YuNetOrtDetector,
    ("yunet", "opencv"): YuNetDetector,
    ("insightface", "onnxruntime"): ScrfdDetector,
    ("insightface", "opencv"): ScrfdDetector,
    ("yunet", "torch"): load_yunet_torch,
    ("insightface", "torch"): ScrfdDetector,
}
EMBEDDERS: dict[str, EmbedderFactory] = {
    "sface": load_sface,
    "insightface": load_insightface_pack,
    "onnx": load_onnx_file,
}


def make_detector(cfg: DetectorSection, models_dir: str | None = None) -> Detector:
    """The configured detector, loaded from verified model bytes."""
    factory = DETECTORS.get((cfg.kind, cfg.backend))
    if factory is None:
        raise ConfigError(f"detector.kind = {cfg.kind!r} with backend {cfg.backend!r}: no such detector")
    return factory(cfg, models_dir)


def make_embedder(cfg: RecognizerSection, models_dir: str | None = None) -> Embedder:
    """The configured recogniser, loaded from verified model bytes; with ``[[recognizer.fuse]]``
    entries, all of them behind one :class:`FusedEmbedder` (the primary's block first)."""
    if not cfg.fuse:
        return _one_embedder(cfg, models_dir)
    members = []
    for m in cfg.members():
        e = _one_embedder(m, models_dir)
        if not isinstance(e, CropEmbedder):
            raise ConfigError(f"recogniser {m.model} cannot be fused (its embedder has no embed_into)")
        members.append(e)
    return FusedEmbedder(members, [m.model for m in cfg.members()])


def _one_embedder(cfg: RecognizerModel, models_dir: str | None) -> Embedder:
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
    """The configured detector and recogniser, each from verified model bytes."""
    return FaceModels(make_detector(cfg.detector, cfg.models.dir),
                      make_embedder(cfg.recognizer, cfg.models.dir))
