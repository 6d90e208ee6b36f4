"""SCRFD (an insightface pack's detector) through the registry, into FaceBuffers, on real faces.

The model is a test-only file in ../shared/models (never bundled): these tests skip without it.
YuNet is the reference: SCRFD must find the same faces, and the node must alert the same
enrolled people on the arcade clip with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edge.config import load_config
from edge.errors import ModelError
from edge.face.detectors.scrfd import ScrfdDetector
from edge.face.photos import FaceEngine
from edge.face.registry import FaceModels, load_face_models, make_detector
from edge.face.scaling import pad32
from edge.node.app import build_node
from edge.node.sources import open_source
from edge.privacy import FaceBuffers
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from tests.conftest import SHARED, shared_path

SCRFD_FILE = SHARED.parent / "models" / "scrfd_2.5g_bnkps" / "scrfd_2.5g_bnkps.onnx"
SCRFD_SHA = "bc24bb349491481c3ca793cf89306723162c280cb284c5a5e49df3760bf5c2ce"
# insightface's own default score threshold for SCRFD (its scores run lower than YuNet's 0.7)
SCRFD_THRESHOLD = 0.5
# How close SCRFD's faces must be to YuNet's on t1.jpg (two models, two annotation styles):
MIN_IOU = 0.75  # measured 0.83-0.97
MAX_MEAN_POINT_DIST = 0.15  # mean of the 5 points, as a fraction of the face width; measured <= 0.11
MAX_POINT_DIST = 0.25  # any one point; measured <= 0.16
# On the arcade clip: faces found over the whole clip (measured 623 vs YuNet's 621)
MAX_FACE_COUNT_DIFF = 0.10


@pytest.fixture(scope="module")
def scrfd_file() -> Path:
    if not SCRFD_FILE.exists():
        pytest.skip(f"needs ../shared/models (test-only SCRFD export kept beside the repo): "
                    f"{SCRFD_FILE} is absent")
    return SCRFD_FILE


def _cfg(scrfd: Path | None = None, **det):
    over = {"alerts": {"console": False}, "privacy": {"lock_memory": False}, "detector": dict(det)}
    if scrfd is not None:
        over["detector"].update(kind="insightface", model=str(scrfd), sha256=SCRFD_SHA)
    return load_config(overrides=over)


def _detect(det, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = FaceBuffers(32, 128, lock=False)
    n = det(img, b)
    out = b.boxes[:n].copy(), b.landmarks[:n].copy(), b.scores[:n].copy()
    b.zeroize()
    assert b.is_clear()
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))


def _t1(sample_images: Path, width: int | None = None) -> np.ndarray:
    img = cv2.imread(str(sample_images / "t1.jpg"))
    if width:
        img = cv2.resize(img, (width, int(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
    return img


def test_registry_loads_scrfd_for_an_insightface_pack(scrfd_file):
    det = load_face_models(_cfg(scrfd_file)).detector
    assert isinstance(det, ScrfdDetector)
    assert (det.strides, det.anchors) == ((8, 16, 32), 2)  # the 9-output "bnkps" layout


@pytest.mark.parametrize("width", [576, 640])
def test_decoding_equals_insightfaces_own_scrfd(scrfd_file, sample_images, width):
    """At a size where no scaling or letterboxing differs, our buffers hold exactly what
    insightface's SCRFD.detect returns (same preprocessing, anchors, distances)."""
    from insightface.model_zoo import model_zoo

    img = _t1(sample_images, width)
    h = img.shape[0]
    det = make_detector(_cfg(scrfd_file, input_width=width, min_face_px=8, score_threshold=0.5,
                             nms_threshold=0.4).detector)
    b = FaceBuffers(32, 128, lock=False)
    n = det(img, b)
    ours = np.hstack([b.boxes[:n], b.scores[:n, None], b.landmarks[:n].reshape(n, 10)])
    ref_model = model_zoo.get_model(str(scrfd_file), providers=["CPUExecutionProvider"])
    ref_model.prepare(-1, det_thresh=0.5, nms_thresh=0.4)
    dets, kps = ref_model.detect(img, input_size=(pad32(width), pad32(h)))
    ref = np.hstack([dets[:, :2], dets[:, 2:4] - dets[:, :2], dets[:, 4:5], kps.reshape(len(kps), 10)])
    ref = ref[np.argsort(-ref[:, 4])]
    assert n == len(ref) == 6
    np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("width", [None, 1920])
