"""Every buffer that can hold a bystander's biometric data, in one place.

The node's promise: a face that matches nobody leaves nothing behind once its frame's
match decision is made. To make that checkable, no stage allocates its own arrays for face
data. They write into the pre-allocated, page-aligned, memory-locked arrays owned here,
and :meth:`FaceBuffers.zeroize` / :meth:`FrameRing.release` overwrite them with zeros as
soon as the decision is made. The deletion tests scan the node's memory for the exact
bytes of crops and embeddings to prove it (tests/guarantees/test_privacy_memory.py).

``zeroize`` can only be switched off through the environment variable
``EDGE_TEST_DISABLE_ZEROIZE=1`` *and* the config key ``privacy.zeroize = false``; that
exists only so the memory-scan test has a positive control.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from edge.hardening import alloc_locked
from edge.switches import TEST_DISABLE_ENV, zeroize_allowed_off

log = logging.getLogger(__name__)

CROP_SIZE = 112


@dataclass
class LockReport:
    """What could and could not be locked in RAM, for the start-up report."""

    locked_bytes: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, nbytes: int, reason: str | None) -> None:
        if reason is None:
            self.locked_bytes += nbytes
        elif reason not in self.failures:
            self.failures.append(reason)


class _Allocator:
    def __init__(self, lock: bool, report: LockReport) -> None:
        self.lock = lock
        self.report = report

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        if not self.lock:
            return np.zeros(shape, dtype)
        arr, reason = alloc_locked(shape, dtype)
        self.report.add(arr.nbytes, reason)
        return arr


class DeviceArray(Protocol):
    """One tensor in an accelerator's memory (or a runtime's own allocation) that may hold face
    data: an ONNX Runtime ``OrtValue`` on 'cuda', a torch tensor. The face layer makes them
    (``edge.face.device``); this module owns them, zeroes them and checks them."""

    nbytes: int

    def zero(self) -> None:
        """Overwrite every byte with zeros (on the device, before the next frame's work)."""
        ...

    def nonzero(self) -> int:
        """Read the tensor back from the device and count its non-zero elements."""
        ...


D = TypeVar("D", bound=DeviceArray)


class DeviceBuffers:
    """The device-side counterpart of :class:`FaceBuffers`: every device tensor a model binds
    a frame, a scaled frame, its detector maps, crops or embeddings to.

    Each is made once per (key, shape) and kept (models bind them, like the host buffers); the
    frame's :meth:`FaceBuffers.zeroize` zeroes all of them in full, right after the match
    decision. Empty on the CPU path, where zeroing them costs nothing.
    """

    def __init__(self, zeroize: bool = True) -> None:
        self.zeroize_enabled = zeroize
        self._arrays: dict[str, tuple[tuple[int, ...], str, DeviceArray]] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype: type, make: Callable[[tuple[int, ...], type], D]
            ) -> D:
        """The device tensor ``key`` of this shape and dtype, made by ``make(shape, dtype)`` the
        first time (or when the shape changes: the old one is zeroed and dropped first)."""
        shape = tuple(shape)
        tag = np.dtype(dtype).str
        got = self._arrays.get(key)
        if got is not None and got[0] == shape and got[1] == tag:
            return got[2]  # type: ignore[return-value]  # made by the same call site's ``make``
        if got is not None:
            got[2].zero()
        arr = make(shape, dtype)
        self._arrays[key] = (shape, tag, arr)
        return arr

    def __len__(self) -> int:
        return len(self._arrays)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for _, _, a in self._arrays.values())

    def zeroize(self) -> None:
        """Zero every device tensor (nothing when zeroing is off: the positive control only)."""
        if self.zeroize_enabled:
            for _, _, arr in self._arrays.values():
                arr.zero()

    def nonzero(self) -> dict[str, int]:
        """Non-zero elements per device tensor, read back from the device (tests, self-checks)."""
        return {k: a.nonzero() for k, (_, _, a) in self._arrays.items()}

    def is_clear(self) -> bool:
        return not any(self.nonzero().values())


