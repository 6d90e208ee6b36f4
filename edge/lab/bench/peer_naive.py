"""The naive peer: the loop a developer writes first with the node's two models.

YuNet on the frame, every face aligned and embedded one by one with OpenCV's
``FaceRecognizerSF``, a linear numpy match: no tracker, no quality gates, no batching, no
privacy buffers. Run in a benchmark child, on the same video and watchlist as the node.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from edge.config import Config, load_config
from edge.face import model_files as models
from edge.face.scaling import detector_width
from edge.lab.bench.jobs import ChildJob, alert_summary, progress_bar
from edge.lab.bench.measure import WARMUP_FRAMES, Meter, pct
from edge.watchlist.index import Watchlist


def _naive_embedder(models_dir: str | None, cfg: Config) -> cv2.FaceRecognizerSF:
    data = models.read_verified(cfg.recognizer.model, models.models_dir(models_dir), cfg.recognizer.sha256)
    return cv2.FaceRecognizerSF.create("onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8))


def run_naive_child(job: ChildJob) -> dict[str, Any]:
    """The loop a developer writes first with the same two models: detect (whole frame),
    align and embed every face of every frame one by one, linear numpy match. No tracker,
    no quality gates, no batching, no privacy buffers."""
    cfg = load_config(job.config, overrides=job.overrides)
    wl = Watchlist.from_blobs(job.blobs)
    gallery = wl.embeddings  # L2-normalised
    subj = [e.subject_id for e in wl.entries]
    data = models.read_verified(cfg.detector.model, models.models_dir(cfg.models.dir), cfg.detector.sha256)
    det = cv2.FaceDetectorYN.create("onnx", np.frombuffer(data, np.uint8), np.zeros(0, np.uint8), (320, 320),
                                    cfg.detector.score_threshold, cfg.detector.nms_threshold, 5000)
    rec = _naive_embedder(cfg.models.dir, cfg)
    thr = cfg.match.threshold
    periods: list[float] = []
    t_det: list[float] = []
    t_emb: list[float] = []
    t_match: list[float] = []
    faces_n = 0
    matched: list[str] = []
    bar = progress_bar(job, job.frames)
    cap = cv2.VideoCapture(job.video)
    size: tuple[int, int] | None = None
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
            h, w = img.shape[:2]
            if job.detector_width < 0:
                dw = w  # the whole frame, as OpenCV's sample does
            else:
                dw = detector_width(w, cfg.detector.min_face_px,
                                    job.detector_width or cfg.detector.input_width)
            t0 = time.perf_counter()
            if size != (dw, round(h * dw / w)):
                size = (dw, round(h * dw / w))
                det.setInputSize(size)
            small = img if dw == w else cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            _, faces = det.detect(small)
            t1 = time.perf_counter()
            feats = []
            if faces is not None:
                faces = faces.copy()
                faces[:, :14] *= w / dw
                for row in faces:
                    if row[2] < cfg.detector.min_face_px:
                        continue
                    crop = rec.alignCrop(img, row)
                    raw = rec.feature(crop).reshape(-1)
                    feats.append(raw / max(float(np.linalg.norm(raw)), 1e-12))
            t2 = time.perf_counter()
            for f in feats:
                sims = gallery @ f
                j = int(np.argmax(sims))
                if sims[j] >= thr:
                    matched.append(subj[j])
            t3 = time.perf_counter()
            faces_n += len(feats)
            t_det.append(t1 - t0)
            t_emb.append(t2 - t1)
            t_match.append(t3 - t2)
            periods.append(t3 - t_prev)
            t_prev = t3
            bar.update(1)
    cap.release()
    bar.close()
    w0 = min(WARMUP_FRAMES, max(0, len(periods) - 1))
    steady = periods[w0:]
    out = {
        "mode": job.mode,
        "label": job.label,
        "frames": len(periods),
        "detector_input_width": size[0] if size else 0,
        "fps": round(len(steady) / max(sum(steady), 1e-9), 2),
        "stages_ms": {
            "detect": round(float(np.mean(t_det[w0:] or [0])) * 1e3, 3),
            "embed": round(float(np.mean(t_emb[w0:] or [0])) * 1e3, 3),
            "search": round(float(np.mean(t_match[w0:] or [0])) * 1e3, 3),
        },
        "faces_per_frame": round(faces_n / max(len(periods), 1), 2),
        "embedded_per_frame": round(faces_n / max(len(periods), 1), 2),
        "embed_ms_per_face": round(sum(t_emb[w0:]) / max(faces_n, 1) * 1e3, 2),
        "frame_latency_ms": pct(steady),
        **alert_summary(matched, job, events=len(matched)),
        "alert_rule": f"every face matched at cosine >= {thr} (no tracker, no cool-down)",
        **m.as_dict(len(periods)),
    }
    out["stages_ms"]["other"] = round(float(np.mean(steady or [0])) * 1e3 - sum(out["stages_ms"].values()), 3)
    return out