def test_scrfd_finds_the_faces_yunet_finds_and_zeroes_its_buffers(scrfd_file, models_ready,
                                                                  sample_images, width):
    img = _t1(sample_images, width)
    yb, yl, _ = _detect(make_detector(_cfg().detector), img)
    scrfd = make_detector(_cfg(scrfd_file).detector)
    bufs = FaceBuffers(32, 128, lock=False)
    n = scrfd(img, bufs)
    assert n == len(yb) == 6
    assert (np.diff(bufs.scores[:n]) <= 0).all(), "best first"
    unmatched = set(range(n))
    for box, pts in zip(yb, yl, strict=True):
        ious = [_iou(box, bufs.boxes[j]) for j in range(n)]
        j = int(np.argmax(ious))
        assert ious[j] >= MIN_IOU
        unmatched.discard(j)
        dist = np.linalg.norm(bufs.landmarks[j] - pts, axis=1) / box[2]
        assert dist.mean() <= MAX_MEAN_POINT_DIST and dist.max() <= MAX_POINT_DIST, dist
    assert not unmatched, "each YuNet face matches a different SCRFD face"
    # SCRFD's own buffers saw the frame and its maps: they are FaceBuffers, cleared by zeroize
    for key in ("scaled", "det_blob", "det_maps", "det_cand"):
        assert bufs._whole[key].any(), f"{key} is not where SCRFD keeps its data"
    bufs.zeroize()
    assert bufs.is_clear()


def test_one_scrfd_serves_two_pipelines_without_mixing_their_buffers(scrfd_file, sample_images):
    img = _t1(sample_images)
    det = make_detector(_cfg(scrfd_file).detector)
    first, second = FaceBuffers(32, 128, lock=False), FaceBuffers(32, 128, lock=False)
    assert det(img, first) == 6
    first.zeroize()
    assert det(img, second) == 6
    assert first.is_clear(), "the second pipeline's frame was written into the first one's buffers"
    second.zeroize()
    assert second.is_clear()


def _variant(src: Path, tmp_path: Path, edit) -> tuple[Path, str]:
    """A test-only edit of the real export, written to tmp_path (never into the repo)."""
    m = onnx.load(str(src))
    edit(m)
    p = tmp_path / "variant.onnx"
    p.write_bytes(m.SerializeToString())
    return p, hashlib.sha256(p.read_bytes()).hexdigest()


def test_fixed_size_export_gets_the_frame_scaled_to_fit(scrfd_file, sample_images, tmp_path):
    def fix_640(m):
        dims = m.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = 640, 640

    path, sha = _variant(scrfd_file, tmp_path, fix_640)
    img = _t1(sample_images)
    fixed = make_detector(_cfg(**{"kind": "insightface", "model": str(path), "sha256": sha}).detector)
    boxes, _, _ = _detect(fixed, img)
    assert fixed.input_size == (640, 443)  # 1280 x 886 fitted into 640 x 640, aspect kept
    ref, _, _ = _detect(make_detector(_cfg(scrfd_file).detector), img)
    assert len(boxes) == len(ref) == 6
    assert min(max(_iou(a, b) for b in ref) for a in boxes) >= MIN_IOU


