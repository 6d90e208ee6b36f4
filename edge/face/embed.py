"""Face embedding with ONNX Runtime, written into buffers we own (I/O binding).

Like insightface's ``model_zoo`` we wrap one ONNX session per model and read the
preprocessing from the model, but the input tensor and the output embedding are bound to
:class:`edge.privacy.FaceBuffers` arrays, so ONNX Runtime reads our crops in place and
writes the embedding where we zero it, instead of handing back a copy we don't control.

Faces of one frame go through in one batch. SFace is exported with a fixed batch of 1;
we make the batch dimension symbolic in memory when loading it (the graph is otherwise
untouched and byte-identical weights are verified by sha256 first).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import onnx
import onnxruntime as ort

from edge.config import RecognizerSection
from edge.errors import ModelError
from edge.face import model_files as models
from edge.privacy import FaceBuffers

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, e.g. a container's cpuset), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    # auto: half the cores. Detection and decoding run beside the embedder; on 2 cores a
    # 2-thread session contends with them and is ~2x slower per face (docs/PERFORMANCE.md).
    so.intra_op_num_threads = threads or max(1, usable_cores() // 2)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def pick_providers(wanted: list[str]) -> list[str]:
    """The configured providers that this onnxruntime build offers, CPU always last."""
    have = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in have]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _dynamic_batch(model_bytes: bytes) -> tuple[bytes, float, float]:
    """Make the first input/output dim symbolic; detect mxnet-style in-graph normalisation."""
    try:
        m = onnx.load_from_string(model_bytes)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"recogniser model is not a valid ONNX file: {exc}") from None
    init_names = {i.name for i in m.graph.initializer}
    real_inputs = [i for i in m.graph.input if i.name not in init_names]
    if len(real_inputs) != 1 or len(m.graph.output) != 1:
        raise ModelError("recogniser model must have exactly one image input and one output")
    del m.graph.input[:]
    m.graph.input.extend(real_inputs)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    # same rule as insightface ArcFaceONNX: Sub+Mul in the first nodes = normalises itself
    first = [n.name for n in m.graph.node[:8]]
    sub = any(n.startswith(("Sub", "_minus")) for n in first)
    mul = any(n.startswith(("Mul", "_mul")) for n in first)
    mean, std = (0.0, 1.0) if (sub and mul) else (127.5, 127.5)
    return m.SerializeToString(), mean, std


class Embedder:
    """``__call__(bufs, n)``: embed ``bufs.crops[:n]`` into ``bufs.emb[:n]`` (L2-normalised)."""

    def __init__(self, session: ort.InferenceSession, mean: float, std: float,
                 swap_rb: bool = True, max_batch: int = 16) -> None:
        self.session = session
        self.mean = float(mean)
        self.std = float(std)
        self.swap_rb = swap_rb
        self.max_batch = max_batch
        inp = session.get_inputs()[0]
        out = session.get_outputs()[0]
        self.input_name = inp.name
        self.output_name = out.name
        self.input_size = int(inp.shape[2]) if isinstance(inp.shape[2], int) else 112
        dim = out.shape[-1]
        if not isinstance(dim, int):
            raise ModelError("recogniser output dimension is not fixed")
        self.dim = dim
        self.providers = session.get_providers()
        self._binding = session.io_binding()
        self._norms = np.zeros((256, 1), np.float32)

    def _fill_blob(self, bufs: FaceBuffers, n: int) -> None:
        for k in range(n):
            src = bufs.crops[k, :, :, ::-1] if self.swap_rb else bufs.crops[k]
            np.copyto(bufs.blob[k], src.transpose(2, 0, 1), casting="unsafe")
        if self.mean != 0.0 or self.std != 1.0:
            view = bufs.blob[:n]
            np.subtract(view, self.mean, out=view)
            np.multiply(view, 1.0 / self.std, out=view)

    def __call__(self, bufs: FaceBuffers, n: int) -> int:
        if n == 0:
            return 0
        if n > bufs.max_faces:
            raise ValueError("more faces than face buffers")
        self._fill_blob(bufs, n)
        done = 0
        while done < n:
            k = min(self.max_batch, n - done)
            b = self._binding
            b.clear_binding_inputs()
            b.clear_binding_outputs()
            b.bind_input(self.input_name, "cpu", 0, np.float32, [k, 3, self.input_size,
                         self.input_size], bufs.blob[done:done + k].ctypes.data)
            b.bind_output(self.output_name, "cpu", 0, np.float32, [k, self.dim],
                          bufs.emb[done:done + k].ctypes.data)
            self.session.run_with_iobinding(b)
            done += k
        emb = bufs.emb[:n]
        norms = self._norms[:n]
        np.einsum("ij,ij->i", emb, emb, out=norms[:, 0])
        np.sqrt(norms, out=norms)
        np.maximum(norms, 1e-12, out=norms)
        np.divide(emb, norms, out=emb)
        norms.fill(0)
        return n


def batch_size(configured: int, session: ort.InferenceSession) -> int:
    """Faces per run. On CPU, 1: a batch of 16 is no faster per face (28.7 vs 30.5 ms, SFace, one
    thread) but grows ONNX Runtime's arena, which never shrinks, by ~200 MB (30-minute soak: a
    32 MB step when a crowd first appeared). On a GPU, batches are what it is good at."""
    if configured:
        return configured
    return 1 if session.get_providers()[0] == "CPUExecutionProvider" else 16


def load_embedder(cfg: RecognizerSection, models_dir: str | None = None) -> Embedder:
    """The configured recogniser: SFace from verified bytes, or an insightface ArcFace pack."""
    providers = pick_providers(cfg.providers)
    so = _session_options(cfg.threads)
    if cfg.kind == "sface":
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        graph, mean, std = _dynamic_batch(data)
        try:
            sess = ort.InferenceSession(graph, so, providers=providers)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"recogniser {cfg.model} could not be loaded: {exc}") from None
        return Embedder(sess, mean, std, swap_rb=True, max_batch=batch_size(cfg.max_batch, sess))
    # insightface pack (ArcFace and friends): model_zoo reads the preprocessing for us
    from insightface.model_zoo import model_zoo

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
        graph, _, _ = _dynamic_batch(path.read_bytes())
        sess = ort.InferenceSession(graph, so, providers=providers)
    return Embedder(sess, model.input_mean, model.input_std, swap_rb=True,
                    max_batch=batch_size(cfg.max_batch, sess))
