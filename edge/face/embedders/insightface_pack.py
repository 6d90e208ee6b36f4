"""An insightface pack's recogniser (``recognizer.kind = "insightface"``: ArcFace and friends).

insightface's ``model_zoo`` recognises the model kind and reads its preprocessing (mean,
std) for us; the embedding itself runs in our :class:`Embedder`, bound to FaceBuffers.
"""

from __future__ import annotations

import onnxruntime as ort
from insightface.model_zoo import model_zoo

from edge.config import RecognizerModel
from edge.errors import ModelError
from edge.face import device as dev
from edge.face import model_files as models
from edge.face.embedders.onnx_embedder import Embedder, batch_size, dynamic_batch
from edge.face.ort import recogniser_options
from edge.face.protocols import Embedder as EmbedderProtocol


def load_insightface_pack(cfg: RecognizerModel, models_dir: str | None = None) -> EmbedderProtocol:
    """The pack's recognition model, checked against its configured sha256, on the configured
    device (edge.face.device)."""
    place = dev.resolve("recognizer", cfg.backend, cfg.device, cfg.providers)
    providers = list(place.providers)
    path = models.resolve(cfg.model, models.models_dir(models_dir), cfg.sha256)
    try:
        model = model_zoo.get_model(str(path), providers=providers)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"recogniser {path.name} could not be loaded: {exc}") from None
    if model is None or getattr(model, "taskname", "") != "recognition":
        raise ModelError(f"{path.name} is not an insightface recognition model")
    sess = model.session
    if place.backend == "torch":
        graph, _, _ = dynamic_batch(path.read_bytes())
        return dev.torch_backend().TorchEmbedder(graph, model.input_mean, model.input_std,
                                                 place.device, swap_rb=True,
                                                 max_batch=cfg.max_batch or 16)
    if not isinstance(sess.get_inputs()[0].shape[0], str):
        # fixed batch: rebuild a session with a symbolic batch dim from the verified file
        graph, _, _ = dynamic_batch(path.read_bytes())
        sess = ort.InferenceSession(graph, recogniser_options(cfg.threads), providers=providers)
    place = dev.confirm("recognizer", place, sess.get_providers())
    return Embedder(sess, model.input_mean, model.input_std, swap_rb=True,
                    max_batch=batch_size(cfg.max_batch, sess), io_device=dev.ort_device(place))
