"""The ``face_recognition`` peer (dlib HOG + ResNet), as its README uses it, in a benchmark child.

It is an optional extra (``peers``): it is imported only when this peer runs, and
:func:`face_recognition_status` says why it cannot.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from edge.lab.bench.jobs import ChildJob, alert_summary, progress_bar
from edge.lab.bench.measure import Meter


def face_recognition_status() -> tuple[bool, str]:
    """Whether the ``face_recognition`` peer can run here, and why not."""
    try:
        import face_recognition  # noqa: F401  (the optional extra: probing for it is the point)
    except ImportError as exc:
        return False, (f"face_recognition is not importable ({exc}); install the 'peers' extra and "
                       "then `pip install --no-deps face_recognition==1.3.0` (its own metadata "
                       "pulls dlib from source)")
    except Exception as exc:  # noqa: BLE001 - e.g. its models package missing
        return False, f"face_recognition failed to import: {type(exc).__name__}: {exc}"
    return True, ""


def _css(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return int(y), int(x + w), int(y + h), int(x)


def run_face_recognition_child(job: ChildJob) -> dict[str, Any]:
    """``face_recognition`` as its README uses it: HOG detection, 68-point alignment and the
    dlib ResNet embedding for every face of every frame, match at its default tolerance 0.6."""
    import face_recognition as fr  # the optional 'peers' extra, checked by face_recognition_status

    known: list[np.ndarray] = []
    names: list[str] = []
    not_enrolled: list[str] = []
    for e in job.enrol:
        rgb = cv2.cvtColor(e.image, cv2.COLOR_BGR2RGB)
        locs = fr.face_locations(rgb, number_of_times_to_upsample=1)
        want = _css(e.box)
        best = None
        best_iou = 0.0
        for loc in locs:
            iou = _css_iou(loc, want)
            if iou > best_iou:
                best, best_iou = loc, iou
        loc = best if best is not None and best_iou >= 0.3 else want
        enc = fr.face_encodings(rgb, [loc])
        if enc:
            known.append(enc[0])
            names.append(e.subject_id)
        else:
            not_enrolled.append(e.subject_id)
    known_m = np.array(known) if known else np.zeros((0, 128))
    periods: list[float] = []
    t_det: list[float] = []
    t_emb: list[float] = []
    faces_n = 0
    matched: list[str] = []
    bar = progress_bar(job, job.frames)
    cap = cv2.VideoCapture(job.video)
    with Meter() as m:
        t_prev = time.perf_counter()
        while len(periods) < job.frames:
            ok, img = cap.read()
            if not ok:
                cap.release()
                cap = cv2.VideoCapture(job.video)
                ok, img = cap.read()
                if not ok:
                    break
            t0 = time.perf_counter()
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            if job.scale != 1.0:
                rgb = cv2.resize(rgb, None, fx=job.scale, fy=job.scale, interpolation=cv2.INTER_AREA)
            locs = fr.face_locations(rgb, number_of_times_to_upsample=job.upsample)
            t1 = time.perf_counter()
            encs = fr.face_encodings(rgb, locs)
            t2 = time.perf_counter()
            for enc in encs:
                if len(known_m):
                    d = fr.face_distance(known_m, enc)
                    j = int(np.argmin(d))
                    if d[j] <= 0.6:
                        matched.append(names[j])
            t3 = time.perf_counter()
            faces_n += len(encs)
            t_det.append(t1 - t0)
            t_emb.append(t2 - t1)
            periods.append(t3 - t_prev)
            t_prev = t3
            bar.update(1)
    cap.release()
    bar.close()
    w0 = min(2, max(0, len(periods) - 1))
    steady = periods[w0:]
    return {
        "mode": job.mode,
        "label": job.label,
        "frames": len(periods),
        "settings": {"scale": job.scale, "upsample": job.upsample, "model": "hog", "tolerance": 0.6},
        "fps": round(len(steady) / max(sum(steady), 1e-9), 3),
        "stages_ms": {"detect": round(float(np.mean(t_det[w0:] or [0])) * 1e3, 1),
                      "embed": round(float(np.mean(t_emb[w0:] or [0])) * 1e3, 1)},
        "faces_per_frame": round(faces_n / max(len(periods), 1), 2),
        "embedded_per_frame": round(faces_n / max(len(periods), 1), 2),
        "enrolled": len(names),
        "not_enrolled": not_enrolled,
        **alert_summary(matched, job, events=len(matched)),
        "alert_rule": "every face within distance 0.6 of an enrolled face",
        **m.as_dict(len(periods)),
    }


def _css_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    at, ar, ab, al = a
    bt, br, bb, bl = b
    iw = max(0, min(ar, br) - max(al, bl))
    ih = max(0, min(ab, bb) - max(at, bt))
    inter = iw * ih
    union = (ar - al) * (ab - at) + (br - bl) * (bb - bt) - inter
    return inter / union if union > 0 else 0.0
