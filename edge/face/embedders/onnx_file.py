"""A user-supplied ONNX recogniser (``kind = "onnx"``: EdgeFace, an ArcFace export...).

The file is named by path with its sha256 (the product never downloads or bundles such
weights). Its preprocessing is read from the graph as insightface's ``model_zoo`` does: a
graph that starts with Sub + Mul normalises itself (mean 0, std 1), any other wants
(x - 127.5) / 127.5. The input is RGB, 5-point ArcFace-aligned, like SFace's.
"""

from __future__ import annotations

import onnxruntime as ort

from edge.config import RecognizerModel
from edge.errors import ModelError
from edge.face import device as dev
from edge.face import model_files as models
from edge.face.embedders.onnx_embedder import CropEmbedder, Embedder, batch_size, dynamic_batch
from edge.face.ort import recogniser_options


def load_onnx_file(cfg: RecognizerModel, models_dir: str | None = None) -> CropEmbedder:
    """The model from the very bytes that were hashed (sha256 required for a path), on the
    configured device (edge.face.device)."""
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
    inp = sess.get_inputs()[0].shape
    if len(inp) != 4 or inp[1] != 3 or inp[2] != inp[3]:
        raise ModelError(f"recogniser {cfg.model}: input must be N x 3 x S x S (got {inp})")
    place = dev.confirm("recognizer", place, sess.get_providers())
    return Embedder(sess, mean, std, swap_rb=True, max_batch=batch_size(cfg.max_batch, sess),
                    io_device=dev.ort_device(place))
