"""Enrolment fixtures shared by the list-building end-to-end tests: three people cut from the
bundled sample photo, a folder of consented LFW strangers, and a clip of one person walking by."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import on_canvas, shared_path


def people_and_strangers(engine, sample_images: Path, tmp_path: Path, strangers: str,
                         n_strangers: int = 40) -> tuple[Path, Path, list[np.ndarray]]:
    """``people/P0..P2/a.png`` (enlarged crops of t1.jpg's faces, left to right), a folder of
    one photo each of ``n_strangers`` LFW people (one person per image), and every face crop."""
    t1 = cv2.imread(str(sample_images / "t1.jpg"))
    faces = sorted(engine.faces(t1), key=lambda f: float(f.bbox[0]))
    people, others = tmp_path / "people", tmp_path / strangers
    crops = []
    for i, f in enumerate(faces):
        x, y, w, h = (int(v) for v in f.bbox)
        crop = t1[max(0, y - h // 2):y + h + h // 2, max(0, x - w // 2):x + w + w // 2]
        crops.append(crop)
        if i < 3:
            (people / f"P{i}").mkdir(parents=True)
            cv2.imwrite(str(people / f"P{i}" / "a.png"), cv2.resize(crop, None, fx=3, fy=3))
    lfw = shared_path("lfw_pairs_150")
    others.mkdir()
    seen: set[str] = set()
    for line in (lfw / "labels.csv").read_text().splitlines()[1:]:
        image, identity = line.split(",")[:2]
        if identity not in seen and len(seen) < n_strangers:
            seen.add(identity)
            (others / image).write_bytes((lfw / "images" / image).read_bytes())
    return people, others, crops


def walk_by_clip(crop: np.ndarray, tmp_path: Path, frames: int = 4) -> Path:
    """A folder of ``frames`` identical frames showing ``crop`` on a canvas."""
    frame = on_canvas(crop, scale=220)
    clip = tmp_path / "clip"
    clip.mkdir()
    for k in range(frames):
        cv2.imwrite(str(clip / f"{k:03d}.png"), frame)
    return clip