class FaceBuffers:
    """Per-frame face data: detections, landmarks, aligned crops, model tensors, embeddings.

    Sized for ``max_faces`` faces of one frame. Stages receive views of these arrays and
    write into them; nothing here is ever copied out except for a *matched* face's crop,
    which becomes an alert.
    """

    def __init__(
        self,
        max_faces: int,
        emb_dim: int,
        zeroize: bool = True,
        lock: bool = True,
        input_size: int = CROP_SIZE,
    ) -> None:
        if not zeroize and not zeroize_allowed_off():
            raise ValueError(
                "privacy.zeroize = false is refused: it is a test-only switch "
                f"(needs {TEST_DISABLE_ENV}=1)"
            )
        self.max_faces = max_faces
        self.emb_dim = emb_dim
        self.zeroize_enabled = zeroize
        self.lock_report = LockReport()
        alloc = _Allocator(lock, self.lock_report)
        self.det_raw = alloc((max_faces, 15), np.float32)  # detector rows: box, 5 points, score
        self.boxes = alloc((max_faces, 4), np.float32)  # x, y, w, h in frame pixels
        self.scores = alloc((max_faces,), np.float32)
        self.landmarks = alloc((max_faces, 5, 2), np.float32)
        self.affine = alloc((max_faces, 2, 3), np.float64)
        self.crops = alloc((max_faces, input_size, input_size, 3), np.uint8)
        self.blob = alloc((max_faces, 3, input_size, input_size), np.float32)
        self.emb = alloc((max_faces, emb_dim), np.float32)
        self.sims = alloc((max_faces, 1), np.float32)
        self.ids = alloc((max_faces, 1), np.int64)
        self._alloc = alloc
        # tensors on an accelerator (empty on the CPU path): zeroed with the host buffers
        self.device = DeviceBuffers(zeroize)
        self._whole: dict[str, np.ndarray] = {}  # stage-owned buffers, zeroed in full per frame
        self._all = [
            self.det_raw, self.boxes, self.scores, self.landmarks, self.affine,
            self.crops, self.blob, self.emb, self.sims, self.ids,
        ]

    def whole(self, key: str, shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
        """A stage's own working buffer (the detector's scaled frame, its output maps...):
        allocated here, locked like the rest, and zeroed in full after every frame."""
        arr = self._whole.get(key)
        if arr is None or arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
            if arr is not None:
                arr.fill(0)
                self._all = [a for a in self._all if a is not arr]
            arr = self._alloc(tuple(shape), dtype)
            self._whole[key] = arr
            self._all.append(arr)
        return arr

    def scaled_frame(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The detector's scaled copy of the frame."""
        return self.whole("scaled", shape, np.uint8)

    @property
    def scaled(self) -> np.ndarray | None:
        return self._whole.get("scaled")

    def zeroize(self) -> float:
        """Overwrite every face buffer with zeros; returns the seconds it took."""
        t0 = time.perf_counter()
        if self.zeroize_enabled:
            used = self._high_water
            whole = [id(a) for a in self._whole.values()]
            for arr in self._all:
                if id(arr) in whole:
                    arr.fill(0)
                elif used:
                    arr[:used].fill(0)
            if len(self.device):
                self.device.zeroize()
        self._high_water = 0
        self._n = 0
        return time.perf_counter() - t0

    # Faces in use this frame. Every slot ever marked in use since the last zeroize is
    # cleared by it, so a stage that shrinks ``n`` cannot leave a slot behind.
    _high_water = 0
    _n = 0

    @property
    def n(self) -> int:
        return self._n

    @n.setter
    def n(self, value: int) -> None:
        self._n = value
        self._high_water = max(self._high_water, value)

    def is_clear(self) -> bool:
        """True when no face buffer holds a non-zero byte (used by tests and self-checks); device
        tensors are read back from the device."""
        return all(not arr.any() for arr in self._all) and self.device.is_clear()


class FrameRing:
    """Fixed slots for decoded frames, handed from capture to processing and zeroed on release.

    A live source writes the newest frame into a free slot; if processing is behind, the
    oldest waiting frame is dropped (and zeroed) rather than queued, so the node never works
    on stale frames and never holds more than ``size`` frames.
    """

    def __init__(self, size: int, zeroize: bool = True, lock: bool = True) -> None:
        if not zeroize and not zeroize_allowed_off():
            raise ValueError(f"zeroize off is a test-only switch (needs {TEST_DISABLE_ENV}=1)")
        self.size = size
        self.zeroize_enabled = zeroize
        self.lock = lock
        self.lock_report = LockReport()
        self._alloc = _Allocator(lock, self.lock_report)
        self._shape: tuple[int, int, int] | None = None
        self._slots: list[np.ndarray] = []
        self._free: list[int] = []
        self._cv = threading.Condition()

    @property
    def shape(self) -> tuple[int, int, int] | None:
        return self._shape

    def ensure_shape(self, shape: tuple[int, int, int]) -> None:
        """(Re)allocate slots for a frame size; old slots are zeroed before they are dropped."""
        with self._cv:
            if self._shape == shape:
                return
            for s in self._slots:
                s.fill(0)
            self._slots = [self._alloc(shape, np.uint8) for _ in range(self.size)]
            self._free = list(range(self.size))
            self._shape = shape
            self._cv.notify_all()

    def acquire(self, timeout: float | None = None) -> int | None:
        """Take a free slot index (blocks until one is free or the timeout passes)."""
        with self._cv:
            if not self._cv.wait_for(lambda: bool(self._free), timeout=timeout):
                return None
            return self._free.pop()

    def slot(self, idx: int) -> np.ndarray:
        return self._slots[idx]

    def release(self, idx: int) -> None:
        """Zero a slot and give it back to the capture side."""
        if self.zeroize_enabled:
            self._slots[idx].fill(0)
        with self._cv:
            self._free.append(idx)
            self._cv.notify()

    def zeroize_all(self) -> None:
        """Used at shutdown: no frame outlives the node."""
        with self._cv:
            for s in self._slots:
                s.fill(0)
