"""Enrolment: turn authorised reference photos into a watchlist, and destroy it when due.

Why so strict: a bad reference photo (two people in it, tiny, blurred, turned away) gives an
embedding that matches the wrong people or nobody, and on a police watchlist the former means
innocent people stopped. So every image is checked (readable, exactly one face, large,
sharp and frontal enough) and the officer gets a list of rejected images with reasons.
A create either produces a complete, encrypted list or writes nothing.

Inputs are a folder + CSV (``edge watchlist create``) or a folder with one sub-folder per
subject (``edge watchlist build``, development lists without a deployment window).

Entry ids are opaque (``r00001``...): they name a reference image in alerts
(``reference_image_id``) without repeating who it shows.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import cv2
import numpy as np
from insightface.utils import face_align
from tqdm import tqdm

from edge.errors import WatchlistError
from edge.face.quality import pose_from_landmarks
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta

log = logging.getLogger(__name__)

CSV_COLUMNS = ("subject_id", "display_name", "category", "image", "image_source", "date_added")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm")
MAX_IMAGE_BYTES = 50 << 20
MAX_IMAGE_SIDE = 10_000
PAD_RETRY = 0.25  # black border tried when a tight face crop yields no detection
REF_MAX_PX = 320
REF_MARGIN = 0.4  # reference crop: face box plus this fraction on each side
REF_JPEG_QUALITY = 90
MIN_FACE_COVERAGE = 0.75  # share of the inner face region that must lie inside the photo
# inner face region of the 112x112 ArcFace template (eyebrows to chin, cheek to cheek)
_INNER = (slice(24, 100), slice(20, 92))
_SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# reason codes (fixed strings, countable without any face data)
UNREADABLE = "unreadable"
CUT_OFF = "cut_off"
NO_FACE = "no_face"
SEVERAL_FACES = "several_faces"
TOO_SMALL = "too_small"
BLURRED = "blurred"
TURNED = "turned"


class EnrolmentError(WatchlistError):
    """A create/build cannot go ahead; ``problems`` lists every item at fault (one per line)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


@dataclass
class EnrolPolicy:
    """Acceptance limits for reference images (stricter than the live quality gate)."""

    min_face_px: float = 80.0  # face width estimated as eye distance / 0.4
    min_sharpness: float = 30.0  # variance of Laplacian inside the aligned face (face_sharpness)
    max_yaw_deg: float = 30.0
    max_pitch_deg: float = 25.0

    def validate(self) -> None:
        if not 16 <= self.min_face_px <= 2000:
            raise WatchlistError("min face size must be between 16 and 2000 px")
        if self.min_sharpness < 0:
            raise WatchlistError("min sharpness must be >= 0")
        if not (0 < self.max_yaw_deg <= 90 and 0 < self.max_pitch_deg <= 90):
            raise WatchlistError("max yaw/pitch must be in (0, 90] degrees")


@dataclass
class ImageCheck:
    """Outcome of checking one reference image. Arrays are excluded from ``repr``."""

    path: Path
    name: str  # as the user gave it (relative to the images folder)
    ok: bool = False
    reasons: list[str] = field(default_factory=list)
    reason_code: str = ""
    faces: int = 0
    face_px: float = 0.0
    sharpness: float = 0.0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    embedding: np.ndarray | None = field(default=None, repr=False)
    reference_jpeg: bytes | None = field(default=None, repr=False)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def clear(self) -> None:
        """Drop the face data once it has gone into a watchlist (or was rejected)."""
        if self.embedding is not None:
            self.embedding.fill(0)
        self.embedding = None
        self.reference_jpeg = None


@dataclass
class EnrolRow:
    """One image of one subject, from a CSV row or a sub-folder file."""

    subject_id: str
    path: Path
    name: str
    where: str  # "subjects.csv line 4" or "folder alice/"
    image_source: str = ""
    date_added: str = ""


@dataclass
class EnrolResult:
    watchlist: Watchlist | None
    checks: list[tuple[EnrolRow, ImageCheck]]
    not_enrolled: list[str]  # subject ids left without an accepted image

    @property
    def rejected(self) -> list[tuple[EnrolRow, ImageCheck]]:
        return [(r, c) for r, c in self.checks if not c.ok]


# ----------------------------------------------------------------------------- image checks


def read_image(path: Path) -> np.ndarray | None:
    """Decode an image file (EXIF orientation applied); None when it is not a readable image."""
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or max(img.shape[:2]) > MAX_IMAGE_SIDE or min(img.shape[:2]) < 16:
        return None
    return img


