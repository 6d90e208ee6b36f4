"""Where a model runs: the configured device and backend, resolved against what this machine has.

``detector.device`` / ``recognizer.device`` (auto | cpu | cuda) and their ``backend``
(onnxruntime | torch; the detector also has opencv) are resolved once, when the model is
loaded. A GPU that was asked for (``cuda``, or ``auto`` with CUDA among the providers) but is
not there -- onnxruntime without its CUDA provider, a CUDA provider whose session came up on
the CPU, torch or onnx2torch not installed, torch without CUDA -- is one log line for that
model, and the model runs on ONNX Runtime on the CPU, the tuned default path.

On a GPU the models bind their inputs and outputs to device tensors that
:class:`edge.privacy.DeviceBuffers` owns and zeroes: :class:`OrtDeviceArray` (an ONNX Runtime
``OrtValue`` on 'cuda', or on 'cpu', where the same code runs in the tests) here, and the torch
tensors of :mod:`edge.face.torch_backend`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
GPU_EXTRA = "pip install 'edge-face-node[gpu]'"


@dataclass(frozen=True)
class Placement:
    """What a model is loaded on: its backend, the device it runs on and, for ONNX Runtime, the
    providers its session is asked for (best first)."""

    backend: str  # onnxruntime | torch | opencv
    device: str  # cpu | cuda
    providers: tuple[str, ...] = (CPU_EP,)

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"


def torch_missing() -> str | None:
    """Why the torch backend cannot load here (None when torch and onnx2torch are importable)."""
    for name in ("torch", "onnx2torch"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed ({GPU_EXTRA})"
    return None


def torch_backend() -> ModuleType:
    """:mod:`edge.face.torch_backend`, imported only when a model is configured for torch: the
    node never loads torch (seconds and hundreds of MB) on the default path."""
    return importlib.import_module("edge.face.torch_backend")


def _wants_gpu(device: str, providers: list[str]) -> bool:
    return device == "cuda" or (device == "auto" and CUDA_EP in providers)


def _ort_providers(device: str, providers: list[str]) -> tuple[str, ...]:
    """The configured providers this onnxruntime build has, CPU last; ``cpu`` is CPU alone and
    ``cuda`` puts the CUDA provider first even when the list left it out."""
    if device == "cpu":
        return (CPU_EP,)
    have = set(ort.get_available_providers())
    wanted = list(providers)
    if device == "cuda" and CUDA_EP not in wanted:
        wanted.insert(0, CUDA_EP)
    chosen = [p for p in wanted if p in have and p != CPU_EP]
    return (*chosen, CPU_EP)


def _notice(role: str, device: str, why: str) -> None:
    # one line per model; a warning when the GPU was asked for by name, information for auto
    level = logging.WARNING if device == "cuda" else logging.INFO
    log.log(level, "%s: device = %r but %s; running on the CPU (ONNX Runtime)", role, device, why)


def resolve(role: str, backend: str, device: str, providers: list[str]) -> Placement:
    """The placement of one model (``role``: "detector" or "recognizer"), before loading it.

    A GPU asked for but missing is logged here, once (see the module docstring); a CUDA
    provider that exists but whose session comes up without it is logged by :func:`confirm`.
    """
    if backend == "torch":
        why = torch_missing()
        if why is None:
            if device == "cpu":
                return Placement("torch", "cpu")
            if torch_backend().cuda_available():
                return Placement("torch", "cuda")
            why = "torch has no CUDA device"
        _notice(role, device, f"backend = 'torch' and {why}")
        return Placement("onnxruntime", "cpu")
    if backend == "opencv":  # the PyPI OpenCV wheels have no CUDA
        if device == "cuda":
            _notice(role, device, "backend = 'opencv' runs on the CPU only")
        return Placement("opencv", "cpu")
    chosen = _ort_providers(device, providers)
    if chosen[0] == CUDA_EP:
        return Placement("onnxruntime", "cuda", chosen)
    if _wants_gpu(device, providers):
        _notice(role, device, f"onnxruntime has no {CUDA_EP} ({GPU_EXTRA} brings onnxruntime-gpu)")
    return Placement("onnxruntime", "cpu", chosen)


def confirm(role: str, placement: Placement, session_providers: list[str]) -> Placement:
    """The placement a built ONNX Runtime session really has: a CUDA provider that could not
    start (no driver, no device) leaves the session on the CPU, which is logged once."""
    if placement.on_gpu and (not session_providers or session_providers[0] != CUDA_EP):
        log.warning("%s: the CUDA provider did not start (no usable GPU); running on the CPU "
                    "(ONNX Runtime)", role)
        return Placement("onnxruntime", "cpu", (CPU_EP,))
    return placement


def ort_device(placement: Placement) -> str | None:
    """Where an ONNX Runtime model binds its tensors: 'cuda' (device buffers the privacy
    module owns) on a GPU; None on the CPU, where it binds the host FaceBuffers in place."""
    return "cuda" if placement.on_gpu else None


class OrtDeviceArray:
    """An ``OrtValue`` that ONNX Runtime allocated on ``device`` ('cuda'; 'cpu' in tests),
    for I/O binding; zeroed by copying zeros into it (ORT has no memset), read back by copying
    it out to a temporary host array that is zeroed after counting."""

    def __init__(self, shape: tuple[int, ...], dtype: type, device: str = "cuda") -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.device = device
        self.value = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, device, 0)
        self._zeros: np.ndarray = np.zeros(shape, dtype)  # the source of every zeroing copy: never written
        self.nbytes = int(self._zeros.nbytes)
        self.zero()  # new device memory holds whatever the allocator last had there

    def write(self, host: np.ndarray) -> None:
        """Copy a contiguous host array of this shape (a FaceBuffers buffer) into the tensor."""
        self.value.update_inplace(host)

    def read_into(self, host: np.ndarray) -> None:
        """Copy the tensor into a contiguous host array of this shape (a FaceBuffers buffer),
        without a temporary: the host buffer is wrapped, not copied."""
        ort.OrtValue.ortvalue_from_numpy(host).update_inplace(self.value)

    def zero(self) -> None:
        self.value.update_inplace(self._zeros)

    def nonzero(self) -> int:
        back = self.value.numpy()  # a host copy of a device tensor (a view of a 'cpu' one)
        count = int(np.count_nonzero(back))
        if back.ctypes.data != self.value.data_ptr():
            back.fill(0)  # the copy may hold face data: it goes back to the heap zeroed
        return count


def ort_array(device: str) -> Callable[[tuple[int, ...], type], OrtDeviceArray]:
    """``make`` for :meth:`edge.privacy.DeviceBuffers.get`: OrtValues on ``device``."""

    def make(shape: tuple[int, ...], dtype: type) -> OrtDeviceArray:
        return OrtDeviceArray(shape, dtype, device)

    return make
