"""SFace (``recognizer.kind = "sface"``, the default): built from verified bytes, batch made symbolic."""

from __future__ import annotations

import onnxruntime as ort

from edge.config import RecognizerModel
from edge.errors import ModelError
from edge.face import model_files as models
from edge.face.embedders.onnx_embedder import Embedder, batch_size, dynamic_batch
from edge.face.ort import pick_providers, recogniser_options


def load_sface(cfg: RecognizerModel, models_dir: str | None = None) -> Embedder:
    """SFace from verified bytes: the session is built from the very bytes that were hashed."""
    data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
    graph, mean, std = dynamic_batch(data)
    try:
        sess = ort.InferenceSession(graph, recogniser_options(cfg.threads),
                                    providers=pick_providers(cfg.providers))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"recogniser {cfg.model} could not be loaded: {exc}") from None
    return Embedder(sess, mean, std, swap_rb=True, max_batch=batch_size(cfg.max_batch, sess))
