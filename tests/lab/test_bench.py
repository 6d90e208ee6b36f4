"""`edge bench` end to end on a tiny clip made from insightface's shipped group photo.

Runs everywhere (no ../shared/data): the clip is built here from t1.jpg. Timing figures are
only checked to exist and be positive; the goals are reported by the benchmark, never
asserted here. Its parts without models are in test_bench_parts.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EDGE

from edge.lab.bench.sources import make_sample_clip
from edge.watchlist.enrol import reference_crop
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from edge.watchlist.vault import create_key_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_clip(tmp_path_factory.mktemp("bench") / "clip.mp4", frames=12, fps=10.0)


def test_edge_bench_smoke(models_ready: None, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = subprocess.run(
        [*EDGE, "bench", "--video", str(clip), "--frames", "16", "--out", str(out), "--held-out", "0",
         "--ab-reps", "1", "--peers", "--peer-frames", "3", "--no-face-recognition", "-q"],
        capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[bench] results:" in r.stdout
    res = json.loads((out / "bench.json").read_text())
    node = res["node"]
    assert "error" not in node, node
    assert node["frames"] == 16 and node["fps"] > 0
    assert node["faces_per_frame"] > 3  # the group photo shows six people
    for s in ("detect", "align", "embed", "search", "alert", "zeroize"):
        assert s in node["stages_ms"]
    assert res["decode"]["ms_per_frame"]["mean"] > 0
    # true alerts exist (people enrolled from the clip), the held-out face never alerts
    assert node["video_subjects_found"], node["alert_list"]
    assert node["held_out_alerted"] == []
    assert node["zeroize_enabled"] and node["buffers_clear_after_run"]
    assert node["decision_to_zeroed_ms"]["n"] > 0
    assert node["rss_peak_mb"] > 0 and node["cpu_ms_per_frame"] > 0
    off = res["zeroize_ab"]["off_runs"][0]
    assert "error" not in off, off
    assert off["zeroize_enabled"] is False  # the switch reached the child only
    live = res["live"]
    assert "error" not in live, live
    assert live["captured"] >= 12 and 0 < live["processed_fraction"] <= 1
    peers = res["peers"]
    assert peers["naive"]["fps"] > 0 and peers["naive"]["embedded_per_frame"] > 3
    assert peers["face_recognition"]["skipped"]
    assert res["summary"]["ratios"]["ours/naive"] > 0
    md = (out / "summary.md").read_text()
    assert "## Goals" in md and "## Peers" in md
    # only reports: no images, crops or arrays of anyone's face
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bench.json", "latency.png", "peers.png", "stages.png", "summary.md", "timeline.png"]


def test_edge_bench_on_an_encrypted_watchlist(engine, sample_images: Path, clip: Path,
                                              tmp_path: Path) -> None:
    """A real deployment list (encrypted, windowed) instead of the auto list; the peers
    enrol from its reference images."""
    group = cv2.imread(str(sample_images / "t1.jpg"))
    faces = engine.faces(group)[:2]
    subjects = {f"S{i}": Subject(f"S{i}", f"Person {i}", "test") for i in range(2)}
    entries = [Entry(f"S{i}/1", f"S{i}", "t1.jpg") for i in range(2)]
    now = time.time()
    refs = {e.entry_id: reference_crop(group, f.bbox) for e, f in zip(entries, faces, strict=True)}
    meta = WatchlistMeta(deployment_id="bench-test", window_start=now - 60, window_end=now + 3600)
    wl = Watchlist(meta, subjects, entries, np.stack([f.embedding for f in faces]), references=refs)
    key = create_key_file(tmp_path / "keys" / "wl.key")
    wl.save(tmp_path / "wl", key)
    out = tmp_path / "out"
    r = subprocess.run(
        [*EDGE, "bench", "--video", str(clip), "--watchlist", str(tmp_path / "wl"), "--key-file",
         str(tmp_path / "keys" / "wl.key"), "--frames", "8", "--out", str(out), "--no-live",
         "--no-zeroize-ab", "--no-plots", "-q"],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "bench.json").read_text())
    assert res["watchlist"]["entries"] == 2
    assert "error" not in res["node"], res["node"]
    assert set(res["node"]["video_subjects_found"]) <= {"S0", "S1"}
    assert res["node"]["alerts"] >= 1
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "summary.md"]


def test_edge_bench_refuses_a_list_without_its_key(tmp_path: Path) -> None:
    r = subprocess.run([*EDGE, "bench", "--watchlist", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last == "error: --watchlist DIR needs --key-file (or use --watchlist auto)"


def test_edge_bench_missing_video(tmp_path: Path) -> None:
    r = subprocess.run([*EDGE, "bench", "--video", str(tmp_path / "nope.mp4")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "video file not found" in r.stderr