def reference_crop(image: np.ndarray, bbox: np.ndarray, max_px: int = REF_MAX_PX) -> bytes:
    """JPEG of the face with a margin (square, at most ``max_px`` a side) for officers to compare."""
    x, y, w, h = (float(v) for v in bbox[:4])
    side = max(w, h) * (1.0 + 2.0 * REF_MARGIN)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    ih, iw = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + s - iw, y0 + s - ih)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) if pad else image
    crop = src[y0 + pad:y0 + pad + s, x0 + pad:x0 + pad + s]
    if s > max_px:
        crop = cv2.resize(crop, (max_px, max_px), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, REF_JPEG_QUALITY])
    if not ok:
        raise WatchlistError("could not encode a reference image as JPEG")
    return buf.tobytes()


def face_sharpness(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[float, float]:
    """(sharpness, coverage) of the aligned inner face, counting only pixels from the photo.

    Why not :func:`edge.face.quality.sharpness` on the aligned crop: for tight face crops the
    crop includes black border outside the photo, whose hard edge dominates the Laplacian
    and hides blur. Coverage is the share of the inner face region inside the photo.
    """
    m = face_align.estimate_norm(np.asarray(landmarks, np.float32).reshape(5, 2), image_size=size)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.full(image.shape[:2], 255, np.uint8), m, (size, size),
                            flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8))  # Laplacian + interpolation support
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    vals = lap[_INNER][inside[_INNER] > 0]
    coverage = vals.size / float(lap[_INNER].size)
    value = float(vals.var()) if vals.size > 100 else 0.0
    crop.fill(0)
    grey.fill(0)
    lap.fill(0)
    return value, coverage


def check_image(engine, path: Path, policy: EnrolPolicy, name: str | None = None) -> ImageCheck:
    """Check one reference image and, if it passes, keep its embedding and reference crop.

    ``engine`` is an :class:`edge.face.photos.FaceEngine`. Faces are counted on the image as
    given; only if none is found is it retried with a black border (tight face crops).
    """
    chk = ImageCheck(path=Path(path), name=name or Path(path).name)
    img = read_image(chk.path)
    if img is None:
        chk.reasons.append("unreadable: not an image file this tool can decode (or larger than "
                           f"{MAX_IMAGE_BYTES >> 20} MB / {MAX_IMAGE_SIDE} px)")
        chk.reason_code = UNREADABLE
        return chk
    faces = engine.faces(img)
    if not faces:
        faces = engine.faces(img, pad=PAD_RETRY)
    chk.faces = len(faces)
    try:
        if not faces:
            chk.reasons.append("no face found")
            chk.reason_code = NO_FACE
            return chk
        if len(faces) > 1:
            chk.reasons.append(f"{len(faces)} faces found, exactly one needed "
                               "(crop the photo to the subject)")
            chk.reason_code = SEVERAL_FACES
            return chk
        f = faces[0]
        eye = float(np.hypot(*(f.landmarks[1] - f.landmarks[0])))
        chk.face_px = eye / 0.4
        pose = pose_from_landmarks(f.landmarks)
        chk.yaw_deg, chk.pitch_deg = pose.yaw_deg, pose.pitch_deg
        chk.sharpness, coverage = face_sharpness(img, f.landmarks)
        codes = []
        if coverage < MIN_FACE_COVERAGE:
            chk.reasons.append(f"face cut off by the photo's edge ({coverage:.0%} of the face "
                               "region inside the photo)")
            codes.append(CUT_OFF)
        if chk.face_px < policy.min_face_px:
            chk.reasons.append(f"face too small ({chk.face_px:.0f} px wide from the eye distance, "
                               f"needs >= {policy.min_face_px:.0f})")
            codes.append(TOO_SMALL)
        if abs(chk.yaw_deg) > policy.max_yaw_deg or abs(chk.pitch_deg) > policy.max_pitch_deg:
            chk.reasons.append(f"face not frontal (yaw {chk.yaw_deg:+.0f}, pitch {chk.pitch_deg:+.0f} "
                               f"deg; limits +-{policy.max_yaw_deg:.0f}/+-{policy.max_pitch_deg:.0f})")
            codes.append(TURNED)
        if chk.sharpness < policy.min_sharpness:
            chk.reasons.append(f"face blurred (sharpness {chk.sharpness:.0f}, needs >= "
                               f"{policy.min_sharpness:.0f})")
            codes.append(BLURRED)
        if codes:
            chk.reason_code = codes[0]
            return chk
        chk.embedding = f.embedding.astype(np.float32, copy=True)
        chk.reference_jpeg = reference_crop(img, f.bbox)
        chk.ok = True
        return chk
    finally:
        for f in faces:
            f.crop.fill(0)
            f.embedding.fill(0)
        img.fill(0)


# ----------------------------------------------------------------------------- inputs


