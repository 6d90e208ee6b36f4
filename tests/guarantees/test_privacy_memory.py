"""Deletion guarantee, memory: after the node has moved past a face, its bytes are gone.

The node runs as a subprocess on real faces of people who are not on the watchlist. The
test recomputes the same faces' aligned crops and embeddings with the same stages, then
reads the node's memory (/proc/<pid>/maps + /proc/<pid>/mem) and searches for those bytes.
Zero hits are required. The positive control runs the same scan with zeroization switched
off through the test-only switch and must find them; otherwise the scan proves nothing.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from tests.conftest import write_clip
from tests.privacy_helpers import (
    HOLD_MARK,
    reference_patterns,
    save_watchlist,
    scan,
    start_node,
    write_config,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def scene(tmp_path_factory, sample_images, models_ready):
    """A clip of six real people (insightface's group photo), a watchlist of someone else."""
    root = tmp_path_factory.mktemp("mem")
    group = cv2.imread(str(sample_images / "t1.jpg"))
    frames = []
    for i in range(12):
        x = 8 * i
        frames.append(cv2.resize(group[40:40 + 800, x:x + 1150], (960, 668)))
    clip = write_clip(root / "street.mp4", frames, fps=10)
    other = cv2.imread(str(sample_images / "Tom_Hanks_54745.png"))
    from edge.face.photos import FaceEngine

    eng = FaceEngine.from_config()
    face = eng.faces(other, pad=0.6)[0]
    save_watchlist(root / "wl", root / "keys" / "wl.key", {"NOT-IN-CLIP": face.embedding})
    n_frames = len(frames)
    wanted = {0, n_frames // 2, n_frames - 2, n_frames - 1}
    patterns = reference_patterns(clip, wanted)
    assert len(patterns["crop"]) >= 4 * 5, "the scene must contain faces"
    return root, clip, patterns


CAMERAS = 3  # the multi-camera node: the same street seen by three cameras


def _run_and_scan(root, clip, patterns, zeroize: bool, name: str, cameras: int = 0):
    """Scan a node on ``clip`` (``--source``) or, with ``cameras``, a node of that many
    [[cameras]] on it: one process, shared models and face buffers."""
    work = root / name
    work.mkdir()
    extra = "".join(f'[[cameras]]\nname = "cam-{i}"\nsource = "{clip}"\n' for i in range(cameras))
    cfg = write_config(work / "node.toml", zeroize=zeroize, extra=extra)
    node = start_node(work, None if cameras else clip, root / "wl", root / "keys" / "wl.key", cfg,
                      zeroize_test_switch=not zeroize)
    try:
        node.wait_for(HOLD_MARK)
        hits = scan(node.proc.pid, patterns)
    finally:
        out, err = node.stop()
    assert "ALERT" not in out, "nobody in the clip is on the watchlist"
    print(name, "hits", hits, "of", {k: len(v) for k, v in patterns.items()})
    return hits


@pytest.mark.parametrize("cameras", [0, CAMERAS], ids=["one-source", "three-cameras"])
def test_positive_control_finds_faces_when_zeroize_is_off(scene, cameras):
    root, clip, patterns = scene
    hits = _run_and_scan(root, clip, patterns, zeroize=False, name=f"control{cameras}",
                         cameras=cameras)
    assert hits["crop"] >= 1, f"scan must find un-zeroed crops, got {hits}"
    assert hits["embedding"] >= 1, f"scan must find un-zeroed embeddings, got {hits}"


@pytest.mark.parametrize("cameras", [0, CAMERAS], ids=["one-source", "three-cameras"])
def test_no_face_bytes_survive_in_node_memory(scene, cameras):
    root, clip, patterns = scene
    hits = _run_and_scan(root, clip, patterns, zeroize=True, name=f"guarded{cameras}",
                         cameras=cameras)
    assert hits == {"crop": 0, "embedding": 0, "raw_embedding": 0}, hits


def test_reference_patterns_are_deterministic(scene):
    """The scan compares exact bytes: recomputing must reproduce them bit for bit."""
    root, clip, patterns = scene
    again = reference_patterns(clip, {0})
    assert again["crop"][0] == patterns["crop"][0]
    assert np.array_equal(np.frombuffer(again["embedding"][0], np.float32),
                          np.frombuffer(patterns["embedding"][0], np.float32))
