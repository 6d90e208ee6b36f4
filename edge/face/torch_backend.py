"""The PyTorch backend (``backend = "torch"``; the ``[gpu]`` extra): the same verified ONNX
bytes, converted at load by onnx2torch, run on tensors the privacy module owns.

Imported only when a model is configured for torch (:func:`edge.face.device.torch_backend`),
so the node never loads torch otherwise. The graph is the one the ONNX Runtime path builds
from the sha256-verified file (YuNet with its uint8 NHWC input in front; SFace with a
symbolic batch), so both backends compute the same function; tests/face/test_torch_backend.py
compares them on real photos.

Every tensor that holds a frame, a scaled frame, output maps, crops or embeddings is a
:class:`TorchDeviceArray` in ``bufs.device`` (zeroed after each frame's match decision, read
back by the tests), filled from and emptied into the host FaceBuffers with ``copy_``. The
tensors the converted module returns come from torch's caching allocator; each is copied
into ours and zeroed before it goes back to the cache. The module's intermediate activations
stay in the cache, not zeroed, until reused (docs/PRIVACY.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
from onnx2torch import convert

from edge.config import DetectorSection
from edge.errors import ModelError
from edge.face import model_files as models
from edge.face.batch import YuNetBatchDetector
from edge.face.detectors.yunet_onnx import YuNetOrtDetector, yunet_graph
from edge.face.embedders.onnx_embedder import CropEmbedder
from edge.privacy import FaceBuffers

TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.float32): torch.float32}


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


class TorchDeviceArray:
    """A preallocated torch tensor on ``device`` for :class:`edge.privacy.DeviceBuffers`."""

    def __init__(self, shape: tuple[int, ...], dtype: type, device: str) -> None:
        self.tensor = torch.zeros(tuple(shape), dtype=TORCH_DTYPES[np.dtype(dtype)], device=device)
        self.nbytes = int(self.tensor.numel() * self.tensor.element_size())

    def zero(self) -> None:
        self.tensor.zero_()

    def nonzero(self) -> int:
        # counted on the device; .item() waits for every kernel queued before it, zeroing included
        return int(torch.count_nonzero(self.tensor).item())


def torch_array(device: str) -> Callable[[tuple[int, ...], type], TorchDeviceArray]:
    def make(shape: tuple[int, ...], dtype: type) -> TorchDeviceArray:
        return TorchDeviceArray(shape, dtype, device)

    return make


def convert_graph(graph: bytes, device: str, what: str) -> torch.nn.Module:
    """onnx2torch's module for ONNX bytes (already verified and prepared), in eval mode on device."""
    try:
        module = convert(onnx.load_from_string(graph))
    except Exception as exc:  # noqa: BLE001 - any converter failure is this model's
        raise ModelError(f"{what}: onnx2torch could not convert it: {type(exc).__name__}: {exc}") from None
    return module.eval().to(device)


def _hand_back(out: torch.Tensor, dst: torch.Tensor) -> None:
    """The module's output into our tensor; its own block is zeroed before the cache reuses it."""
    dst.copy_(out.reshape(dst.shape))
    out.zero_()


