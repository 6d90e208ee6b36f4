"""SCRFD (an insightface pack's detector, ``detector.kind = "insightface"``) on ONNX Runtime.

Every array that sees the frame or a detection is ours: the scaled, zero-padded frame, the
float input blob, the output maps and the candidate rows are ``FaceBuffers.whole`` buffers
(zeroed with the rest after each frame), bound to the session with I/O binding, so ONNX
Runtime reads our blob in place and writes its maps where we zero them. insightface's own
``SCRFD.detect`` builds its blob and output arrays itself, which we could not zero; its
preprocessing and decoding are reproduced here (``insightface/model_zoo/scrfd.py``): RGB,
(x - 127.5) / 128, the frame at the top left of the input; per stride, anchor centres on
the grid and distances to the box sides and to the 5 points, in units of the stride.

The input is the frame scaled as for YuNet (``edge.face.scaling``), padded to a multiple
of 32. Exports with a fixed input size get the frame scaled to fit it. SCRFD's scores run
lower than YuNet's: insightface's default ``score_threshold`` for it is 0.5, where the
arcade clip gives as many faces as YuNet at 0.7 (tests/face/test_scrfd.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from edge.config import DetectorSection
from edge.errors import ModelError
from edge.face import model_files as models
from edge.face.detectors.rows import MAX_CANDIDATES, ROW, nms_order, store_rows
from edge.face.ort import detector_options, pick_providers
from edge.face.scaling import detector_size, pad32, scale_frame
from edge.privacy import FaceBuffers

INPUT_MEAN = 127.5
INPUT_STD = 128.0
# (outputs, strides, anchors per grid cell) of the SCRFD exports with 5 points, as
# insightface's model_zoo tells them apart; outputs are all scores, then all box
# distances, then all point distances, each group in stride order
LAYOUTS = {9: ((8, 16, 32), 2), 15: ((8, 16, 32, 64, 128), 1)}
NO_POINTS = (6, 10)  # the same layouts without the point outputs
WIDTHS = (1, 4, 10)  # score, box distances (left, top, right, bottom), 5 points (x, y)


@dataclass(frozen=True)
class Level:
    """One stride's three output maps, at input size (pad_w, pad_h)."""

    stride: int
    cols: int  # grid cells per row: pad_w // stride
    count: int  # rows of each map: cells * anchors
    names: tuple[str, str, str]  # score, box, points outputs


