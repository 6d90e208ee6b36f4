"""SFace (``recognizer.kind = "sface"``, the default): built from verified bytes, batch made symbolic."""

from __future__ import annotations

import onnxruntime as ort

from edge.config import RecognizerModel
from edge.errors import ModelError
from edge.face import device as dev
from edge.face import model_files as models
from edge.face.embedders.onnx_embedder import Embedder, batch_size, dynamic_batch
from edge.face.ort import recogniser_options
from edge.face.protocols import Embedder as EmbedderProtocol


def load_sface(cfg: RecognizerModel, models_dir: str | None = None) -> EmbedderProtocol:
    """SFace from verified bytes: the session (or the torch module) is built from the very bytes
    that were hashed, on the configured device (edge.face.device)."""
    place = dev.resolve("recognizer", cfg.backend, cfg.device, cfg.providers)
    data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
    graph, mean, std = dynamic_batch(data)
    if place.backend == "torch":
        return dev.torch_backend().TorchEmbedder(graph, mean, std, place.device, swap_rb=True,
                                                 max_batch=cfg.max_batch or 16)
    try:
        sess = ort.InferenceSession(graph, recogniser_options(cfg.threads),
                                    providers=list(place.providers))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"recogniser {cfg.model} could not be loaded: {exc}") from None
    place = dev.confirm("recognizer", place, sess.get_providers())
    return Embedder(sess, mean, std, swap_rb=True, max_batch=batch_size(cfg.max_batch, sess),
                    io_device=dev.ort_device(place))
