"""benchmarks/gpu_bench.py, the one script the GPU machine runs, works: its --device cpu
--quick mode runs every step (checks, recogniser batches, batch stages, paced streams) on the
same code and writes its JSON. No figure is asserted (a loaded CI machine); the checks'
verdicts are, since they compare outputs, not times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SHARED


def test_gpu_bench_quick_runs_on_cpu(models_ready, tmp_path: Path):
    clip = SHARED / "videos" / "walking_arcade_1080p.mp4"
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_bench.py"), "--device", "cpu", "--quick",
           "--out", str(tmp_path)]
    if clip.exists():
        cmd += ["--clip", str(clip)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert "onnxruntime" in out["checks"] and all(c["pass"] for c in out["checks"].values())
    assert all(c["positive_control_sees_data"] and c["device_zeroed_read_back"]
               for c in out["checks"].values())
    assert {row["batch"] for row in out["recogniser"]} == {1, 4}
    assert {row["frames_per_batch"] for row in out["stages"]} == {1, 2}
    assert {row["streams"] for row in out["streams"]} == {1, 2}
    lines = r.stdout.rstrip().splitlines()
    assert "streams at 25 fps each (decode excluded):" in lines and lines[-1].startswith("checks:")