def valid_subject_id(sid: str) -> bool:
    return bool(_SUBJECT_ID.match(sid))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def read_csv(csv_path: Path, images_dir: Path) -> tuple[dict[str, Subject], list[EnrolRow]]:
    """Parse and check the subjects CSV; every problem is collected, then one EnrolmentError."""
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    if not images_dir.is_dir():
        raise EnrolmentError(f"images folder {images_dir} not found")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EnrolmentError(f"CSV file {csv_path} not found") from None
    except UnicodeDecodeError:
        raise EnrolmentError(f"CSV file {csv_path} is not UTF-8 text") from None
    except OSError as exc:
        raise EnrolmentError(f"cannot read CSV file {csv_path}: {exc.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise EnrolmentError(
            f"CSV file {csv_path} lacks column(s) {', '.join(missing)} "
            f"(needs: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    problems: list[str] = []
    subjects: dict[str, Subject] = {}
    first_line: dict[str, int] = {}
    seen_images: dict[tuple[str, str], int] = {}
    rows: list[EnrolRow] = []
    for rec in reader:
        line = reader.line_num
        where = f"{csv_path.name} line {line}"
        if rec.get(None):
            problems.append(f"{where}: more fields than columns")
            continue
        v = {c: (rec.get(c) or "").strip() for c in CSV_COLUMNS}
        if not any(v.values()):
            continue  # blank line
        empty = [c for c in CSV_COLUMNS if not v[c]]
        if empty:
            problems.append(f"{where}: empty {', '.join(empty)}")
            continue
        sid = v["subject_id"]
        if not valid_subject_id(sid):
            problems.append(f"{where}: subject_id {sid!r} must be 1-64 letters, digits, '.', '_' "
                            "or '-', starting with a letter or digit")
            continue
        try:
            date.fromisoformat(v["date_added"])
        except ValueError:
            problems.append(f"{where}: date_added {v['date_added']!r} is not a date (YYYY-MM-DD)")
            continue
        subj = Subject(sid, v["display_name"], v["category"], v["image_source"], v["date_added"])
        if sid in subjects:
            old = subjects[sid]
            for attr in ("display_name", "category"):
                if getattr(old, attr) != getattr(subj, attr):
                    problems.append(
                        f"{where}: duplicate subject_id {sid} with a different {attr} "
                        f"({getattr(subj, attr)!r}; line {first_line[sid]} says {getattr(old, attr)!r})")
                    break
        else:
            subjects[sid] = subj
            first_line[sid] = line
        rel = Path(v["image"])
        img = images_dir / rel
        if rel.is_absolute() or not _inside(img, images_dir):
            problems.append(f"{where}: image {v['image']!r} must be a path inside the images folder")
            continue
        if not img.is_file():
            problems.append(f"{where}: image file not found: {img}")
            continue
        key = (sid, str(img.resolve()))
        if key in seen_images:
            problems.append(f"{where}: image {v['image']} is listed twice for subject {sid} "
                            f"(also line {seen_images[key]})")
            continue
        seen_images[key] = line
        rows.append(EnrolRow(sid, img, v["image"], where, v["image_source"], v["date_added"]))
    if not rows and not problems:
        problems.append(f"{csv_path.name}: no subject rows")
    if problems:
        raise EnrolmentError(
            f"CSV file {csv_path} has {len(problems)} problem(s); nothing was written", problems)
    return subjects, rows


def scan_folder(images_dir: Path,
                image_source: str | None = None) -> tuple[dict[str, Subject], list[EnrolRow]]:
    """One sub-folder per subject: folder name = subject id (made safe) and display name."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise EnrolmentError(f"images folder {images_dir} not found")
    today = time.strftime("%Y-%m-%d")
    source = image_source or f"folder {images_dir.name}"
    subjects: dict[str, Subject] = {}
    rows: list[EnrolRow] = []
    problems = []
    for sub in sorted(p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sid = re.sub(r"[^A-Za-z0-9._-]+", "_", sub.name).strip("._-")[:64]
        if not sid or not valid_subject_id(sid):
            problems.append(f"folder {sub.name!r}: cannot make a subject id from this name")
            continue
        if sid in subjects:
            problems.append(f"folder {sub.name!r}: subject id {sid} is already used by another folder")
            continue
        subjects[sid] = Subject(sid, sub.name, "", source, today)
        files = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                       and not p.name.startswith("."))
        for f in files:
            rows.append(EnrolRow(sid, f, f"{sub.name}/{f.name}", f"folder {sub.name}/"))
    if problems:
        raise EnrolmentError(f"{images_dir}: {len(problems)} problem(s); nothing was written", problems)
    if not subjects:
        raise EnrolmentError(f"{images_dir} has no sub-folders (one per subject is expected)")
    return subjects, rows


# ----------------------------------------------------------------------------- building


def assemble(items: Iterable[tuple[str, ImageCheck]], subjects: dict[str, Subject],
             meta: WatchlistMeta) -> Watchlist:
    """Watchlist from accepted checks: one entry (opaque id) per image, mapped to its subject."""
    entries: list[Entry] = []
    embs: list[np.ndarray] = []
    refs: dict[str, bytes] = {}
    used: dict[str, Subject] = {}
    for sid, chk in items:
        if not chk.ok or chk.embedding is None:
            continue
        eid = f"r{len(entries) + 1:05d}"
        entries.append(Entry(eid, sid, chk.name))
        embs.append(chk.embedding)
        if chk.reference_jpeg:
            refs[eid] = chk.reference_jpeg
        used[sid] = subjects[sid]
    if not entries:
        raise EnrolmentError("no image was accepted; nothing was written")
    if meta.index_type not in ("flat", "hnsw"):
        meta.index_type = "auto"
    return Watchlist(meta, used, entries, np.stack(embs).astype(np.float32), refs)


def enrol(engine, subjects: dict[str, Subject], rows: list[EnrolRow], policy: EnrolPolicy,
          meta: WatchlistMeta, allow_rejects: bool = False, progress: bool = True,
          on_check: Callable[[EnrolRow, ImageCheck], None] | None = None) -> EnrolResult:
    """Check every image and build the watchlist, or raise EnrolmentError (nothing built).

    Fails when any image is rejected or any subject is left without an accepted image,
    unless ``allow_rejects`` (then those subjects are left out and listed). Always fails
    when no image at all is accepted.
    """
    policy.validate()
    checks: list[tuple[EnrolRow, ImageCheck]] = []
    bar = tqdm(rows, desc="checking images", unit="img", disable=None if progress else True)
    for row in bar:
        chk = check_image(engine, row.path, policy, row.name)
        checks.append((row, chk))
        if on_check:
            on_check(row, chk)
    accepted_by: dict[str, int] = {sid: 0 for sid in subjects}
    for row, chk in checks:
        if chk.ok:
            accepted_by[row.subject_id] += 1
    not_enrolled = [sid for sid, n in accepted_by.items() if n == 0]
    rejected = [(r, c) for r, c in checks if not c.ok]
    problems = [f"{r.where}: {r.name}: {c.reason}" for r, c in rejected]
    problems += [f"subject {sid}: no accepted image" for sid in not_enrolled]
    accepted = sum(accepted_by.values())
    if accepted == 0 or (problems and not allow_rejects):
        for _, c in checks:
            c.clear()
        what = (f"{len(rejected)} image(s) rejected, {len(not_enrolled)} subject(s) without an "
                "accepted image")
        hint = "" if accepted == 0 else " (use --allow-rejects to build from the accepted images)"
        raise EnrolmentError(f"{what}; nothing was written{hint}", problems)
    wl = assemble(((r.subject_id, c) for r, c in checks), _provenance(subjects, checks), meta)
    for _, c in checks:
        c.clear()
    return EnrolResult(wl, checks, not_enrolled)


def background_embeddings(engine, folder: Path, limit: int = 2000) -> np.ndarray:
    """Embeddings of a consented background set (faces of people not on the list, one per
    image, every image under ``folder``) for fusion statistics. They are used for the
    statistics and then zeroed; none is stored."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise EnrolmentError(f"{folder}: no images for the background set")
    rows = []
    for path in files[:limit]:
        img = read_image(path)
        if img is None:
            continue
        faces = engine.faces(img)
        if len(faces) == 1:
            rows.append(faces[0].embedding)
        for f in faces:
            f.crop.fill(0)
    if not rows:
        return np.zeros((0, engine.dim), np.float32)
    return np.stack(rows).astype(np.float32)


def _provenance(subjects: dict[str, Subject],
                checks: list[tuple[EnrolRow, ImageCheck]]) -> dict[str, Subject]:
    """Subjects whose image_source lists the sources of their accepted images (in order) and
    whose date_added is the earliest of them: CSV rows carry these per image."""
    sources: dict[str, list[str]] = {}
    dates: dict[str, list[str]] = {}
    for row, chk in checks:
        if chk.ok and row.image_source:
            if row.image_source not in sources.setdefault(row.subject_id, []):
                sources[row.subject_id].append(row.image_source)
        if chk.ok and row.date_added:
            dates.setdefault(row.subject_id, []).append(row.date_added)
    out = {}
    for sid, s in subjects.items():
        out[sid] = replace(s, image_source="; ".join(sources[sid]) if sources.get(sid) else s.image_source,
                           date_added=min(dates[sid]) if dates.get(sid) else s.date_added)
    return out


