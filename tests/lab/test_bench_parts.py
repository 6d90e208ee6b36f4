"""The benchmark's parts that need no models: its video sources, percentiles, and the
child-process protocol (a fresh ``python -m edge.lab.bench.children`` per measured system)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.lab.bench.children import run_child
from edge.lab.bench.jobs import ChildJob
from edge.lab.bench.measure import pct
from edge.lab.bench.sources import LoopingVideoSource, PacedVideoSource, make_sample_clip, video_info
from edge.privacy import FrameRing

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_clip(tmp_path_factory.mktemp("bench") / "clip.mp4", frames=12, fps=10.0)


def test_sample_clip_is_a_real_video(clip: Path) -> None:
    info = video_info(clip)
    assert info["frames"] == 12 and info["width"] == 960 and info["height"] == 640


@pytest.mark.parametrize("inline", [False, True])
def test_looping_source_continues_indices_across_passes(clip: Path, inline: bool) -> None:
    ring = FrameRing(4, lock=False)
    src = LoopingVideoSource(str(clip), ring, total=30, inline_decode=inline)
    seen = []
    for f in src.frames():
        seen.append(f.index)
        assert f.image.any()
        ring.release(f.slot)
    src.close()
    assert seen == list(range(30))
    assert src.stats.frames == 30
    assert all(not ring.slot(i).any() for i in range(ring.size))  # nothing left in a slot


def test_paced_source_keeps_only_the_newest_frame(clip: Path) -> None:
    ring = FrameRing(4, lock=False)
    src = PacedVideoSource(str(clip), ring, total=24, fps=100.0)
    got = []
    for f in src.frames():
        got.append(f.index)
        time.sleep(0.035)  # a node slower than the camera
        ring.release(f.slot)
    src.close()
    assert src.captured == 24
    assert src.stats.dropped_stale > 0  # stale frames were dropped, not queued
    assert len(got) + src.stats.dropped_stale == 24
    assert got == sorted(got)  # never an older frame after a newer one
    assert all(not ring.slot(i).any() for i in range(ring.size))  # dropped frames were zeroed


def test_pct() -> None:
    d = pct([0.001] * 99 + [0.1])
    assert d["n"] == 100 and d["p50"] == 1.0 and d["max"] == 100.0
    assert pct([]) == {"n": 0}


def test_child_process_answers_with_one_result(clip: Path) -> None:
    """The parent reads the child's result line back; a failing job is an error result
    (type and message only), not an exception in the parent."""
    job = ChildJob(mode="no such system", video=str(clip), frames=1, config=None, overrides={},
                   label="bad", progress=False)
    r = run_child(job, timeout=60)
    assert r == {"mode": "no such system", "label": "bad",
                 "error": "ValueError: unknown benchmark mode 'no such system'"}


def test_face_recognition_child_loads_neither_the_node_nor_its_models() -> None:
    """A child's peak memory is its system's alone: the dlib peer's process must not carry
    ONNX Runtime, FAISS or the node (they would count against face_recognition)."""
    code = ("import sys; from edge.lab.bench.children import runner_for; runner_for('face_recognition'); "
            "print(sorted(m for m in ('onnxruntime', 'faiss', 'edge.node.pipeline', 'matplotlib') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
