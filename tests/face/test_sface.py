"""The default recogniser as the registry loads it."""

from __future__ import annotations

from edge.config import load_config
from edge.face.registry import make_embedder


def test_recogniser_batch_is_one_on_cpu_unless_configured(models_ready):
    """Batches don't speed SFace up on a CPU but grow ONNX Runtime's arena for good."""
    rec = load_config().recognizer
    assert make_embedder(rec.model_copy(update={"providers": ["CPUExecutionProvider"]})).max_batch == 1
    assert make_embedder(rec.model_copy(update={"max_batch": 8})).max_batch == 8
