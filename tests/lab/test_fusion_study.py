"""The fusion study (benchmarks/fusion_study.py) on real faces: its quality-gate replay against
the node's own QualityGate on real crops, and one slice of ../shared/data end to end
(per-track k = 1 must reproduce `edge eval`'s single-image figures exactly). The hand-computed
maths is in test_fusion_rules.py.
"""

from __future__ import annotations

import sys

import cv2
import pytest
from conftest import REPO, pad, shared_path

sys.path.insert(0, str(REPO / "benchmarks"))
import fusion_study as F  # noqa: E402

from edge.face import quality as q  # noqa: E402
from edge.lab.evaluation.run import EvalOptions, run_evaluation  # noqa: E402

# ----------------------------------------------------------------------------- gates on real crops


def test_gate_replay_matches_quality_gate(engine, sample_images) -> None:
    """gate_reasons (recorded box, landmarks, sharpness) gives QualityGate's verdicts."""
    paths = [sample_images / "t1.jpg", sample_images / "Tom_Hanks_54745.png"]
    faces = []
    for p in paths:
        img = cv2.imread(str(p))
        for fr in engine.faces(img):
            faces.append((img, fr))
    assert faces
    settings = [F.GATE_NODE, F.GateSetting("strict", max_yaw_deg=10, max_pitch_deg=10,
                                           min_sharpness=400, min_face_px=60)]
    fd = F.empty_frames(len(faces), 1, engine.dim)
    for i, (_, fr) in enumerate(faces):
        fd.ok[i, 0] = True
        fd.box[i, 0], fd.landmarks[i, 0] = fr.bbox, fr.landmarks
        fd.sharp_node[i, 0] = q.sharpness(fr.crop)
    for st in settings:
        got = F.gate_reasons(fd, st)[:, 0]
        gate = q.QualityGate(st.section())
        want = []
        for _, fr in faces:
            r = gate.pre(fr.bbox, fr.landmarks)
            want.append(r if r != q.OK else gate.post(fr.crop))
        assert list(got) == want
    assert F.gate_reasons(fd, F.GATE_OFF)[:, 0].tolist() == [q.OK] * len(faces)


def test_photo_sharpness_ignores_the_black_border(engine, sample_images) -> None:
    """On a padded tight crop the node's measure sees the border edge; the photo-only
    measure sees the blur."""
    img = cv2.imread(str(sample_images / "t1.jpg"))
    fr = engine.faces(img)[0]
    x, y, w, h = (int(v) for v in fr.bbox)
    tight = img[max(0, y - h // 4): y + h + h // 4, max(0, x - w // 4): x + w + w // 4]
    blurred = cv2.GaussianBlur(tight, (0, 0), 3)
    vals = []
    for im in (tight, blurred):
        f = engine.faces(pad(im))[0]
        vals.append((q.sharpness(f.crop), F.photo_sharpness(pad(im), f.landmarks)[0]))
    assert vals[1][1] < 0.5 * vals[0][1]  # photo-only measure: blur clearly lower


# ----------------------------------------------------------------------------- real data slice


def test_real_slice_k1_reproduces_edge_eval(engine, tmp_path) -> None:
    lfw = shared_path("lfw_pairs_150")
    utk = shared_path("utkface_adult_balanced")
    cache = tmp_path / "cache"
    opts = F.FusionOptions(identities=lfw, impostors=utk, limit_identities=40, limit_impostors=40,
                           frames=2, min_embeddings=(1, 2), fpir_targets=(0.1,),
                           watchlist_size=100, target_fpir=0.01, cache_dir=cache, progress=False,
                           kinds=("augmented",), fixed_thresholds=(0.45,))
    res = F.run_fusion(opts, engine)
    ev = run_evaluation(EvalOptions(identities=lfw, impostors=utk, limit_identities=40,
                                    limit_impostors=40, exclusions="lfw,utkface",
                                    watchlist_size=100, target_fpir=0.01, cache_dir=cache,
                                    progress=False, fpir_targets=(0.1,)), engine).summary
    rep = ev["variants"]["cleaned"]["report"]
    k1 = res["tracks"]["augmented"]["off"]["1"]["1"]
    assert k1["fixed"][0]["n_mated"] == rep["mated_searches"]
    assert k1["fixed"][0]["n_nonmated"] == rep["nonmated_searches"]
    # single frame, m = 1: the node's track rule is the single-image open-set search, so
    # thresholds fitted on the calibration half are edge eval's
    assert res["halves"]["report"]["gallery"] == rep["gallery_size"]
    cal = ev["variants"]["cleaned"]["calibration"]["tpir_at_fpir_direct"][0]
    assert k1["direct"][0]["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)
    # the calibrated 10k threshold of k = 1, m = 1 is edge eval's worst-group threshold
    assert k1["calibrated_10k"]["threshold"] == pytest.approx(
        ev["variants"]["cleaned"]["calibration"]["threshold"], abs=1e-6)
    assert k1["calibrated_10k"]["tpir"] == pytest.approx(
        rep["at_calibrated"]["operating_point"]["tpir"], abs=1e-9)
    # two frames: m = 1 can only add alarms and hits; every rate is a rate
    k2 = res["tracks"]["augmented"]["off"]["1"]["2"]
    for a, b in zip(k1["fixed"], k2["fixed"], strict=True):
        assert b["tpir"] >= a["tpir"] and b["fpir"] >= a["fpir"]
    for row in (k1, k2):
        for p in row["direct"] + row["fixed"]:
            assert 0 <= p["tpir"] <= 1 and 0 <= p["fpir"] <= 1
    # gate summary counts every photo with a face once
    g = res["gates"][F.GATE_NODE.name]["report"]["photos"]
    assert g["total"] == sum(v for k_, v in g.items() if k_ != "total")
