"""YuNet on ONNX Runtime (``detector.kind = "yunet"``, the default backend).

The same weights as OpenCV's ``FaceDetectorYN``, ~2x faster on these CPUs
(docs/PERFORMANCE.md), and its input, output maps and candidate rows are all buffers we own
and zero, bound to the session with I/O binding. The graph gets a uint8 NHWC input in front
(Transpose + Cast inside ORT), so our scaled frame is read in place. The decoding of its
stride-8/16/32 maps follows ``FaceDetectorYN`` exactly; a test compares the two backends on
real frames.

On a GPU (``io_device = "cuda"``) the scaled frame and the output maps are bound on the
device, to tensors :class:`edge.privacy.DeviceBuffers` owns (copied in from and out to the
host buffers, zeroed with them each frame). ``yunet_graph(batch=True)`` gives the graph a
symbolic batch (its output reshapes keep the batch dim) for :mod:`edge.face.batch`.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edge.config import DetectorSection
from edge.errors import ModelError
from edge.face import device as dev
from edge.face import model_files as models
from edge.face.detectors.rows import MAX_CANDIDATES, ROW, nms_order, store_rows
from edge.face.ort import detector_options
from edge.face.protocols import Detector
from edge.face.scaling import detector_size, pad32, scale_frame
from edge.privacy import FaceBuffers

YUNET_STRIDES = (8, 16, 32)
YUNET_INPUT = "edge_bgr_u8"  # the uint8 NHWC input we put in front of the graph


def yunet_graph(model_bytes: bytes, batch: bool = False) -> bytes:
    """YuNet with a uint8 NHWC input of any size (Transpose + Cast added in front) and
    symbolic output sizes; the weights and every other node are untouched. ``batch``: a
    symbolic batch dim too, its output Reshapes' leading 1 made 0 (keep the batch dim), so
    output ``i`` of a batch is image ``i``'s maps."""
    try:
        m = onnx.load_from_string(model_bytes)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad model file
        raise ModelError(f"detector model is not a valid ONNX file: {exc}") from None
    init_names = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init_names]
    outs = {o.name for o in m.graph.output}
    need = {f"{k}_{st}" for k in ("cls", "obj", "bbox", "kps") for st in YUNET_STRIDES}
    if len(inputs) != 1 or not need <= outs:
        raise ModelError("detector model is not a YuNet 2023 graph (cls/obj/bbox/kps outputs at "
                         "strides 8/16/32); set detector.backend = \"opencv\" for other versions")
    orig = inputs[0].name
    del m.graph.input[:]
    m.graph.input.extend([helper.make_tensor_value_info(YUNET_INPUT, TensorProto.UINT8,
                                                        ["n" if batch else 1, "h", "w", 3])])
    if batch:
        _keep_batch_in_reshapes(m)
    front = [helper.make_node("Transpose", [YUNET_INPUT], ["edge_nchw_u8"], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["edge_nchw_u8"], [orig], to=TensorProto.FLOAT)]
    nodes = front + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    for o in m.graph.output:
        for i, d in enumerate(o.type.tensor_type.shape.dim):
            d.dim_param = f"{o.name}_{i}"
    del m.graph.value_info[:]
    return m.SerializeToString()


