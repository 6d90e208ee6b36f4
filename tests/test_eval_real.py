"""``edge eval`` on real faces: a small slice of ../shared/data end to end, plus the loaders,
split, exclusion lists and config writer on folders built here.

No hard-coded accuracy numbers: the assertions are about sane behaviour (mated scores above
non-mated, rates in range, files written, threshold written where the config loader accepts it).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path

from edge.config import load_config
from edge.errors import EdgeError
from edge.lab.evaluation import datasets as D
from edge.lab.evaluation.report import round_up, write_outputs, write_threshold_config
from edge.lab.evaluation.run import EvalOptions, parse_rate, run_evaluation

# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_run(engine, tmp_path_factory):
    lfw = shared_path("lfw_pairs_150")
    utk = shared_path("utkface_adult_balanced")
    cache = tmp_path_factory.mktemp("evalcache")
    opts = EvalOptions(identities=lfw, impostors=utk, limit_identities=60, limit_impostors=80,
                       exclusions="lfw,utkface", cache_dir=cache, progress=False,
                       watchlist_size=1000, target_fpir=0.01)
    return opts, run_evaluation(opts, engine), cache


def test_real_slice_is_sane(real_run, tmp_path) -> None:
    opts, res, cache = real_run
    s = res.summary
    assert s["data"][0]["identities"] == 60 and s["data"][1]["images"] == 80
    for name in ("raw", "cleaned"):
        rep = s["variants"][name]["report"]
        ms = rep["mean_scores"]
        # the model separates people: a right match scores far above a stranger
        assert ms["mated_correct"] > ms["nonmated_top1"] > ms["impostor_pair"]
        for p in rep["tpir_at_fpir_direct"]:
            assert 0 < p["tpir"] <= 1 and p["fpir"] <= p["target_fpir"]
        cal = s["variants"][name]["calibration"]
        # every calibration group meets the target at the calibrated threshold
        assert all(g["fpir_at_n"] <= opts.target_fpir for g in cal["groups"])
        assert cal["binding_group"] in {g["group"] for g in cal["groups"]}
        assert -1 < cal["threshold"] < 1.01
    files = write_outputs(res, tmp_path)
    for key in ("det", "vs_threshold", "scores", "json", "markdown"):
        assert files[key].is_file() and files[key].stat().st_size > 1000
    assert cv2.imread(str(files["det"])) is not None
    back = json.loads(files["json"].read_text())
    assert back["primary_variant"] == "cleaned"
    assert "TPIR at FPIR targets" in files["markdown"].read_text()
    # embeddings were cached, owner-only
    cached = list(Path(cache).glob("emb-*.npz"))
    assert len(cached) == 2 and all(p.stat().st_mode & 0o077 == 0 for p in cached)


def test_lfw_kfold_verification_on_a_slice(engine, tmp_path) -> None:
    # 3 folds x (15 same + 15 different) pairs of the real protocol: well above chance (50%)
    from edge.lab.evaluation import metrics as M

    fs = D.load_face_set(shared_path("lfw_pairs_150"))
    pairs = []
    for fold in (1, 2, 3):
        fp = [p for p in fs.pairs if p.fold == fold]
        pairs += [p for p in fp if p.same][:15] + [p for p in fp if not p.same][:15]
    idx = sorted({i for p in pairs for i in (p.a, p.b)})
    emb, ok = D.embed_images([fs.items[i].path for i in idx], engine, cache_dir=tmp_path,
                             progress=False)
    row = {i: k for k, i in enumerate(idx)}
    assert ok.all()
    scores = [float(emb[row[p.a]] @ emb[row[p.b]]) for p in pairs]
    r = M.kfold_verification_accuracy(scores, [p.same for p in pairs], [p.fold for p in pairs])
    assert r.mean > 0.85 and len(r.fold_accuracy) == 3


def test_calibration_never_sees_the_report_half(real_run) -> None:
    # the split is by identity: no identity has images in both halves
    opts, _, _ = real_run
    fs = D.load_face_set(opts.identities)
    halves: dict[str, set[str]] = {}
    for it in fs.items[:2000]:
        halves.setdefault(it.identity, set()).add(D.split_of(it.identity, opts.salt))
    assert all(len(h) == 1 for h in halves.values())
    both = {D.split_of(i, opts.salt) for i in halves}
    assert both == {D.CALIBRATION, D.REPORT}


def test_cli_writes_report_and_config(engine, tmp_path, real_run) -> None:
    from edge.cli import cli

    _, _, cache = real_run
    cfg = tmp_path / "site.toml"
    cfg.write_text('# my site\n[node]\nnode_id = "cam-7"\n\n[match]\nthreshold = 0.5  # old\n')
    out = tmp_path / "rep"
    r = CliRunner().invoke(cli, [
        "eval", "--identities", str(shared_path("lfw_pairs_150")),
        "--impostors", str(shared_path("utkface_adult_balanced")),
        "--limit-identities", "60", "--limit-impostors", "80", "--exclusions", "lfw",
        "--exclusions", "utkface", "--watchlist-size", "1000", "--target-fpir", "1/100",
        "--cache-dir", str(cache), "--out", str(out), "--write-config", str(cfg), "-q"])
    assert r.exit_code == 0, r.output
    assert "calibrated threshold" in r.output and (out / "det.png").is_file()
    data = tomllib.loads(cfg.read_text())
    assert data["node"]["node_id"] == "cam-7" and "# my site" in cfg.read_text()
    res = json.loads((out / "results.json").read_text())
    want = round_up(res["variants"]["cleaned"]["calibration"]["threshold"])
    assert data["match"]["threshold"] == want
    assert load_config(cfg).match.threshold == want


def test_folder_per_identity_layout() -> None:
    fs = D.load_face_set(shared_path("bbt_faces"))
    assert fs.layout == "folders" and len(fs.items) == 40
    assert len({it.identity for it in fs.items}) == 8


# ----------------------------------------------------------------------------- built here


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))


def test_labelled_layouts_and_groups(tmp_path) -> None:
    ids = tmp_path / "ids"
    for n in ("a1.jpg", "a2.jpg", "b1.jpg"):
        _img(ids / "images" / n)
    (ids / "labels.csv").write_text(
        "image,identity,gender,race,age\na1.jpg,A,F,Black,23\na2.jpg,A,F,Black,24\n"
        "b1.jpg,B,M,,67\n")
    (ids / "pairs.csv").write_text("fold,img1,img2,same\n1,a1.jpg,a2.jpg,1\n1,a1.jpg,b1.jpg,0\n")
    fs = D.load_face_set(ids)
    assert fs.layout == "identity" and fs.identity_labelled
    assert [p.same for p in fs.pairs] == [True, False]
    g = fs.group_labels()
    assert g["gender"] == ["F", "F", "M"] and g["age_band"] == ["18-29", "18-29", "60+"]
    # the cross needs both labels: b1 has no race, so it is left out of that grouping
    assert g["gender x race"] == ["F Black", "F Black", None]
    assert fs.primary_grouping == "gender x race"

    imp = tmp_path / "imp"
    _img(imp / "images" / "x.jpg")
    (imp / "labels.csv").write_text("image,gender\nx.jpg,F\n")
    fi = D.load_face_set(imp)
    assert fi.layout == "impostor" and fi.items[0].identity == "x.jpg"

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "labels.csv").write_text("file,who\n")
    with pytest.raises(EdgeError, match="'image' column"):
        D.load_face_set(bad)
    with pytest.raises(EdgeError, match="not found"):
        D.load_face_set(tmp_path / "nowhere")


def test_split_is_stable_and_balanced() -> None:
    names = [f"person_{i}" for i in range(2000)]
    halves = [D.split_of(n) for n in names]
    assert halves == [D.split_of(n) for n in names]  # deterministic
    assert 900 < halves.count(D.CALIBRATION) < 1100
    assert D.split_of("person_1", "other-salt") in (D.CALIBRATION, D.REPORT)


def test_exclusions_union_and_csv(tmp_path) -> None:
    csv = tmp_path / "ex.csv"
    csv.write_text("name_a,name_b,reason\nA,B,alias\n# comment\nB,C\n")
    ex = D.load_exclusions([str(csv), "lfw"])
    # A~B and B~C put A and C in one person too
    assert ex.person("A") == ex.person("C") != ex.person("D")
    assert ex.person("Nan_Wang") == ex.person("Wang_Nan")
    assert D.load_exclusions(None) is None
    with pytest.raises(EdgeError, match="cannot read"):
        D.load_exclusions(str(tmp_path / "missing.csv"))


def test_write_threshold_config_variants(tmp_path) -> None:
    new = tmp_path / "new.toml"
    assert write_threshold_config(new, 0.612345, "test") == 0.6124  # rounded UP
    assert tomllib.loads(new.read_text())["match"]["threshold"] == 0.6124
    other = tmp_path / "other.toml"
    other.write_text("[match]\n# keep me\n\n[tracker]\nmin_embeddings = 2\n")
    write_threshold_config(other, 0.5, "t")
    d = tomllib.loads(other.read_text())
    assert d["match"]["threshold"] == 0.5 and d["tracker"]["min_embeddings"] == 2
    with pytest.raises(EdgeError):
        write_threshold_config(tmp_path / "x.toml", 1.2, "beyond cosine range")
    assert not (tmp_path / "x.toml").exists()


def test_parse_rate() -> None:
    assert parse_rate("1/6000") == pytest.approx(1 / 6000)
    assert parse_rate("0.001") == 0.001
    for bad in ("abc", "2", "1/0", "0"):
        with pytest.raises(EdgeError):
            parse_rate(bad)
