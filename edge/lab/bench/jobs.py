"""What a benchmark child process is asked to run, and the parts of its answer all share.

A :class:`ChildJob` goes to the child pickled over its stdin; the child answers with one
JSON result dict (counts and timings only). This module is imported on both sides, so it
stays light: no models, no index, no plotting.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm


@dataclass
class EnrolFace:
    """One enrolment image of a watchlist subject, kept so each peer enrols with its own model."""

    subject_id: str
    image: np.ndarray  # BGR
    box: tuple[float, float, float, float]  # x, y, w, h in image pixels
    held_out: bool


@dataclass
class ChildJob:
    """What one child process runs; sent pickled over its stdin."""

    mode: str  # node | live | site | naive | face_recognition
    video: str
    frames: int
    config: str | None
    overrides: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)
    enrol: list[EnrolFace] = field(default_factory=list)
    video_subjects: list[str] = field(default_factory=list)
    held_out_subjects: list[str] = field(default_factory=list)
    label: str = ""
    detector_width: int = 0  # naive: 0 = full frame
    scale: float = 1.0  # face_recognition: frame scale before HOG
    upsample: int = 1
    inline_decode: bool = False  # node: decode in the node's thread (speed experiment)
    progress: bool = True
    cameras: int = 1  # site: copies of the video run as that many cameras in one node


def progress_bar(job: ChildJob, total: int) -> Any:
    """A tqdm bar on stderr (stdout carries the result); only on a terminal."""
    return tqdm(total=total, desc=job.label or job.mode, unit="frame", disable=None if job.progress else True,
                file=sys.stderr, leave=False, mininterval=0.5)


def alert_summary(subjects: list[str], job: ChildJob, events: int | None = None) -> dict[str, Any]:
    """Which enrolled video people a run found and which held-out people it wrongly alerted."""
    found = sorted(set(subjects))
    out: dict[str, Any] = {
        "alerts": len(subjects) if events is None else events,
        "subjects_alerted": len(found),
        "video_subjects_found": sorted(s for s in found if s in job.video_subjects),
        "held_out_alerted": sorted(s for s in found if s in job.held_out_subjects),
    }
    if job.video_subjects:
        out["video_subjects_total"] = len(job.video_subjects)
    return out


def has_figures(r: dict[str, Any] | None) -> bool:
    """A result with figures in it (not an error, not a skipped peer)."""
    return r is not None and bool(r) and "error" not in r and "skipped" not in r


def strip(r: dict[str, Any]) -> dict[str, Any]:
    """A run's result without its per-frame arrays (kept for the main run only)."""
    return {k: v for k, v in r.items() if k not in ("per_frame", "alert_list")}
