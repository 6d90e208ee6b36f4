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
from edge.lab.evaluation.run import parse_rate

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