def test_non_scrfd_graphs_are_refused(scrfd_file, models_ready, tmp_path):
    from edge.face import model_files as models

    yunet = models.resolve("yunet_2023mar")
    with pytest.raises(ModelError, match="not an SCRFD graph"):
        make_detector(_cfg(kind="insightface", model=str(yunet)).detector)

    def drop_points(m):
        keep = list(m.graph.output)[:6]
        del m.graph.output[:]
        m.graph.output.extend(keep)

    path, sha = _variant(scrfd_file, tmp_path, drop_points)
    with pytest.raises(ModelError, match="without the 5 points"):
        make_detector(_cfg(kind="insightface", model=str(path), sha256=sha).detector)
    with pytest.raises(ModelError, match="sha256"):
        make_detector(_cfg(kind="insightface", model=str(scrfd_file), sha256="0" * 64).detector)


# ------------------------------------------------------------------ the node on the arcade clip


class _Sink:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    def send(self, alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        self.subjects.append(alert.subject_id)


def _arcade_watchlist(engine: FaceEngine, video: Path, sample_images: Path) -> Watchlist:
    """Five people of the clip (the largest faces of the frame with most faces of 48 px or
    more, among a few spread over it), plus t1.jpg's six people, who are not in it."""
    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    best: list = []
    for frac in (0.95, 0.8, 0.7, 0.5, 0.1):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(n * frac))
        ok, img = cap.read()
        big = [f for f in engine.faces(img) if f.bbox[2] >= 48] if ok else []
        if len(big) > len(best):
            best = big
    cap.release()
    people = {f"V{k + 1}": f.embedding for k, f in enumerate(best[:5])}
    people |= {f"H{k + 1}": f.embedding for k, f in enumerate(engine.faces(_t1(sample_images)))}
    subjects = {s: Subject(s, s, "test") for s in people}
    entries = [Entry(f"{s}/1", s, "ref.jpg") for s in people]
    return Watchlist(WatchlistMeta(deployment_id="test"), subjects, entries, np.stack(list(people.values())))


def _run_node(cfg, wl: Watchlist, models: FaceModels, video: Path) -> tuple[int, list[str]]:
    sink = _Sink()
    node = build_node(cfg, wl, models=models, sink=sink)
    dirty: list[int] = []

    def check(frame, alerts) -> None:
        if not node.bufs.is_clear():
            dirty.append(frame.index)

    node.run(open_source(str(video), node.ring), on_frame=check)
    assert node.stats.frames > 100 and node.stats.frames_failed == 0
    assert not dirty, "face buffers (SCRFD's included) must be zero once each frame is decided"
    return node.stats.faces_seen, sink.subjects


def test_node_with_scrfd_alerts_the_people_yunet_alerts_on_the_arcade_clip(scrfd_file, models_ready,
                                                                           sample_images):
    video = shared_path("videos", "walking_arcade_1080p.mp4")  # 105 frames, 1080p
    yunet_cfg = _cfg()
    yunet = load_face_models(yunet_cfg)
    wl = _arcade_watchlist(FaceEngine(yunet_cfg, yunet), video, sample_images)
    y_faces, y_alerts = _run_node(yunet_cfg, wl, yunet, video)

    scrfd_cfg = _cfg(scrfd_file, score_threshold=SCRFD_THRESHOLD)
    scrfd = FaceModels(make_detector(scrfd_cfg.detector), yunet.embedder)  # one recogniser, shared
    assert isinstance(scrfd.detector, ScrfdDetector)
    s_faces, s_alerts = _run_node(scrfd_cfg, wl, scrfd, video)

    assert len(set(y_alerts)) >= 3, "the reference run must alert most of the enrolled people"
    assert abs(s_faces - y_faces) <= MAX_FACE_COUNT_DIFF * y_faces, (s_faces, y_faces)
    assert set(y_alerts) <= set(s_alerts), "every person YuNet's node alerts, SCRFD's alerts too"
    assert all(s.startswith("V") for s in s_alerts), "nobody outside the clip is alerted"