def decode_level(stride: int, cols: int, anchors: int, score: np.ndarray, box: np.ndarray,
                 pts: np.ndarray, threshold: float, out: np.ndarray) -> int:
    """Write one stride's candidates with ``score >= threshold`` into ``out`` as detector rows
    (x, y, w, h, 5 points, score at input scale); returns how many (at most ``len(out)``).

    ``score`` (count,), ``box`` (count, 4) and ``pts`` (count, 10) are the model's maps: row
    ``i`` is anchor ``i % anchors`` of grid cell ``i // anchors``, whose centre is at
    (col * stride, row * stride); distances are in strides.
    """
    idx = np.flatnonzero(score >= threshold)
    if idx.size > len(out):
        idx = idx[np.argsort(-score[idx])[: len(out)]]
    m = idx.size
    if m == 0:
        return 0
    r, c = np.divmod(idx // anchors, cols)
    cx = (c * stride).astype(np.float32)
    cy = (r * stride).astype(np.float32)
    rows = out[:m]
    bb = box[idx]
    rows[:, 0] = cx - bb[:, 0] * stride
    rows[:, 1] = cy - bb[:, 1] * stride
    rows[:, 2] = (bb[:, 0] + bb[:, 2]) * stride
    rows[:, 3] = (bb[:, 1] + bb[:, 3]) * stride
    for p in range(5):
        rows[:, 4 + 2 * p] = cx + pts[idx, 2 * p] * stride
        rows[:, 5 + 2 * p] = cy + pts[idx, 2 * p + 1] * stride
    rows[:, 14] = score[idx]
    return m


class ScrfdDetector:
    """SCRFD on ONNX Runtime. ``__call__(frame, bufs)`` fills bufs and returns the face count."""

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        self.cfg = cfg
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        try:
            self.session = ort.InferenceSession(data, detector_options(cfg.threads),
                                                providers=pick_providers(cfg.providers))
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file
            raise ModelError(f"detector model {cfg.model} could not be loaded: {exc}") from None
        self._read_layout(cfg.model)
        self.providers = self.session.get_providers()
        self._binding = self.session.io_binding()
        self._shape: tuple[int, int] | None = None
        self._in_size: tuple[int, int] = (0, 0)
        self._pad_w = self._pad_h = 0
        self._scale = 1.0
        self._levels: list[Level] = []
        self._maps_len = 0
        self._bound: tuple[int, int, int, int] | None = None  # buffers the session is bound to
        self._views: dict[str, np.ndarray] = {}  # output maps as (count, width) views

    def _read_layout(self, name: str) -> None:
        """Which SCRFD export this is, from its inputs and outputs; ModelError if none."""
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        n = len(outputs)
        if n in NO_POINTS:
            raise ModelError(f"detector model {name} is an SCRFD export without the 5 points "
                             "the aligner needs; use a *_kps / bnkps export")
        shape = list(inputs[0].shape) if len(inputs) == 1 else []
        widths = [o.shape[-1] if o.shape else None for o in outputs]
        layout = LAYOUTS.get(n)
        colour = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))
        if layout is None or not colour or widths != [w for w in WIDTHS for _ in range(n // 3)]:
            raise ModelError(f"detector model {name} is not an SCRFD graph with 5 points "
                             "(one image input; 9 or 15 outputs: scores, boxes, points per stride)")
        self.strides, self.anchors = layout
        self.input_name = inputs[0].name
        self._names = [o.name for o in outputs]
        self._ranks = [len(o.shape) for o in outputs]  # 3: a leading batch dim of 1
        h, w = shape[2], shape[3]
        self._fixed = (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size if self._shape is not None else None

    def _prepare(self, h: int, w: int) -> None:
        dw, dh, self._scale = detector_size(w, h, self.cfg.min_face_px, self.cfg.input_width)
        if self._fixed is None:
            self._pad_w, self._pad_h = pad32(dw), pad32(dh)
        else:  # the whole frame scaled to fit the export's size, aspect kept
            self._pad_w, self._pad_h = self._fixed
            self._scale = max(w / self._pad_w, h / self._pad_h)
            dw = min(self._pad_w, max(1, int(round(w / self._scale))))
            dh = min(self._pad_h, max(1, int(round(h / self._scale))))
        self._in_size = (dw, dh)
        k = len(self.strides)
        self._levels = []
        for i, st in enumerate(self.strides):
            cells = (self._pad_h // st) * (self._pad_w // st)
            self._levels.append(Level(st, self._pad_w // st, cells * self.anchors,
                                      (self._names[i], self._names[k + i], self._names[2 * k + i])))
        self._maps_len = sum(lv.count for lv in self._levels) * sum(WIDTHS)

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        if self._shape != (h, w):
            self._shape = (h, w)
            self._prepare(h, w)
        dw, dh = self._in_size
        pw, ph = self._pad_w, self._pad_h
        img = bufs.whole("scaled", (ph, pw, 3), np.uint8)
        if (dw, dh) == (w, h):
            img[:dh, :dw] = frame
        elif dw == pw:  # full-width rows: resize straight into the buffer
            scale_frame(frame, (dw, dh), img[:dh], bufs)
        else:
            tmp = bufs.whole("scaled_unpadded", (dh, dw, 3), np.uint8)
            scale_frame(frame, (dw, dh), tmp, bufs)
            img[:dh, :dw] = tmp
        # the padding is black whatever the buffer held before, as insightface pads
        img[dh:].fill(0)
        img[:dh, dw:].fill(0)
        blob = bufs.whole("det_blob", (1, 3, ph, pw), np.float32)
        np.copyto(blob[0], img[:, :, ::-1].transpose(2, 0, 1), casting="unsafe")  # BGR -> RGB planes
        np.subtract(blob, INPUT_MEAN, out=blob)
        np.multiply(blob, 1.0 / INPUT_STD, out=blob)
        maps = bufs.whole("det_maps", (self._maps_len,), np.float32)
        bound = (blob.ctypes.data, maps.ctypes.data, ph, pw)
        if bound != self._bound:  # the buffers are stable: bind once per frame size
            self._bind(blob, maps, ph, pw)
            self._bound = bound
        self.session.run_with_iobinding(self._binding)
        return self._decode(bufs)

    def _bind(self, blob: np.ndarray, maps: np.ndarray, ph: int, pw: int) -> None:
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        b.bind_input(self.input_name, "cpu", 0, np.float32, [1, 3, ph, pw], blob.ctypes.data)
        self._views = {}
        ranks = dict(zip(self._names, self._ranks, strict=True))
        off = 0
        for lv in self._levels:
            for name, width in zip(lv.names, WIDTHS, strict=True):
                v = maps[off:off + lv.count * width]
                shape = [lv.count, width] if ranks[name] == 2 else [1, lv.count, width]
                b.bind_output(name, "cpu", 0, np.float32, shape, v.ctypes.data)
                self._views[name] = v.reshape(lv.count, width)
                off += lv.count * width

    def _decode(self, bufs: FaceBuffers) -> int:
        """Candidates of every stride into a zeroed buffer, then NMS, then best first into bufs."""
        cfg = self.cfg
        cand = bufs.whole("det_cand", (MAX_CANDIDATES, ROW), np.float32)
        k = 0
        for lv in self._levels:
            score, box, pts = (self._views[n] for n in lv.names)
            k += decode_level(lv.stride, lv.cols, self.anchors, score[:, 0], box, pts,
                              cfg.score_threshold, cand[k:])
        if k == 0:
            bufs.n = 0
            return 0
        order = nms_order(cand, k, cfg.score_threshold, cfg.nms_threshold)
        return store_rows(cand, order, bufs, self._scale, cfg.min_face_px)
