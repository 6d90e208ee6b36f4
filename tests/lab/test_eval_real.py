"""``edge eval`` on real faces: a small slice of ../shared/data end to end (the loaders and the
config writer on folders built here are in test_eval_folders.py).

No hard-coded accuracy numbers: the assertions are about sane behaviour (mated scores above
non-mated, rates in range, files written, threshold written where the config loader accepts it).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner, Result
from conftest import shared_path

from edge.cli import cli
from edge.config import load_config
from edge.lab.evaluation import datasets as D
from edge.lab.evaluation import metrics as M
from edge.lab.evaluation.report import round_up, write_outputs
from edge.lab.evaluation.run import EvalOptions, run_evaluation

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


def _eval_slice(cache: Path, out: Path, *extra: str) -> Result:
    """`edge eval` on the 60-identity / 80-impostor slice, cleaned labels, quiet."""
    return CliRunner().invoke(cli, [
        "eval", "--identities", str(shared_path("lfw_pairs_150")),
        "--impostors", str(shared_path("utkface_adult_balanced")),
        "--limit-identities", "60", "--limit-impostors", "80", "--exclusions", "lfw",
        "--exclusions", "utkface", "--cache-dir", str(cache), "--out", str(out), *extra, "-q"])


def test_cli_writes_report_and_config(engine, tmp_path, real_run) -> None:
    _, _, cache = real_run
    cfg = tmp_path / "site.toml"
    cfg.write_text('# my site\n[node]\nnode_id = "cam-7"\n\n[match]\nthreshold = 0.5  # old\n')
    out = tmp_path / "rep"
    r = _eval_slice(cache, out, "--watchlist-size", "1000", "--target-fpir", "1/100",
                    "--write-config", str(cfg))
    assert r.exit_code == 0, r.output
    assert "calibrated threshold" in r.output and (out / "det.png").is_file()
    data = tomllib.loads(cfg.read_text())
    assert data["node"]["node_id"] == "cam-7" and "# my site" in cfg.read_text()
    res = json.loads((out / "results.json").read_text())
    want = round_up(res["variants"]["cleaned"]["calibration"]["threshold"])
    assert data["match"]["threshold"] == want
    assert load_config(cfg).match.threshold == want


def test_cli_measures_cohort_normalisation_and_writes_its_threshold(engine, tmp_path, real_run) -> None:
    _, _, cache = real_run
    cfg = tmp_path / "norm.toml"
    cfg.write_text('[match]\nscore_normalisation = "cohort-clusters"\ncohort_clusters = 2\n'
                   "cohort_fmr = 0.05\nthreshold = 0.5\n")
    out = tmp_path / "rep"
    r = _eval_slice(cache, out, "--watchlist-size", "100", "--target-fpir", "1/10",
                    "--config", str(cfg), "--write-config", str(cfg))
    assert r.exit_code == 0, r.output
    assert "score normalisation: 2 cohort clusters" in r.output
    res = json.loads((out / "results.json").read_text())
    norm = res["score_normalisation"]
    assert norm["clusters"]["clusters"] == 2 and len(norm["half_offsets"]) == 2
    # the plain row is the primary variant; the node (normalisation on) gets the other threshold
    assert norm["off"]["threshold"] == res["variants"]["cleaned"]["calibration"]["threshold"]
    want = round_up(norm["cohort-clusters"]["threshold"])
    assert want != round_up(norm["off"]["threshold"])  # else this would not tell them apart
    assert load_config(cfg).match.threshold == want
    assert "Score normalisation: plain against cohort clusters" in (out / "report.md").read_text()


def test_folder_per_identity_layout() -> None:
    fs = D.load_face_set(shared_path("bbt_faces"))
    assert fs.layout == "folders" and len(fs.items) == 40
    assert len({it.identity for it in fs.items}) == 8


def test_cli_one_folder_per_person_as_pgm_without_impostors(models_ready, tmp_path) -> None:
    # the natural layout users have (ORL/AT&T style): one folder per person, .pgm greyscale,
    # everyone with several images, no impostor set
    src = shared_path("bbt_faces")
    root = tmp_path / "people"
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        for f in sorted(d.iterdir()):
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            (root / d.name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / d.name / (f.stem + ".pgm")), img)
    (root / d.name / "README.txt").write_text("not a face")
    out = tmp_path / "report"
    r = CliRunner().invoke(cli, ["eval", "--identities", str(root), "--watchlist-size", "10",
                                 "--target-fpir", "0.1", "--out", str(out), "--no-cache", "-q"])
    assert r.exit_code == 0, r.output
    assert "skipped 1 file(s): 1 unsupported format .txt" in r.output
    assert "are not enrolled and search as non-mated" in r.output
    res = json.loads((out / "results.json").read_text())
    rep = res["variants"][res["primary_variant"]]["report"]
    assert rep["held_out_people"] >= 1 and rep["nonmated_searches"] > 0
    assert rep["mated_searches"] > 0
