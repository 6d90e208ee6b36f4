"""Face embedding with ONNX Runtime, written into buffers we own (I/O binding).

Like insightface's ``model_zoo`` we wrap one ONNX session per model and read the
preprocessing from the model, but the input tensor and the output embedding are bound to
:class:`edge.privacy.FaceBuffers` arrays, so ONNX Runtime reads our crops in place and
writes the embedding where we zero it, instead of handing back a copy we don't control.

Faces of one frame go through in batches of ``max_batch``. Exports with a fixed batch of 1
(SFace) get the batch dimension made symbolic in memory when loading (the graph is
otherwise untouched, and its bytes were verified by sha256 first).

On a GPU (``io_device = "cuda"``) the input blob and the embeddings are also bound on the
device, to tensors :class:`edge.privacy.DeviceBuffers` owns (copied in from and out to the
host FaceBuffers, zeroed with them), so ONNX Runtime's CUDA arena never holds a copy of either.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edge.errors import ModelError
from edge.face.device import ort_array
from edge.privacy import FaceBuffers


def dynamic_batch(model_bytes: bytes) -> tuple[bytes, float, float]:
    """The graph with a symbolic first input/output dim, and the (mean, std) its input wants:
    (0, 1) when it normalises itself (mxnet-style Sub + Mul in its first nodes)."""
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


def batch_size(configured: int, session: ort.InferenceSession) -> int:
    """Faces per run. On CPU, 1: a batch of 16 is no faster per face (28.7 vs 30.5 ms, SFace, one
    thread) but grows ONNX Runtime's arena, which never shrinks, by ~200 MB (docs/PERFORMANCE.md,
    soak). On a GPU, batches are what it is good at."""
    if configured:
        return configured
    return 1 if session.get_providers()[0] == "CPUExecutionProvider" else 16


class CropEmbedder:
    """What every runtime's embedder shares: crops into the blob (channel order, mean, std) and
    the L2 normalisation of the embeddings, both in place in FaceBuffers."""

    dim: int
    input_size: int
    providers: list[str]

    def __init__(self, mean: float, std: float, swap_rb: bool, max_batch: int) -> None:
        self.mean = float(mean)
        self.std = float(std)
        self.swap_rb = swap_rb
        self.max_batch = max_batch
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
        return self.embed_into(bufs, n, bufs.emb)

    def embed_into(self, bufs: FaceBuffers, n: int, out: np.ndarray) -> int:
        """Embed ``bufs.crops[:n]`` into ``out[:n]`` (L2-normalised): ``bufs.emb`` itself, or
        (fusion) one model's part, a C-contiguous ``(max_faces, dim)`` buffer from ``bufs.whole``."""
        raise NotImplementedError

    def _check_out(self, bufs: FaceBuffers, n: int, out: np.ndarray, dim: int) -> None:
        if n > bufs.max_faces:
            raise ValueError("more faces than face buffers")
        if out.shape[1] != dim or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError("embedding buffer does not fit the recogniser")

    def _normalise(self, out: np.ndarray, n: int) -> None:
        emb = out[:n]
        norms = self._norms[:n]
        np.einsum("ij,ij->i", emb, emb, out=norms[:, 0])
        np.sqrt(norms, out=norms)
        np.maximum(norms, 1e-12, out=norms)
        np.divide(emb, norms, out=emb)
        norms.fill(0)


class Embedder(CropEmbedder):
    """``__call__(bufs, n)``: embed ``bufs.crops[:n]`` into ``bufs.emb[:n]`` (L2-normalised)."""

    def __init__(self, session: ort.InferenceSession, mean: float, std: float,
                 swap_rb: bool = True, max_batch: int = 16, io_device: str | None = None) -> None:
        super().__init__(mean, std, swap_rb, max_batch)
        self.session = session
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
        # None: bind the host FaceBuffers in place (the CPU path); 'cuda' (or 'cpu' in tests):
        # bind device tensors owned by bufs.device
        self.io_device = io_device

    def embed_into(self, bufs: FaceBuffers, n: int, out: np.ndarray) -> int:
        if n == 0:
            return 0
        self._check_out(bufs, n, out, self.dim)
        self._fill_blob(bufs, n)
        if self.io_device is not None:
            self._run_on_device(bufs, n, self.io_device, out)
        else:
            self._run_on_host(bufs, n, out)
        self._normalise(out, n)
        return n

    def _run_on_host(self, bufs: FaceBuffers, n: int, out: np.ndarray) -> None:
        done = 0
        while done < n:
            k = min(self.max_batch, n - done)
            b = self._binding
            b.clear_binding_inputs()
            b.clear_binding_outputs()
            b.bind_input(self.input_name, "cpu", 0, np.float32, [k, 3, self.input_size,
                         self.input_size], bufs.blob[done:done + k].ctypes.data)
            b.bind_output(self.output_name, "cpu", 0, np.float32, [k, self.dim],
                          out[done:done + k].ctypes.data)
            self.session.run_with_iobinding(b)
            done += k

    def _run_on_device(self, bufs: FaceBuffers, n: int, device: str, out: np.ndarray) -> None:
        """The whole host blob in, batches bound at row offsets of the device tensors, the
        embeddings out into ``out``: two copies a call, no ORT-allocated input or output."""
        make = ort_array(device)
        d_in = bufs.device.get("rec_blob", bufs.blob.shape, np.float32, make)
        name = "rec_emb" if out is bufs.emb else f"rec_emb_{self.dim}"  # a fused model's part
        d_out = bufs.device.get(name, out.shape, np.float32, make)
        d_in.write(bufs.blob)
        in_row = bufs.blob[0].nbytes
        out_row = out[0].nbytes
        s = self.input_size
        done = 0
        while done < n:
            k = min(self.max_batch, n - done)
            b = self._binding
            b.clear_binding_inputs()
            b.clear_binding_outputs()
            b.bind_input(self.input_name, device, 0, np.float32, [k, 3, s, s],
                         d_in.value.data_ptr() + done * in_row)
            b.bind_output(self.output_name, device, 0, np.float32, [k, self.dim],
                          d_out.value.data_ptr() + done * out_row)
            self.session.run_with_iobinding(b)
            done += k
        d_out.read_into(out)
