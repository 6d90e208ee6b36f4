"""``edge demo``: the whole node on real face photos that an installed dependency ships.

insightface's wheel carries a group photo (``t1.jpg``, six people) and a face crop
(``Tom_Hanks_54745.png``). The demo enrols one person of the group from a mirrored, re-lit,
re-scaled copy of their face (the wheel has no second photo of anyone), renders a short
video that pans over the group and then shows the other face, runs the node on that video
through the same file source a deployment uses, and reports that the enrolled person raised
an alert and nobody else did. No camera, no network, nothing of the user's needed.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import insightface
import numpy as np

from edge.config import Config, load_config
from edge.errors import EdgeError
from edge.face.photos import FaceEngine
from edge.node.app import build_node
from edge.node.sources import open_source
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta

DEMO_SUBJECT = "DEMO-001"


def sample_images_dir() -> Path:
    return Path(insightface.__file__).parent / "data" / "images"


@dataclass
class DemoResult:
    enrolled_subject: str
    alerts: list[tuple[str, float, int]]  # subject, score, track
    faces_seen: int
    tracks: int
    frames: int
    fps: float

    @property
    def ok(self) -> bool:
        return bool(self.alerts) and all(s == self.enrolled_subject for s, _, _ in self.alerts)


def _enrolment_photo(group: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Another 'photo' of one person: mirrored, darker, rescaled, in a padded frame."""
    x, y, w, h = (int(v) for v in box)
    m = int(0.6 * max(w, h))
    x0, y0 = max(0, x - m), max(0, y - m)
    x1, y1 = min(group.shape[1], x + w + m), min(group.shape[0], y + h + m)
    face = group[y0:y1, x0:x1]
    face = cv2.flip(face, 1)
    face = cv2.resize(face, None, fx=1.4, fy=1.4, interpolation=cv2.INTER_CUBIC)
    lut = (np.linspace(0, 1, 256) ** 1.3 * 235).astype(np.uint8)  # darker, lower contrast
    face = cv2.LUT(face, lut)
    return cv2.copyMakeBorder(face, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=(90, 90, 90))


def make_clip(path: Path, group: np.ndarray, other: np.ndarray, fps: float = 12.5) -> int:
    """Pan and zoom over the group photo, then show the other face; returns frame count."""
    out_w, out_h = 960, 640
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (out_w, out_h))
    if not writer.isOpened():
        raise EdgeError(f"cannot write the demo clip to {path}")
    gh, gw = group.shape[:2]
    frames = 0
    steps = 30
    for i in range(steps):
        z = 1.0 + 0.25 * i / (steps - 1)  # slow zoom in
        cw, ch = int(gw / z), int(gh / z)
        cx = int((gw - cw) * (0.5 + 0.4 * np.sin(i / steps * np.pi)) / 1.0) // 2
        cy = (gh - ch) // 2
        view = group[cy:cy + ch, cx:cx + cw]
        writer.write(cv2.resize(view, (out_w, out_h), interpolation=cv2.INTER_AREA))
        frames += 1
    canvas = np.full((out_h, out_w, 3), 70, np.uint8)
    face = cv2.resize(other, (224, 224), interpolation=cv2.INTER_CUBIC)
    for i in range(12):
        c = canvas.copy()
        x = 300 + 10 * i
        c[200:424, x:x + 224] = face
        writer.write(c)
        frames += 1
    writer.release()
    return frames


def run_demo(cfg: Config | None = None, workdir: Path | None = None, subject_index: int = 1,
             echo=print) -> DemoResult:
    """Build the watchlist and the clip, run the node, return what happened."""
    cfg = cfg or load_config()
    images = sample_images_dir()
    group = cv2.imread(str(images / "t1.jpg"))
    other = cv2.imread(str(images / "Tom_Hanks_54745.png"))
    if group is None or other is None:
        raise EdgeError(f"insightface's sample photos are missing from {images}")
    engine = FaceEngine(cfg)
    people = engine.faces(group)
    if len(people) < 2:
        raise EdgeError("the detector found fewer than 2 faces in the demo photo")
    people.sort(key=lambda f: float(f.bbox[0]))  # left to right
    target = people[min(subject_index, len(people) - 1)]
    enrol = engine.faces(_enrolment_photo(group, target.bbox))
    if not enrol:
        raise EdgeError("no face found in the demo enrolment photo")
    echo(f"[demo] {len(people)} people in the group photo; enrolling person #{subject_index + 1} "
         "from a mirrored, re-lit copy of their face")
    subject = Subject(DEMO_SUBJECT, "Demo subject (group photo, person 2)", "demo",
                      "insightface sample t1.jpg (mirrored, re-lit)", time.strftime("%Y-%m-%d"))
    wl = Watchlist(WatchlistMeta(deployment_id="demo", model=cfg.recognizer.model),
                   {DEMO_SUBJECT: subject}, [Entry(f"{DEMO_SUBJECT}/1", DEMO_SUBJECT, "enrol.jpg")],
                   enrol[0].embedding[None, :])
    for f in enrol + people:
        f.crop.fill(0)
        f.embedding.fill(0)

    with tempfile.TemporaryDirectory(prefix="edge-demo-", dir=workdir) as tmp:
        clip = Path(tmp) / "demo.mp4"
        n = make_clip(clip, group, other)
        echo(f"[demo] rendered a {n}-frame clip: pan over the group photo, then another face")
        node = build_node(cfg, wl)
        src = open_source(str(clip), node.ring)
        t0 = time.perf_counter()
        alerts = []
        node.run(src, on_frame=lambda fr, al: alerts.extend(al))
        el = time.perf_counter() - t0
        tracks = node.tracker._next_id - 1
    s = node.stats
    return DemoResult(DEMO_SUBJECT, [(a.subject_id, a.score, a.track_id) for a in alerts],
                      s.faces_seen, tracks, s.frames, s.frames / max(el, 1e-9))
