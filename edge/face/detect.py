"""Face detection: YuNet (on ONNX Runtime, or OpenCV's FaceDetectorYN), or an insightface pack.

Detections are written into :class:`edge.privacy.FaceBuffers` (boxes, scores, 5-point
landmarks in frame pixels); the detector's own output arrays are zeroed after copying.
The detector input is the frame scaled down to the smallest width at which faces of
``min_face_px`` are still found, which is most of the speed on a 2-core CPU.

YuNet runs on ONNX Runtime by default: the same weights, ~2x faster than OpenCV's DNN on
these CPUs (docs/PERFORMANCE.md), and its input, output maps and candidate rows are all
buffers we own and zero, bound to the session with I/O binding. The graph gets a uint8
NHWC input in front (Transpose + Cast inside ORT), so our scaled frame is read in place.
The decoding of its stride-8/16/32 maps follows OpenCV's ``FaceDetectorYN`` exactly; a test
compares the two backends on real frames.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from edge.config import DetectorSection
from edge.errors import ModelError
from edge.face import model_files as models
from edge.privacy import FaceBuffers

log = logging.getLogger(__name__)
# OpenCV's DNN prints backend notices on stderr for every net; keep real errors only.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

# YuNet finds faces down to roughly this many pixels wide at its input.
YUNET_MIN_FACE_AT_INPUT = 14
# Scaling to the detector width: OpenCV's INTER_AREA (proper averaging) takes 4.6-6.7 ms for
# 1920 -> 864 (a non-integer ratio: its slow path), a third of the whole detector; bilinear
# takes 0.5 ms but aliases at ratios over 2, which moves landmarks enough to lose a borderline
# match (arcade clip: one of 5 enrolled people). So: INTER_AREA by a whole factor (its fast
# path, 0.3 ms), then bilinear for the remaining ratio under 2 (0.3 ms). Against INTER_AREA
# on the arcade clip: 621 vs 626 faces (620 in common), landmarks within 0.6% of the face
# width (median); the smaller clips identical or one face more.
SCALE_INTERP = cv2.INTER_LINEAR


def scale_frame(frame: np.ndarray, size: tuple[int, int], dst: np.ndarray, bufs: FaceBuffers) -> None:
    """``frame`` scaled to ``size`` (w, h) into ``dst``; any intermediate is a zeroed face buffer."""
    h, w = frame.shape[:2]
    k = min(w // size[0], h // size[1])
    if k >= 2:
        hk, wk = h // k, w // k
        mid = bufs.whole("scaled_mid", (hk, wk, 3), np.uint8)
        cv2.resize(frame[: hk * k, : wk * k], (wk, hk), dst=mid, interpolation=cv2.INTER_AREA)
        frame = mid
    cv2.resize(frame, size, dst=dst, interpolation=SCALE_INTERP)

def detector_width(frame_w: int, min_face_px: int, configured: int = 0) -> int:
    """Detector input width: configured, or just small enough that min_face_px faces survive."""
    if configured:
        return min(configured, frame_w)
    width = frame_w * YUNET_MIN_FACE_AT_INPUT / max(min_face_px, 1)
    width = int(math.ceil(max(320.0, min(float(frame_w), width)) / 32.0) * 32)
    return min(width, frame_w)


class YuNetDetector:
    """OpenCV YuNet. ``__call__(frame, bufs)`` fills bufs and returns the face count."""

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        self.cfg = cfg
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        try:
            self.net = cv2.FaceDetectorYN.create(
                "onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8), (320, 320),
                cfg.score_threshold, cfg.nms_threshold, 5000,
            )
        except cv2.error as exc:
            raise ModelError(f"detector model {cfg.model} could not be loaded: {exc.msg}") from None
        self._in_size: tuple[int, int] | None = None
        self._scaled: np.ndarray | None = None
        self._scale = 1.0

    def _prepare(self, frame_shape: tuple[int, ...], bufs: FaceBuffers) -> None:
        h, w = frame_shape[:2]
        dw = detector_width(w, self.cfg.min_face_px, self.cfg.input_width)
        dh = max(1, int(round(h * dw / w)))
        self._scale = w / dw
        self._in_size = (dw, dh)
        self.net.setInputSize((dw, dh))
        if dw != w:
            # the scaled copy of the frame is a face buffer too: allocated locked, zeroed per frame
            self._scaled = bufs.scaled_frame((dh, dw, 3))
        else:
            self._scaled = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        if self._in_size is None or self._shape != (h, w):
            self._shape = (h, w)
            self._prepare(frame.shape, bufs)
        img = frame
        if self._scaled is not None:
            scale_frame(frame, self._in_size, self._scaled, bufs)
            img = self._scaled
        _, faces = self.net.detect(img)
        if faces is None or len(faces) == 0:
            bufs.n = 0
            return 0
        n = store_rows(faces, np.argsort(-faces[:, 14]), bufs, self._scale, self.cfg.min_face_px)
        faces.fill(0)
        return n

    _shape: tuple[int, int] | None = None


def store_rows(faces: np.ndarray, order: np.ndarray, bufs: FaceBuffers, s: float, min_face_px: int) -> int:
    """Copy YuNet rows (x, y, w, h, 5 points, score at detector scale), best first, into bufs
    in frame pixels, skipping faces narrower than ``min_face_px``."""
    n = 0
    for i in order:
        if n >= bufs.max_faces:
            break
        row = faces[i]
        fw = row[2] * s
        if fw < min_face_px:
            continue
        bufs.det_raw[n] = row
        bufs.boxes[n, 0] = row[0] * s
        bufs.boxes[n, 1] = row[1] * s
        bufs.boxes[n, 2] = fw
        bufs.boxes[n, 3] = row[3] * s
        np.multiply(row[4:14].reshape(5, 2), s, out=bufs.landmarks[n])
        bufs.scores[n] = row[14]
        n += 1
    bufs.n = n
    return n


YUNET_STRIDES = (8, 16, 32)
YUNET_INPUT = "edge_bgr_u8"  # the uint8 NHWC input we put in front of the graph
MAX_CANDIDATES = 4096  # rows above the score threshold before NMS (a crowd gives a few hundred)


def yunet_graph(model_bytes: bytes) -> bytes:
    """YuNet with a uint8 NHWC input of any size (Transpose + Cast added in front) and
    symbolic output sizes; the weights and every other node are untouched."""
    import onnx
    from onnx import TensorProto, helper

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
                                                        [1, "h", "w", 3])])
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


class YuNetOrtDetector:
    """YuNet on ONNX Runtime. ``__call__(frame, bufs)`` fills bufs and returns the face count."""

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        import onnxruntime as ort

        from edge.face.embed import pick_providers, usable_cores

        self.cfg = cfg
        data = models.read_verified(cfg.model, models.models_dir(models_dir), cfg.sha256)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        # detection runs alone in the frame thread (the embedder waits for it), so all cores
        # (up to 8: a 0.2 MB model gains nothing from more)
        so.intra_op_num_threads = cfg.threads or min(8, usable_cores())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: the decode thread and the embedder need those cycles
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(yunet_graph(data), so,
                                                providers=pick_providers(cfg.providers))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"detector model {cfg.model} could not be loaded: {exc}") from None
        self.providers = self.session.get_providers()
        self._binding = self.session.io_binding()
        self._shape: tuple[int, int] | None = None
        self._in_size: tuple[int, int] | None = None
        self._pad_h = 0
        self._scale = 1.0
        self._maps: list[tuple[str, int, int, int]] = []  # name, offset, count, width
        self._bound: tuple[int, int, int, int] | None = None  # buffers the session is bound to
        self._views: dict[str, np.ndarray] = {}  # output maps as (count, width) views

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size

    def _prepare(self, h: int, w: int) -> None:
        dw = detector_width(w, self.cfg.min_face_px, self.cfg.input_width)
        dh = max(1, int(round(h * dw / w)))
        self._scale = w / dw
        self._in_size = (dw, dh)
        self._pad_w = (dw - 1) // 32 * 32 + 32  # as FaceDetectorYN pads: to a multiple of 32
        self._pad_h = (dh - 1) // 32 * 32 + 32
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
        dw, dh = self._in_size  # type: ignore[misc]
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
        bound = (img.ctypes.data, maps.ctypes.data, ph, pw)
        if bound != self._bound:  # the buffers are stable: bind once per frame size
            self._bind(img, maps, ph, pw)
            self._bound = bound
        self.session.run_with_iobinding(self._binding)
        return self._decode(self._views, bufs)

    def _bind(self, img: np.ndarray, maps: np.ndarray, ph: int, pw: int) -> None:
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        b.bind_input(YUNET_INPUT, "cpu", 0, np.uint8, [1, ph, pw, 3], img.ctypes.data)
        self._views = {}
        for name, off, count, width in self._maps:
            v = maps[off:off + count * width]
            b.bind_output(name, "cpu", 0, np.float32, [1, count, width], v.ctypes.data)
            self._views[name] = v.reshape(count, width)

    def _decode(self, views: dict[str, np.ndarray], bufs: FaceBuffers) -> int:
        """FaceDetectorYN's post-processing: score = sqrt(cls * obj), boxes and points from
        grid offsets, then NMS. Candidate rows live in a zeroed buffer."""
        cfg = self.cfg
        cand = bufs.whole("det_cand", (MAX_CANDIDATES, 15), np.float32)
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
        keep = cv2.dnn.NMSBoxes(cand[:k, 0:4].astype(np.float64), cand[:k, 14].astype(np.float64),
                                cfg.score_threshold, cfg.nms_threshold, 1.0, 5000)
        order = np.asarray(keep, np.int64).reshape(-1)
        return store_rows(cand, order, bufs, self._scale, cfg.min_face_px)


class InsightFaceDetector:
    """An insightface SCRFD/RetinaFace pack loaded through ``insightface.model_zoo``.

    For users with insightface model packs; the bundled default is YuNet.
    """

    def __init__(self, cfg: DetectorSection, models_dir: str | None = None) -> None:
        from insightface.model_zoo import model_zoo

        self.cfg = cfg
        path = models.resolve(cfg.model, models.models_dir(models_dir), cfg.sha256)
        try:
            self.model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file
            raise ModelError(f"detector model {path.name} could not be loaded: {exc}") from None
        if self.model is None or getattr(self.model, "taskname", "") != "detection":
            raise ModelError(f"{path.name} is not an insightface detection model")
        self.model.prepare(-1, det_thresh=cfg.score_threshold)
        self._in_size: tuple[int, int] | None = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self._in_size

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int:
        h, w = frame.shape[:2]
        dw = detector_width(w, self.cfg.min_face_px, self.cfg.input_width)
        size = (dw, int(math.ceil(h * dw / w / 32.0) * 32))
        self._in_size = size
        det, kpss = self.model.detect(frame, input_size=size, max_num=bufs.max_faces)
        n = 0
        for i in range(len(det)):
            x1, y1, x2, y2, score = det[i]
            if x2 - x1 < self.cfg.min_face_px or kpss is None:
                continue
            bufs.boxes[n] = (x1, y1, x2 - x1, y2 - y1)
            bufs.scores[n] = score
            bufs.landmarks[n] = kpss[i]
            n += 1
        det.fill(0)
        if kpss is not None:
            kpss.fill(0)
        bufs.n = n
        return n


def make_detector(cfg: DetectorSection, models_dir: str | None = None):
    """The configured detector."""
    if cfg.kind == "yunet":
        if cfg.backend == "onnxruntime":
            return YuNetOrtDetector(cfg, models_dir)
        return YuNetDetector(cfg, models_dir)
    return InsightFaceDetector(cfg, models_dir)
