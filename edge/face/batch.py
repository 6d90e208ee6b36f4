"""Several cameras' frames through the models at once: the throughput path of a GPU.

A GPU is fed well by big calls, not by one 1080p frame and a handful of faces at a time.
:class:`CameraBatch` takes one frame of each of several cameras and runs

    detect: all frames letterboxed into one fixed detector input -> YuNet, one call (batch n)
            -> each frame's faces decoded into that frame's FaceBuffers, in its own pixels
    embed:  all frames' aligned crops -> the recogniser, one call -> each frame's embeddings

so the per-camera work in between (tracker, zone, quality gate, alignment) stays where it is.
It is a separate object with its own stage timings so it can be measured alone
(benchmarks/gpu_bench.py). Results equal the one-frame-at-a-time path for frames of the size
it was built for (tests/face/test_batch.py): the letterboxed input of such a frame is exactly
the input the single-frame detector builds.

Privacy: the batched input, its output maps and the gathered crops and embeddings live in the
batch's own FaceBuffers (host, and on a GPU its ``device`` tensors); the caller zeroes it with
the frames' buffers right after the batch's match decision (:meth:`CameraBatch.zeroize`).
"""

from __future__ import annotations

import time

import numpy as np

from edge.config import DetectorSection
from edge.face import device as dev
from edge.face.align import Aligner
from edge.face.detectors.yunet_onnx import YUNET_INPUT, YuNetOrtDetector
from edge.face.protocols import Embedder
from edge.face.scaling import scale_frame
from edge.privacy import FaceBuffers


class YuNetBatchDetector(YuNetOrtDetector):
    """YuNet with a batch dim, at one fixed input size: that of a ``frame_size`` frame (w, h).

    A frame of another size is letterboxed into it (scaled to fit, aspect kept, top left,
    zero padding); its faces come back in its own pixels.
    """

    BATCH = True

    def __init__(self, cfg: DetectorSection, frame_size: tuple[int, int], max_frames: int,
                 models_dir: str | None = None) -> None:
        super().__init__(cfg, models_dir)
        self._setup(frame_size, max_frames)

    def _setup(self, frame_size: tuple[int, int], max_frames: int) -> None:
        self.frame_size = frame_size
        self.max_frames = max_frames
        w, h = frame_size
        self._prepare(h, w)  # fixes pad_w, pad_h and each image's map layout
        self._shape = (h, w)
        self._fit = (self._in_size[0], self._in_size[1])
        self._nominal_scale = self._scale

    def _letterbox(self, frame: np.ndarray, dst: np.ndarray, work: FaceBuffers) -> float:
        """``frame`` scaled into the top left of ``dst`` (pad_h, pad_w, 3), the rest zero;
        returns frame pixels per detector pixel."""
        h, w = frame.shape[:2]
        if (w, h) == self.frame_size:
            dw, dh = self._fit
            s = self._nominal_scale  # exactly the single-frame detector's input
        else:
            s = max(w / self._fit[0], h / self._fit[1])
            dw = min(self._fit[0], max(1, int(round(w / s))))
            dh = min(self._fit[1], max(1, int(round(h / s))))
        pw = self._pad_w
        if (dw, dh) == (w, h):
            dst[:dh, :dw] = frame
        elif dw == pw:
            scale_frame(frame, (dw, dh), dst[:dh], work)
        else:
            tmp = work.whole("batch_unpadded", (dh, dw, 3), np.uint8)
            scale_frame(frame, (dw, dh), tmp, work)
            dst[:dh, :dw] = tmp
        dst[dh:].fill(0)
        dst[:dh, dw:].fill(0)
        return s

    def detect(self, frames: list[np.ndarray], bufs: list[FaceBuffers], work: FaceBuffers) -> list[int]:
        """Faces of every frame into its FaceBuffers (``bufs[i]``), one model call for all."""
        n = len(frames)
        if not 0 < n <= self.max_frames or len(bufs) != n:
            raise ValueError(f"a batch is 1..{self.max_frames} frames, each with its buffers")
        ph, pw = self._pad_h, self._pad_w
        per = self._maps_len  # one image's maps
        img = work.whole("batch_scaled", (self.max_frames, ph, pw, 3), np.uint8)
        maps = work.whole("batch_maps", (self.max_frames * per,), np.float32)
        scales = [self._letterbox(f, img[i], work) for i, f in enumerate(frames)]
        self._infer_batch(n, img, maps, work)
        counts = []
        for i in range(n):
            views = {}
            for name, off, count, width in self._maps:
                # output ``name`` of the batch is n blocks of (count, width), image i's the i-th
                start = off * n + i * count * width
                views[name] = maps[start:start + count * width].reshape(count, width)
            self._scale = scales[i]
            counts.append(self._decode(views, bufs[i]))
        return counts

    def _infer_batch(self, n: int, img: np.ndarray, maps: np.ndarray, work: FaceBuffers) -> None:
        """The model on ``img[:n]``; output ``name`` of the batch into ``maps`` at ``off * n``."""
        if self.io_device is None:
            self._bind_batch(n, img.ctypes.data, maps.ctypes.data, "cpu")
            self.session.run_with_iobinding(self._binding)
        else:
            make = dev.ort_array(self.io_device)
            d_img = work.device.get("batch_scaled", img.shape, np.uint8, make)
            d_maps = work.device.get("batch_maps", maps.shape, np.float32, make)
            d_img.write(img)
            self._bind_batch(n, d_img.value.data_ptr(), d_maps.value.data_ptr(), self.io_device)
            self.session.run_with_iobinding(self._binding)
            d_maps.read_into(maps)

    def _bind_batch(self, n: int, img_ptr: int, maps_ptr: int, device: str) -> None:
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        b.bind_input(YUNET_INPUT, device, 0, np.uint8, [n, self._pad_h, self._pad_w, 3], img_ptr)
        for name, off, count, width in self._maps:
            b.bind_output(name, device, 0, np.float32, [n, count, width], maps_ptr + 4 * off * n)
        self._bound = None  # the single-frame binding is gone