class TorchEmbedder(CropEmbedder):
    """The recogniser on torch: ``__call__(bufs, n)`` embeds ``bufs.crops[:n]`` into ``bufs.emb[:n]``
    (``embed_into``: into a fused model's part)."""

    def __init__(self, graph: bytes, mean: float, std: float, device: str, swap_rb: bool = True,
                 max_batch: int = 16) -> None:
        super().__init__(mean, std, swap_rb, max_batch)
        m = onnx.load_from_string(graph)
        dims = m.graph.input[0].type.tensor_type.shape.dim
        self.input_size = dims[2].dim_value or 112
        self.dim = m.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
        if not self.dim:
            raise ModelError("recogniser output dimension is not fixed")
        self.device = device
        self.providers = [f"torch:{device}"]
        self.module = convert_graph(graph, device, "recogniser")

    def embed_into(self, bufs: FaceBuffers, n: int, out: np.ndarray) -> int:
        if n == 0:
            return 0
        self._check_out(bufs, n, out, self.dim)
        self._fill_blob(bufs, n)
        make = torch_array(self.device)
        d_in = bufs.device.get("rec_blob", bufs.blob.shape, np.float32, make).tensor
        name = "rec_emb" if out is bufs.emb else f"rec_emb_{self.dim}"  # a fused model's part
        d_out = bufs.device.get(name, out.shape, np.float32, make).tensor
        d_in[:n].copy_(torch.from_numpy(bufs.blob[:n]))  # from_numpy: a view, no host copy
        with torch.inference_mode():
            done = 0
            while done < n:
                k = min(self.max_batch, n - done)
                _hand_back(self.module(d_in[done:done + k]), d_out[done:done + k])
                done += k
        torch.from_numpy(out[:n]).copy_(d_out[:n])
        self._normalise(out, n)
        return n


class TorchYuNetDetector(YuNetOrtDetector):
    """YuNet on torch: the ONNX Runtime detector's scaling and decoding, the model on torch."""

    def __init__(self, cfg: DetectorSection, models_dir: str | None, device: str) -> None:
        self.cfg = cfg
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        graph = yunet_graph(data)
        self._names = [o.name for o in onnx.load_from_string(graph).graph.output]
        self.device = device
        self.providers = [f"torch:{device}"]
        self.io_device = None
        self.module = convert_graph(graph, device, f"detector model {cfg.model}")
        self._init_state()

    def _infer(self, img: np.ndarray, maps: np.ndarray, bufs: FaceBuffers) -> None:
        make = torch_array(self.device)
        d_img = bufs.device.get("det_scaled", img.shape, np.uint8, make).tensor
        d_maps = bufs.device.get("det_maps", maps.shape, np.float32, make).tensor
        d_img.copy_(torch.from_numpy(img))
        at = {name: (off, count * width) for name, off, count, width in self._maps}
        with torch.inference_mode():
            outs = self.module(d_img[None])
            for name, out in zip(self._names, outs, strict=True):
                off, size = at[name]
                _hand_back(out, d_maps[off:off + size])
        torch.from_numpy(maps).copy_(d_maps)
        if self._bound != (maps.ctypes.data,):
            self._views = self._map_views(maps)
            self._bound = (maps.ctypes.data,)


class TorchYuNetBatchDetector(YuNetBatchDetector):
    """:class:`edge.face.batch.YuNetBatchDetector` with the batched graph on torch."""

    def __init__(self, cfg: DetectorSection, frame_size: tuple[int, int], max_frames: int,
                 device: str, models_dir: str | None = None) -> None:
        self.cfg = cfg
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        graph = yunet_graph(data, batch=True)
        self._names = [o.name for o in onnx.load_from_string(graph).graph.output]
        self.device = device
        self.providers = [f"torch:{device}"]
        self.io_device = None
        self.module = convert_graph(graph, device, f"detector model {cfg.model}")
        self._init_state()
        self._setup(frame_size, max_frames)

    def _infer_batch(self, n: int, img: np.ndarray, maps: np.ndarray, work: FaceBuffers) -> None:
        make = torch_array(self.device)
        d_img = work.device.get("batch_scaled", img.shape, np.uint8, make).tensor
        d_maps = work.device.get("batch_maps", maps.shape, np.float32, make).tensor
        d_img[:n].copy_(torch.from_numpy(img[:n]))
        at = {name: (off * n, count * width * n) for name, off, count, width in self._maps}
        with torch.inference_mode():
            outs = self.module(d_img[:n])
            for name, out in zip(self._names, outs, strict=True):
                off, size = at[name]
                _hand_back(out, d_maps[off:off + size])
        used = sum(size for _, size in at.values())
        torch.from_numpy(maps[:used]).copy_(d_maps[:used])
