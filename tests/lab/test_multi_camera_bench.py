"""``edge bench --cameras N``: the site child on the real clip, and the tables built from results.

The child test runs two cameras of ~1 s each through one real node process (needs
../shared/data and the models); the table tests use hand-made results (no models). Timing
goals are reported by the benchmark, never asserted here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_path

from edge.config import load_config
from edge.lab.bench import cameras as cams
from edge.lab.bench.children import run_child
from edge.lab.bench.jobs import ChildJob
from edge.lab.bench.run import BENCH_OVERRIDES
from edge.lab.bench.sources import PacedVideoSource, make_sample_clip
from edge.lab.bench.watchlists import auto_watchlist
from edge.privacy import FrameRing

ARCADE = ("videos", "walking_arcade_1080p.mp4")
CAMERA_FIELDS = ("captured", "frames", "processed_fraction", "fps", "capture_to_alert_ms", "frame_latency_ms",
                 "video_subjects_found", "video_subjects_total", "held_out_alerted", "stages_ms")


@pytest.fixture(scope="module")
def arcade_job(models_ready: None) -> ChildJob:
    video = str(shared_path(*ARCADE))
    cfg = load_config(None, overrides={**BENCH_OVERRIDES, "detector": {"min_face_px": 32, "input_width": 0}})
    bw = auto_watchlist(cfg, video, n_video=5, n_lfw=0)
    return ChildJob(mode="site", video=video, frames=30, config=None, overrides=BENCH_OVERRIDES,
                    blobs=bw.blobs, video_subjects=bw.video_subjects, held_out_subjects=bw.held_out_subjects,
                    progress=False)


def test_site_child_runs_two_cameras_in_one_process(arcade_job: ChildJob) -> None:
    r = run_child(replace(arcade_job, cameras=2, label="site x2"), timeout=120)
    assert "error" not in r, r
    assert r["cameras"] == 2 and set(r["per_camera"]) == {"cam1", "cam2"}
    for name, c in r["per_camera"].items():
        for f in CAMERA_FIELDS:
            assert f in c, (name, f)
        assert c["captured"] == 30, c  # the paced source captured every frame it was asked for
        assert 0 < c["frames"] <= c["captured"]
        assert 0 < c["processed_fraction"] <= 1 and c["fps"] > 0
        assert c["video_subjects_total"] == 5 and c["held_out_alerted"] == []
    assert r["frames"] == sum(c["frames"] for c in r["per_camera"].values())
    assert r["rss_peak_mb"] > 0 and r["cores_used"] > 0 and r["buffers_clear_after_run"]
    assert r["stopped_reason"] == "sources ended"
    s = cams.site_summary(r)
    assert s["found_of"] == 5 and len(s["per_camera"]) == 2 and s["cores_used"] == r["cores_used"]


def test_old_revision_runs_its_own_live_child(arcade_job: ChildJob, tmp_path: Path) -> None:
    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", str(cams.repo_root()), "cat-file", "-e", f"{cams.BEFORE_REV}^{{commit}}"],
            capture_output=True, check=False).returncode != 0:
        pytest.skip(f"needs a git checkout holding revision {cams.BEFORE_REV}")
    checkout = cams.before_checkout(dest=tmp_path / "before")
    assert (checkout / "edge" / "lab" / "bench" / "node_child.py").is_file()
    assert not (checkout / "edge" / "node" / "site.py").exists()  # really the one-camera node
    inp = cams.CamerasInputs(arcade_job.video, {"fps": 25.0}, 20, replace(arcade_job, frames=20), {})
    g = cams.run_before(inp, 1, checkout, timeout=120)
    p = g["processes"][0]
    assert "error" not in p, p
    assert p["mode"] == "live" and p["captured"] == 20 and p["rss_peak_mb"] > 0
    s = cams.before_summary(g)
    assert s["rss_single_camera_mb"] == p["rss_peak_mb"] and len(s["per_camera"]) == 1


@pytest.mark.unit
def test_paced_source_decimates_like_the_product_sources(tmp_path: Path) -> None:
    clip = make_sample_clip(tmp_path / "clip.mp4", frames=12, fps=10.0)
    ring = FrameRing(4, lock=False)
    src = PacedVideoSource(str(clip), ring, total=12, fps=50.0)
    src.decimate = 3  # what a site sets for detector.interval = 3
    seen = []
    for f in src.frames():
        seen.append(f.index)
        ring.release(f.slot)
    src.close()
    assert seen and all(i % 3 == 0 for i in seen)
    assert src.captured == 12 and src.stats.carried == 8
    assert src.stats.frames == 12  # carried frames were decoded: the camera delivered them


@pytest.mark.unit
def test_processed_counts_frames_a_held_back_camera_would_have_sent() -> None:
    # 500 of 525 captured, but the stand-in fell 2 s behind its 25 fps clock: 50 more sent
    row = cams.camera_row("cam1", {**_camera(500, 525, 100.0, 5), "capture_thread_max_lag_ms": 2000.0}, 25.0)
    assert row["camera_frames"] == 575 and row["processed_pct"] == round(100 * 500 / 575, 1)
    assert row["processed_pct_of_captured"] == round(100 * 500 / 525, 1) and row["capture_lag_ms"] == 2000
    # interval 3: 500 frames counted by the node, but only 100 reached it (the rest carried):
    # the detector was due to see 175 of the 525 frames, so 57% were processed, not 95%
    cam = {**_camera(500, 525, 100.0, 5), "frames_handed_to_node": 100, "fps": 500 / 21.0}
    row3 = cams.camera_row("cam1", cam, 25.0, interval=3)
    assert row3["processed_pct"] == round(100 * 100 / 175, 1)
    assert row3["fps"] == pytest.approx(300 / 21.0, abs=0.01)


# ---------------------------------------------------------------------- tables, no models
def _camera(frames: int, captured: int, p95: float | None, found: int) -> dict[str, Any]:
    return {"captured": captured, "frames": frames, "processed_fraction": frames / captured,
            "fps": frames / 21.0,
            "capture_to_alert_ms": {"n": 0} if p95 is None else {"n": 20, "p50": p95 / 2, "p95": p95},
            "video_subjects_found": [f"V{i + 1:02d}" for i in range(found)], "video_subjects_total": 5,
            "held_out_alerted": []}


def _site(n: int, processed: int, p95: float, rss: float) -> dict[str, Any]:
    per = {f"cam{i + 1}": _camera(processed - i, 525, p95 + 10 * i, 5 - i) for i in range(n)}
    return {"mode": "site", "cameras": n, "per_camera": per, "cores_used": 1.9, "rss_peak_mb": rss,
            "other_processes_cores": 0.05, "detector_interval": 1, "worker_busy_fraction": 0.8,
            "processed_fps_total": 70.0, "stages_ms_per_frame": {"detect": 20.0, "embed": 5.0}}


def _before(n: int) -> dict[str, Any]:
    procs = []
    for i in range(n):
        c = _camera(300, 525, 400.0 + i, 4)
        procs.append({**c, "mode": "live", "fps": 25.0, "fps_all_frames": 300 / 21.0,
                      "rss_peak_mb": 400.0 + i, "stages_ms": {"detect": 30.0}})
    procs.append({"mode": "live", "error": "child process exited with code 1 and no result"})
    return {"mode": "before", "cameras": n, "processes": procs, "cores_used": 2.0,
            "other_processes_cores": 0.0}


def _result() -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for n in (1, 2):
        runs.append({"cameras": n, "interval": 1, "site": cams.site_summary(_site(n, 520, 120.0, 450.0 + n)),
                     "before": cams.before_summary(_before(n))})
    single = cams._before_single_rss(runs)  # noqa: SLF001 - the figure the goals use
    for e in runs:
        e["goals"] = cams.goals(e["site"], single)
    return {"machine": {"cpu": "test cpu", "cores": 2, "loadavg_at_start": [0.1], "python": "3",
                        "onnxruntime": "1"},
            "video": {"path": "/x/arcade.mp4", "width": 1920, "height": 1080, "fps": 25.0},
            "frames_per_camera": 525, "watchlist": {"description": "auto"}, "before_revision": "24177c1",
            "runs": runs}


@pytest.mark.unit
def test_summaries_take_the_worst_camera_and_keep_process_figures() -> None:
    s = cams.site_summary(_site(3, 520, 120.0, 500.0))
    assert s["processed_pct_min"] == round(100 * 518 / 525, 1)
    assert s["c2a_p95_ms_max"] == 140.0 and s["found_min"] == 3 and s["found_of"] == 5
    assert s["rss_peak_mb"] == 500.0 and s["detector_interval"] == 1
    b = cams.before_summary(_before(2))
    assert len(b["per_camera"]) == 2 and "no result" in b["error"]  # a failed process is reported
    assert b["rss_peak_mb"] == 801.0 and b["rss_single_camera_mb"] == 400.5
    assert b["fps_min"] == pytest.approx(300 / 21.0)  # processed / wall, not 1 / frame period
    assert b["detector_interval"] == 1
    failed = cams.site_summary({"mode": "site", "error": "boom"})
    assert failed["error"] == "boom" and failed["per_camera"] == []


@pytest.mark.unit
def test_goals_are_judged_on_the_worst_camera_and_the_old_single_rss() -> None:
    site = cams.site_summary(_site(2, 480, 200.0, 600.0))
    rows = {g["goal"]: g for g in cams.goals(site, 400.0)}
    assert rows["frames processed (worst camera)"]["value"] == round(100 * 479 / 525, 1)
    assert rows["frames processed (worst camera)"]["met"] is False
    assert rows["capture->alert p95 (worst camera)"]["value"] == 210.0
    assert rows["capture->alert p95 (worst camera)"]["met"] is True
    assert rows["enrolled people found (worst camera)"]["met"] is False  # cam2 found 4 of 5
    assert rows["peak RSS / old single-camera node"]["value"] == 1.5
    assert rows["peak RSS / old single-camera node"]["met"] is True
    assert {g["met"] for g in cams.goals(site, None) if g["goal"].startswith("peak")} == {None}


@pytest.mark.unit
def test_markdown_console_and_files(tmp_path: Path) -> None:
    r = _result()
    md = cams.markdown(r, "p.png")
    assert "| 2 | 1 | new: one process | " in md and "| 2 | 1 | old: N processes | " in md
    assert "801 (sum)" in md  # old setup: RSS summed over its processes
    assert "## Where the time goes" in md and "![" in md
    lines = cams.console_summary(r)
    assert any(line.strip().startswith("site") for line in lines)
    assert any("NOT met" in line or "met" in line for line in lines)
    paths = cams.write_cameras_report(r, tmp_path, stem="mc", md_name="mc.md")
    assert json.loads(paths["json"].read_text())["runs"][1]["cameras"] == 2
    assert paths["png"].stat().st_size > 1000  # two camera counts: the plot is drawn
    one = {**r, "runs": r["runs"][:1]}
    assert "png" not in cams.write_cameras_report(one, tmp_path / "one")  # one point: no plot