def _keep_batch_in_reshapes(m: onnx.ModelProto) -> None:
    """YuNet's heads end in Reshape(x, [1, -1, width]): with a batch of n that would stack the
    n images' rows into one; [0, -1, width] keeps one row block per image."""
    inits = {i.name: i for i in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        init = inits[node.input[1]]
        shape = onnx.numpy_helper.to_array(init).copy()
        if shape.ndim != 1 or shape.size != 3 or shape[0] not in (0, 1):
            raise ModelError("detector model's output heads are not YuNet's [1, -1, k] reshapes")
        shape[0] = 0  # (heads of one width share one shape initializer: 0 already is done)
        init.CopyFrom(onnx.numpy_helper.from_array(shape, init.name))


class YuNetOrtDetector:
    """YuNet on ONNX Runtime. ``__call__(frame, bufs)`` fills bufs and returns the face count."""

    BATCH = False  # a symbolic batch dim in the graph (edge.face.batch's subclass)

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        self.cfg = cfg
        place = dev.resolve("detector", "onnxruntime", cfg.device, cfg.providers)
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        graph = yunet_graph(data, batch=self.BATCH)
        try:
            self.session = ort.InferenceSession(graph, detector_options(cfg.threads),
                                                providers=list(place.providers))
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"detector model {cfg.model} could not be loaded: {exc}") from None
        self.providers = self.session.get_providers()
        # None: bind the host buffers in place (CPU); 'cuda' (or 'cpu' in tests): device tensors
        self.io_device = dev.ort_device(dev.confirm("detector", place, self.providers))
        self._binding = self.session.io_binding()
        self._init_state()

    def _init_state(self) -> None:
        """Per-frame-size state, shared with the torch backend's subclass."""
        self._shape: tuple[int, int] | None = None
        self._in_size: tuple[int, int] = (0, 0)
        self._pad_w = self._pad_h = 0
        self._scale = 1.0
        self._maps: list[tuple[str, int, int, int]] = []  # name, offset, count, width
        self._maps_len = 0
        self._bound: tuple[int, ...] | None = None  # buffers the session is bound to
        self._views: dict[str, np.ndarray] = {}  # output maps as (count, width) views

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size if self._shape is not None else None

    def _prepare(self, h: int, w: int) -> None:
        dw, dh, self._scale = detector_size(w, h, self.cfg.min_face_px, self.cfg.input_width)
        self._in_size = (dw, dh)
        self._pad_w = pad32(dw)  # as FaceDetectorYN pads: to a multiple of 32
        self._pad_h = pad32(dh)
        self._maps = []
        off = 0
        for kind, width in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
            for st in YUNET_STRIDES:
                count = (self._pad_h // st) * (self._pad_w // st)
                self._maps.append((f"{kind}_{st}", off, count, width))
                off += count * width
        self._maps_len = off

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        if self._shape != (h, w):
            self._shape = (h, w)
            self._prepare(h, w)
        dw, dh = self._in_size
        pw, ph = self._pad_w, self._pad_h
        # the scaled, zero-padded frame and the output maps are face buffers: zeroed per frame
        img = bufs.whole("scaled", (ph, pw, 3), np.uint8)
        if (dw, dh) == (w, h):
            img[:dh, :dw] = frame
        elif dw == pw:  # the usual case: full-width rows, so resize straight into the buffer
            scale_frame(frame, (dw, dh), img[:dh], bufs)
        else:
            tmp = bufs.whole("scaled_unpadded", (dh, dw, 3), np.uint8)
            scale_frame(frame, (dw, dh), tmp, bufs)
            img[:dh, :dw] = tmp
        maps = bufs.whole("det_maps", (self._maps_len,), np.float32)
        self._infer(img, maps, bufs)
        return self._decode(self._views, bufs)

    def _infer(self, img: np.ndarray, maps: np.ndarray, bufs: FaceBuffers) -> None:
        """The model on the scaled frame ``img``; its output maps into ``maps`` (and _views)."""
        ph, pw = img.shape[:2]
        if self.io_device is None:
            bound = (img.ctypes.data, maps.ctypes.data, ph, pw)
            if bound != self._bound:  # the buffers are stable: bind once per frame size
                self._bind(img.ctypes.data, maps.ctypes.data, ph, pw, "cpu")
                self._views = self._map_views(maps)
                self._bound = bound
            self.session.run_with_iobinding(self._binding)
        else:
            make = dev.ort_array(self.io_device)
            d_img = bufs.device.get("det_scaled", img.shape, np.uint8, make)
            d_maps = bufs.device.get("det_maps", maps.shape, np.float32, make)
            dkey = (d_img.value.data_ptr(), d_maps.value.data_ptr(), maps.ctypes.data, ph, pw)
            if dkey != self._bound:
                self._bind(dkey[0], dkey[1], ph, pw, self.io_device)
                self._views = self._map_views(maps)
                self._bound = dkey
            d_img.write(img)
            self.session.run_with_iobinding(self._binding)
            d_maps.read_into(maps)

    def _map_views(self, maps: np.ndarray) -> dict[str, np.ndarray]:
        return {name: maps[off:off + count * width].reshape(count, width)
                for name, off, count, width in self._maps}

    def _bind(self, img_ptr: int, maps_ptr: int, ph: int, pw: int, device: str) -> None:
        """Input and every output map bound at their offsets in the (host or device) buffers."""
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        b.bind_input(YUNET_INPUT, device, 0, np.uint8, [1, ph, pw, 3], img_ptr)
        for name, off, count, width in self._maps:
            b.bind_output(name, device, 0, np.float32, [1, count, width], maps_ptr + 4 * off)

    def _decode(self, views: dict[str, np.ndarray], bufs: FaceBuffers) -> int:
        """FaceDetectorYN's post-processing: score = sqrt(cls * obj), boxes and points from
        grid offsets, then NMS. Candidate rows live in a zeroed buffer."""
        cfg = self.cfg
        cand = bufs.whole("det_cand", (MAX_CANDIDATES, ROW), np.float32)
        k = 0
        for st in YUNET_STRIDES:
            cols = self._pad_w // st
            cls = np.clip(views[f"cls_{st}"][:, 0], 0.0, 1.0)
            obj = np.clip(views[f"obj_{st}"][:, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            idx = np.flatnonzero(score >= cfg.score_threshold)
            if idx.size == 0:
                continue
            if k + idx.size > MAX_CANDIDATES:
                idx = idx[np.argsort(-score[idx])[: MAX_CANDIDATES - k]]
            m = idx.size
            r, c = np.divmod(idx, cols)
            rows = cand[k:k + m]
            bb = views[f"bbox_{st}"]
            kp = views[f"kps_{st}"]
            cx = (c + bb[idx, 0]) * st
            cy = (r + bb[idx, 1]) * st
            rows[:, 2] = np.exp(bb[idx, 2]) * st
            rows[:, 3] = np.exp(bb[idx, 3]) * st
            rows[:, 0] = cx - rows[:, 2] / 2.0
            rows[:, 1] = cy - rows[:, 3] / 2.0
            for p in range(5):
                rows[:, 4 + 2 * p] = (kp[idx, 2 * p] + c) * st
                rows[:, 5 + 2 * p] = (kp[idx, 2 * p + 1] + r) * st
            rows[:, 14] = score[idx]
            k += m
        if k == 0:
            bufs.n = 0
            return 0
        order = nms_order(cand, k, cfg.score_threshold, cfg.nms_threshold)
        return store_rows(cand, order, bufs, self._scale, cfg.min_face_px)


def load_yunet_torch(cfg: DetectorSection, models_dir: str | None = None) -> Detector:
    """``detector.backend = "torch"``: YuNet converted by onnx2torch from the same verified bytes
    (edge.face.torch_backend), or on ONNX Runtime on the CPU when torch cannot run here."""
    place = dev.resolve("detector", "torch", cfg.device, cfg.providers)
    if place.backend != "torch":  # the one notice was logged by resolve
        return YuNetOrtDetector(cfg.model_copy(update={"backend": "onnxruntime", "device": "cpu"}),
                                models_dir)
    detector: Detector = dev.torch_backend().TorchYuNetDetector(cfg, models_dir, place.device)
    return detector
