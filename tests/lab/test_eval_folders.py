"""``edge eval``'s loaders, split, exclusion lists, rate parser and config writer, on folders
built here (no models, no ../shared)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.lab.evaluation import datasets as D
from edge.lab.evaluation.report import write_threshold_config
from edge.lab.evaluation.run import Pool, open_set, parse_rate

pytestmark = pytest.mark.unit


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


def test_one_folder_per_person_reads_pgm_and_counts_what_it_skips(tmp_path) -> None:
    root = tmp_path / "orl"
    for person in ("s1", "s2"):
        for i in (1, 2):
            p = root / person / f"{i}.pgm"  # the ORL/AT&T faces: greyscale PGM
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), np.zeros((8, 8), np.uint8))
    (root / "s1" / "notes.txt").write_text("x")
    (root / "s2" / "anim.gif").write_bytes(b"GIF89a")
    (root / "s2" / ".DS_Store").write_bytes(b"")
    fs = D.load_face_set(root)
    assert fs.layout == "folders" and len(fs.items) == 4
    assert {it.path.suffix for it in fs.items} == {".pgm"}
    assert fs.skipped == {"unsupported format .txt": 1, "unsupported format .gif": 1}
    assert fs.skipped_line() == (
        "orl: skipped 2 file(s): 1 unsupported format .gif, 1 unsupported format .txt")
    # a subset keeps the count, so the report can still say what was left out
    assert fs.subset([0, 1]).skipped == fs.skipped


def _pool(identities: list[str]) -> Pool:
    rng = np.random.default_rng(0)
    people = {p: rng.standard_normal(8) for p in set(identities)}
    emb = np.stack([people[p] + 0.05 * rng.standard_normal(8) for p in identities])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(identities)
    return Pool(emb=emb.astype(np.float32), ok=np.ones(n, bool), identity=np.array(identities),
                from_id_set=np.ones(n, bool), names=[f"{p}_{i}" for i, p in enumerate(identities)],
                groups={}, primary=[])


def test_everyone_with_several_images_holds_half_out_as_non_mated() -> None:
    ids = [f"p{k}" for k in range(6) for _ in range(3)]
    ros = open_set(_pool(ids), np.array(ids))
    assert ros.held_out == 3
    # the held-out half searches as non-mated with all its images; the others enrol one each
    assert ros.gallery.size == 3 and ros.mated.size == 3 * 2 and ros.nonmated.size == 3 * 3
    enrolled = set(np.array(ids)[ros.gallery])
    assert not enrolled & set(np.array(ids)[ros.nonmated])
    # with a singleton present nobody is held out: the singleton is the non-mated search
    ids1 = ids + ["lonely"]
    assert open_set(_pool(ids1), np.array(ids1)).held_out == 0


def test_too_few_people_says_what_is_needed() -> None:
    ids = ["a", "a"]
    with pytest.raises(EdgeError, match=r"1 people \(1 with >= 2 images\)"):
        open_set(_pool(ids), np.array(ids))
