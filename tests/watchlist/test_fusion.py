"""Recogniser fusion: the calibrated score, the list that stores it, and the refusals.

Unit tests use synthetic unit vectors; the real-model tests embed photos with SFace and the
user-supplied EdgeFace-XS from ../shared/models (test use only; skipped without it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EDGE, REPO
from enrol_helpers import people_and_strangers, walk_by_clip

from edge.config import load_config
from edge.errors import ConfigError, WatchlistError
from edge.watchlist import fusion, lifecycle
from edge.watchlist.fusion import ModelStats
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from edge.watchlist.vault import create_key_file

EDGEFACE = REPO.parent / "shared" / "models" / "edgeface_xs" / "edgeface_xs.onnx"
EDGEFACE_SHA = "e0e6caf2f5dd1118401a709dd6ac0d5b60b18bc441991b1b88afde8f5f4f61bb"
EDGEFACE_REASON = "needs ../shared/models/edgeface_xs (test-only second recogniser, not shipped)"


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fused_list(rng, models: list[ModelStats], n: int = 6) -> tuple[Watchlist, np.ndarray]:
    blocks = [_unit(rng, n, m.dim) for m in models]
    emb = np.concatenate(blocks, axis=1)
    subjects = {f"S{i}": Subject(f"S{i}", f"Person {i}") for i in range(n)}
    entries = [Entry(f"r{i}", f"S{i}", f"{i}.jpg") for i in range(n)]
    wl = Watchlist(WatchlistMeta(deployment_id="t"), subjects, entries, emb)
    wl.set_fusion(models)
    return wl, emb


@pytest.mark.unit
def test_fused_search_is_the_weighted_mean_of_z_scores_on_the_first_models_spread():
    rng = np.random.default_rng(1)
    models = [ModelStats("a", "1" * 64, 8, 1.0, 0.05, 0.09), ModelStats("b", "2" * 64, 16, 3.0, 0.01, 0.06)]
    wl, gallery = _fused_list(rng, models)
    probes = np.concatenate([_unit(rng, 5, 8), _unit(rng, 5, 16)], axis=1)
    sims, ids = np.zeros((5, 1), np.float32), np.zeros((5, 1), np.int64)
    wl.search(probes, sims, ids)
    c_a = probes[:, :8] @ gallery[:, :8].T
    c_b = probes[:, 8:] @ gallery[:, 8:].T
    z = 0.25 * (c_a - 0.05) / 0.09 + 0.75 * (c_b - 0.01) / 0.06
    # the means shift every score by one constant: the ranking is the z-mean's ...
    assert (ids[:, 0] == np.argmax(z, axis=1)).all()
    # ... and the score is it, put back on model a's spread, less that constant
    const = 0.09 * (0.25 * 0.05 / 0.09 + 0.75 * 0.01 / 0.06)
    np.testing.assert_allclose(sims[:, 0], 0.09 * z.max(axis=1) + const, atol=1e-5)


@pytest.mark.unit
def test_weights_and_statistics_survive_the_vault_and_a_single_model_list_is_unchanged(tmp_path):
    rng = np.random.default_rng(2)
    models = [ModelStats("a", "1" * 64, 8, 1.0, 0.05, 0.09, 500, "eval"),
              ModelStats("b", "2" * 64, 8, 1.0, 0.0, 0.05, 500, "eval")]
    wl, _ = _fused_list(rng, models)
    key = create_key_file(tmp_path / "k.key")
    wl.save(tmp_path / "wl", key)
    back = Watchlist.load(tmp_path / "wl", key)
    assert [(m.name, m.weight, m.impostor_std, m.source) for m in back.fusion] == [
        ("a", 1.0, 0.09, "eval"), ("b", 1.0, 0.05, "eval")]
    probe = np.concatenate([_unit(rng, 1, 8), _unit(rng, 1, 8)], axis=1)
    s1, i1 = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int64)
    s2, i2 = s1.copy(), i1.copy()
    wl.search(probe, s1, i1)
    back.search(probe, s2, i2)
    assert i1[0, 0] == i2[0, 0] and s1[0, 0] == pytest.approx(s2[0, 0])
    # one model: the index holds the embeddings themselves (cosine, zero extra cost)
    single = Watchlist(WatchlistMeta(), {"S": Subject("S", "S")}, [Entry("r", "S", "x")],
                       _unit(rng, 1, 8))
    assert not single.fusion
    s, i = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int64)
    single.search(single.embeddings, s, i)
    assert s[0, 0] == pytest.approx(1.0)


@pytest.mark.unit
def test_statistics_need_enough_impostor_pairs_and_must_name_the_configured_files(tmp_path):
    rng = np.random.default_rng(3)
    cfgd = [ModelStats("a", "1" * 64, 8, 1.0), ModelStats("b", "2" * 64, 8, 1.0)]
    few = np.concatenate([_unit(rng, 3, 8), _unit(rng, 3, 8)], axis=1)
    with pytest.raises(WatchlistError, match="fewer than"):
        fusion.calibrate(cfgd, few, ["A", "B", "C"])
    bg = np.concatenate([_unit(rng, 60, 8), _unit(rng, 60, 8)], axis=1)
    got = fusion.calibrate(cfgd, few, ["A", "B", "C"], background=bg)
    assert got[0].impostor_pairs == 180 and 0 < got[1].impostor_std < 1
    assert "background" in got[0].source
    f = tmp_path / "stats.json"
    fusion.write_stats(f, got)
    assert fusion.calibrate(cfgd, few, ["A"] * 3, measured=fusion.read_stats(f))[1].impostor_std \
        == pytest.approx(got[1].impostor_std)
    other = [ModelStats("a", "1" * 64, 8), ModelStats("c", "3" * 64, 8)]
    with pytest.raises(WatchlistError, match="no figures for recogniser c"):
        fusion.calibrate(other, few, ["A"] * 3, measured=got)
    f.write_text(json.dumps({"fusion": [{"name": "a", "sha256": "x", "dim": 8, "impostor_std": -1}]}))
    with pytest.raises(WatchlistError, match="out of range"):
        fusion.read_stats(f)
    f.write_text("not json")
    with pytest.raises(WatchlistError, match="not a fusion statistics file"):
        fusion.read_stats(f)


@pytest.mark.unit
def test_config_fuse_entries_are_validated():
    with pytest.raises(ConfigError, match="twice"):
        load_config(overrides={"recognizer": {"fuse": [{"model": "sface_2021dec"}]}})
    with pytest.raises(ConfigError):
        load_config(overrides={"recognizer": {"fuse": [{"kind": "onnx", "model": "x.onnx", "weight": 0}]}})


def _fused_cfg():
    if not EDGEFACE.is_file():
        pytest.skip(EDGEFACE_REASON)
    return load_config(overrides={"recognizer": {"fuse": [
        {"kind": "onnx", "model": str(EDGEFACE), "sha256": EDGEFACE_SHA}]}})


def test_a_list_for_other_models_is_refused_both_ways(models_ready):
    cfg = _fused_cfg()
    rng = np.random.default_rng(4)
    sface_sha = lifecycle.member_identities(load_config())[0][1]
    fused, _ = _fused_list(rng, [ModelStats("sface_2021dec", sface_sha, 128),
                                 ModelStats("edgeface_xs", EDGEFACE_SHA, 512)])
    lifecycle.check_model(fused, cfg)  # the same two files: accepted
    with pytest.raises(WatchlistError, match="made with recognisers sface_2021dec \\+ edgeface_xs"):
        lifecycle.check_model(fused, load_config())
    single = Watchlist(WatchlistMeta(model="sface_2021dec", model_sha256=sface_sha),
                       {"S": Subject("S", "S")}, [Entry("r", "S", "x")], _unit(rng, 1, 128))
    with pytest.raises(WatchlistError, match="this node fuses"):
        lifecycle.check_model(single, cfg)
    wrong = load_config(overrides={"recognizer": {"fuse": [
        {"kind": "onnx", "model": str(EDGEFACE), "sha256": "0" * 64}]}})
    from edge.errors import ModelError
    from edge.face.registry import load_face_models
    with pytest.raises(ModelError):
        load_face_models(wrong)


def test_fused_embedder_gives_each_models_own_embedding_and_zeroes_its_parts(models_ready, sample_images):
    from edge.face.embedders.onnx_file import load_onnx_file
    from edge.face.photos import FaceEngine
    from edge.face.registry import load_face_models

    cfg = _fused_cfg()
    models = load_face_models(cfg)
    assert models.embedder.dim == 640
    fused = FaceEngine(cfg, models)
    alone = FaceEngine(load_config())
    img = cv2.imread(str(sample_images / "t1.jpg"))
    a, b = fused.faces(img), alone.faces(img)
    assert len(a) == len(b) >= 3
    for fa, fb in zip(a, b, strict=True):
        assert float(fa.embedding[:128] @ fb.embedding) > 0.999  # SFace's block is SFace's embedding
        assert np.linalg.norm(fa.embedding[128:]) == pytest.approx(1.0, abs=1e-4)
    edge_only = load_onnx_file(cfg.recognizer.fuse[0])
    assert edge_only.dim == 512 and edge_only.mean == 127.5  # read from the graph, as insightface does
    assert fused.bufs.is_clear()  # every part buffer was zeroed with the frame


def test_watchlist_build_with_a_background_set_then_the_node_alerts_with_the_fused_list(
        models_ready, engine, sample_images, tmp_path):
    from edge.node.app import build_node
    from edge.node.sources import open_source
    from edge.watchlist.vault import VaultKey

    _fused_cfg()
    cfg_file = tmp_path / "fused.toml"
    cfg_file.write_text(f'[[recognizer.fuse]]\nkind = "onnx"\nmodel = "{EDGEFACE}"\n'
                        f'sha256 = "{EDGEFACE_SHA}"\n')
    # consented strangers: one photo each of 40 LFW people (one person per image, as the
    # background set's contract says): against 3 entries, 120 impostor pairs, over the 100 needed
    people, background, crops = people_and_strangers(engine, sample_images, tmp_path, "background")
    key = tmp_path / "k.key"
    r = subprocess.run(EDGE + ["watchlist", "build", str(people), "-o", str(tmp_path / "wl"),
                               "--key-file", str(key), "--config", str(cfg_file),
                               "--min-face-px", "20", "--min-sharpness", "0", "--max-yaw", "90",
                               "--max-pitch", "90", "--background", str(background)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "fusion: edgeface_xs weight 1" in r.stderr and "background set" in r.stderr
    wl = Watchlist.load(tmp_path / "wl", VaultKey.from_file(key))
    assert [m.name for m in wl.fusion] == ["sface_2021dec", "edgeface_xs"] and wl.dim == 640
    shown = subprocess.run(EDGE + ["watchlist", "show", str(tmp_path / "wl"), "--key-file", str(key)],
                           capture_output=True, text=True, timeout=60)
    assert "fused     edgeface_xs" in shown.stdout
    # the node, configured with the same two models, finds person P1 walking by
    cfg = load_config(cfg_file)
    lifecycle.check_model(wl, cfg)
    clip = walk_by_clip(crops[1], tmp_path)
    node = build_node(cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={"console": False})}),
                      wl)
    node.run(open_source(str(clip), node.ring))
    assert node.stats.alerts == 1 and node.bufs.is_clear()
    out = [a for a in Path(tmp_path).glob("**/*") if a.suffix == ".npy"]
    assert not out
