"""Who the benchmark's systems look for: an automatic list built from the video, or a real one.

The automatic list has the shape of a real deployment's: a few sought people who do appear
in the video (true alerts) among many held-out people who do not (false alerts if any).
Each enrolment image is kept (:class:`~edge.lab.bench.jobs.EnrolFace`) so that every peer
enrols the same people with its own model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.config import Config
from edge.errors import EdgeError
from edge.face.photos import FaceEngine, FaceResult
from edge.lab.bench.jobs import EnrolFace
from edge.lab.bench.sources import shared_data_file, video_info
from edge.node.demo import sample_images_dir
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from edge.watchlist.vault import VaultKey

LFW_IMAGES = Path("shared") / "data" / "lfw_pairs_150" / "images"


@dataclass
class BenchWatchlist:
    """The list the benchmark's systems search, as blobs for the children's pipe."""

    blobs: dict[str, bytes]
    enrol: list[EnrolFace]
    video_subjects: list[str]
    held_out_subjects: list[str]
    description: str
    entries: int = 0


def _box(bbox: np.ndarray) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in bbox[:4])
    return x, y, w, h


def _video_frames_at(path: str, positions: list[int]) -> list[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(path)
    out: list[tuple[int, np.ndarray]] = []
    try:
        for p in positions:
            cap.set(cv2.CAP_PROP_POS_FRAMES, p)
            ok, img = cap.read()
            if ok and img is not None:
                out.append((p, img))
    finally:
        cap.release()
    return out


def auto_watchlist(cfg: Config, video: str, n_video: int = 5, n_lfw: int = 100,
                   min_enrol_px: int = 48) -> BenchWatchlist:
    """Enrol ``n_video`` people seen in the video (true alerts) plus held-out real faces that
    are not in it (insightface's shipped photos, and LFW identities when ../shared/data is
    present), so the list has the shape of a real one: a few sought people among many.

    Video subjects are the largest faces of one frame (so they are distinct people): of
    seven frames spread over the clip, the one with most faces of ``min_enrol_px`` or more.
    The node meets each of them over many other frames (and, looped, in other passes).
    """
    eng = FaceEngine(cfg)
    info = video_info(video)
    n = max(info["frames"], 1)
    probe_pos = sorted({int(n * f) for f in (0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.1)} - {n})
    best: tuple[int, np.ndarray, list[FaceResult]] | None = None
    seen: list[np.ndarray] = []
    for pos, img in _video_frames_at(video, probe_pos):
        faces = eng.faces(img)
        seen.extend(f.embedding for f in faces)
        big = [f for f in faces if f.bbox[2] >= min_enrol_px]
        if best is None or len(big) > len(best[2]):
            best = (pos, img, big)
    if best is None or not best[2]:
        raise EdgeError(f"no face of at least {min_enrol_px} px found in {video} to enrol")
    subjects: dict[str, Subject] = {}
    entries: list[Entry] = []
    embs: list[np.ndarray] = []
    enrol: list[EnrolFace] = []
    video_ids: list[str] = []
    pos, img, big = best
    for k, f in enumerate(big[:n_video]):
        sid = f"V{k + 1:02d}"
        subjects[sid] = Subject(sid, f"video person {k + 1}", "benchmark (in video)")
        entries.append(Entry(f"{sid}/1", sid, f"frame {pos}"))
        embs.append(f.embedding)
        enrol.append(EnrolFace(sid, img, _box(f.bbox), False))
        video_ids.append(sid)
    seen_m = np.array(seen, np.float32) if seen else np.zeros((0, eng.dim), np.float32)

    held: list[str] = []

    def add_held(name: str, image: np.ndarray, pad: float, max_faces: int) -> None:
        faces = eng.faces(image, pad=pad)  # largest first
        for f in faces[:max_faces]:
            if f.bbox[2] < 24:
                continue
            if len(seen_m) and float((seen_m @ f.embedding).max()) >= 0.5:
                continue  # this person appears in the video: not held out
            sid = f"H{len(held) + 1:04d}"
            subjects[sid] = Subject(sid, f"held-out person {len(held) + 1}", "benchmark (not in video)")
            entries.append(Entry(f"{sid}/1", sid, name))
            embs.append(f.embedding)
            enrol.append(EnrolFace(sid, image, _box(f.bbox), True))
            held.append(sid)

    imgs = sample_images_dir()
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        im = cv2.imread(str(imgs / name), cv2.IMREAD_COLOR)
        if im is not None:
            add_held(name, im, 0.3 if im.shape[0] < 200 else 0.0, 8)
    lfw = shared_data_file(LFW_IMAGES)
    if lfw is not None and n_lfw > 0:
        taken: set[str] = set()
        for p in sorted(lfw.iterdir()):
            ident = p.stem.rsplit("_", 1)[0]
            if ident in taken:
                continue
            im = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if im is None:
                continue
            add_held(p.name, im, 0.3, 1)  # one identity per LFW name
            taken.add(ident)
            if len(taken) >= n_lfw:
                break
    meta = WatchlistMeta(deployment_id="bench-auto", model=cfg.recognizer.model)
    wl = Watchlist(meta, subjects, entries, np.array(embs, np.float32))
    desc = (f"auto: {len(video_ids)} people enrolled from frame {pos} of the video + "
            f"{len(held)} held-out real faces not in it (insightface sample photos"
            f"{', LFW' if lfw is not None and n_lfw > 0 else ''})")
    return BenchWatchlist(wl.to_blobs(), enrol, video_ids, held, desc, len(wl))


def load_user_watchlist(directory: str, key_file: str) -> BenchWatchlist:
    """A real deployment list (encrypted); its reference images enrol the peers."""
    wl = Watchlist.load(directory, VaultKey.from_file(Path(key_file)))
    wl.check_window()  # the node refuses a list outside its window; so does its benchmark
    enrol: list[EnrolFace] = []
    for e in wl.entries:
        jpeg = wl.references.get(e.entry_id)
        if not jpeg:
            continue
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is not None:
            box = (0.0, 0.0, float(img.shape[1]), float(img.shape[0]))
            enrol.append(EnrolFace(e.subject_id, img, box, False))
    return BenchWatchlist(wl.to_blobs(), enrol, sorted(wl.subjects), [],
                          f"{directory} ({len(wl.subjects)} subjects, {len(wl)} entries)", len(wl))
