"""An insightface pack's recogniser (``recognizer.kind = "insightface"``: ArcFace and friends).

insightface's ``model_zoo`` recognises the model kind and reads its preprocessing (mean,
std) for us; the embedding itself runs in our :class:`Embedder`, bound to FaceBuffers.
"""

from __future__ import annotations

import onnxruntime as ort
from insightface.model_zoo import model_zoo

from edge.config import RecognizerModel
from edge.errors import ModelError
from edge.face import model_files as models
from edge.face.embedders.onnx_embedder import Embedder, batch_size, dynamic_batch
from edge.face.ort import pick_providers, recogniser_options


def load_insightface_pack(cfg: RecognizerModel, models_dir: str | None = None) -> Embedder:
    """The pack's recognition model, checked against its configured sha256."""
    providers = pick_providers(cfg.providers)
    path = models.resolve(cfg.model, models.models_dir(models_dir), cfg.sha256)
    try:
        model = model_zoo.get_model(str(path), providers=providers)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"recogniser {path.name} could not be loaded: {exc}") from None
    if model is None or getattr(model, "taskname", "") != "recognition":
        raise ModelError(f"{path.name} is not an insightface recognition model")
    sess = model.session
    if not isinstance(sess.get_inputs()[0].shape[0], str):
        # fixed batch: rebuild a session with a symbolic batch dim from the verified file
        graph, _, _ = dynamic_batch(path.read_bytes())
        sess = ort.InferenceSession(graph, recogniser_options(cfg.threads), providers=providers)
    return Embedder(sess, model.input_mean, model.input_std, swap_rb=True,
                    max_batch=batch_size(cfg.max_batch, sess))
