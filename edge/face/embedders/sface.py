"""SFace (``recognizer.kind = "sface"``, the default): built from verified bytes, batch made symbolic."""

from __future__ import annotations

from edge.config import RecognizerModel
from edge.face.embedders.onnx_embedder import CropEmbedder
from edge.face.embedders.onnx_file import load_onnx_file


def load_sface(cfg: RecognizerModel, models_dir: str | None = None) -> CropEmbedder:
    """SFace from verified bytes: the session (or the torch module) is built from the very bytes
    that were hashed, on the configured device (edge.face.device). The bundled model is one
    more ONNX recogniser (RGB, 5-point aligned, normalisation read from the graph), so it loads
    through the same code as a user-supplied file; only its name resolves through the manifest."""
    return load_onnx_file(cfg, models_dir)