class CameraBatch:
    """One frame of each of several cameras: detect all in one call, embed all in one call.

    ``work`` holds the batch's own face data (batched input, maps, gathered crops and
    embeddings): sized for ``max_frames`` frames and ``max_faces`` faces in all.
    """

    def __init__(self, detector: YuNetBatchDetector, embedder: Embedder, max_faces: int,
                 zeroize: bool = True, lock: bool = True) -> None:
        self.detector = detector
        self.embedder = embedder
        self.aligner = Aligner(embedder.input_size)
        self.work = FaceBuffers(max_faces, embedder.dim, zeroize=zeroize, lock=lock,
                                input_size=embedder.input_size)
        self.stage_s = {"detect": 0.0, "align": 0.0, "embed": 0.0, "zeroize": 0.0}

    def detect(self, frames: list[np.ndarray], bufs: list[FaceBuffers]) -> list[int]:
        t0 = time.perf_counter()
        counts = self.detector.detect(frames, bufs, self.work)
        self.stage_s["detect"] += time.perf_counter() - t0
        return counts

    def align(self, frames: list[np.ndarray], bufs: list[FaceBuffers], todo: list[list[int]]) -> list[int]:
        """Each frame's chosen faces (``todo[i]``, after its tracker and gate) into its crops."""
        t0 = time.perf_counter()
        out = [self.aligner(f, b, idx) for f, b, idx in zip(frames, bufs, todo, strict=True)]
        self.stage_s["align"] += time.perf_counter() - t0
        return out

    def embed(self, bufs: list[FaceBuffers], counts: list[int]) -> int:
        """``bufs[i].crops[:counts[i]]`` -> ``bufs[i].emb[:counts[i]]``, one recogniser call for all."""
        t0 = time.perf_counter()
        w = self.work
        total = sum(counts)
        if total > w.max_faces:
            raise ValueError("more faces in the batch than its buffers hold")
        k = 0
        for b, m in zip(bufs, counts, strict=True):
            w.crops[k:k + m] = b.crops[:m]
            k += m
        w.n = total  # the slots this batch used, for the zeroize
        self.embedder(w, total)
        k = 0
        for b, m in zip(bufs, counts, strict=True):
            b.emb[:m] = w.emb[k:k + m]
            k += m
        self.stage_s["embed"] += time.perf_counter() - t0
        return total

    def run(self, frames: list[np.ndarray], bufs: list[FaceBuffers]) -> list[int]:
        """detect -> every face kept (no tracker or gate) -> align -> embed; faces per frame.
        The caller makes its match decisions on ``bufs[i].emb`` and then calls ``zeroize``."""
        counts = self.detect(frames, bufs)
        done = self.align(frames, bufs, [list(range(n)) for n in counts])
        self.embed(bufs, done)
        return done

    def zeroize(self, bufs: list[FaceBuffers]) -> None:
        """The batch's decision is made: its own buffers and every frame's, host and device."""
        t0 = time.perf_counter()
        self.work.zeroize()
        for b in bufs:
            b.zeroize()
        self.stage_s["zeroize"] += time.perf_counter() - t0
