"""Shared fixtures: real models, real photos, and ../shared/data when it is present."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_REASON = "needs ../shared/data (evaluation data kept beside the repo, not shipped)"
EDGE = [sys.executable, "-m", "edge.cli"]


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{SHARED_REASON}: {p} is absent")
    return p


@pytest.fixture(scope="session")
def models_ready() -> None:
    """The default models must be installed (`edge models install`); fail loudly otherwise."""
    from edge.face import model_files as models

    missing = []
    for name in ("yunet_2023mar", "sface_2021dec"):
        try:
            models.resolve(name)
        except Exception as exc:  # noqa: BLE001
            missing.append(str(exc))
    if missing:
        pytest.fail("models not installed; run `edge models install`: " + "; ".join(missing))


@pytest.fixture(scope="session")
def engine(models_ready):
    from edge.face.photos import FaceEngine

    return FaceEngine.from_config()


@pytest.fixture(scope="session")
def sample_images() -> Path:
    from edge.node.demo import sample_images_dir

    return sample_images_dir()


def pad(img: np.ndarray, frac: float = 0.5) -> np.ndarray:
    """Tight face crops need a border before a detector sees a whole face."""
    ph, pw = int(img.shape[0] * frac), int(img.shape[1] * frac)
    return cv2.copyMakeBorder(img, ph, ph, pw, pw, cv2.BORDER_CONSTANT, value=0)


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.resize(f, (w, h)))
    vw.release()
    return path


def on_canvas(face: np.ndarray, size: tuple[int, int] = (640, 480), at: tuple[int, int] = (200, 120),
              scale: int = 200) -> np.ndarray:
    """A face image pasted on a grey frame, like a person in front of a camera."""
    canvas = np.full((size[1], size[0], 3), 80, np.uint8)
    f = cv2.resize(face, (scale, int(scale * face.shape[0] / face.shape[1])))
    x, y = at
    canvas[y:y + f.shape[0], x:x + f.shape[1]] = f[: size[1] - y, : size[0] - x]
    return canvas
