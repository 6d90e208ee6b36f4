"""Alerts per enrolled person at 25, 10 and 2 fps: the previous tracker vs the current one.

The issue: on a loaded box the node processed ~2 fps and one person raised 25 alerts in 111
frames with the cool-down at 0, because tracks fragmented and each fragment decided afresh.
This script measures that on the real videos in ../shared/data/videos (the arcade crowd and
the Hamilton clip):

* **Watchlist**: ``edge bench``'s automatic list (``edge.lab.bench.watchlists.auto_watchlist``):
  ``--n-video`` people of the clip, the largest faces of one frame (of seven spread over the
  clip, the one with most faces of 48 px or more, so they are distinct people), plus
  ``--held-out`` real faces that are not in the clip (insightface's sample photos, LFW): an
  alert naming one of those is a wrong alert. The enrolment frame itself is never processed
  (it would match itself at 1.0); its neighbours are, so this measures how often a person is
  *decided*, not how well they are recognised.
* **Frame rates**: the clip is subsampled to each ``--fps`` (frame ``round(phase + j * step)``,
  ``step = clip fps / fps``: 10 fps of a 25 fps clip is gaps of 2 and 3 frames), and each frame
  keeps its camera frame index, as a live source that drops frames does, so the tracker
  predicts over the real gap. A 4-second clip holds only 9 frames at 2 fps, so every phase of
  the step is run (``--max-phases``), each as a fresh node: one run is one appearance of the
  clip's people.
* **Node**: ``edge.node.pipeline.Node`` with the bundled YuNet + SFace, default config,
  ``alerts.cooldown_s = 0`` (every track that decides alerts; nothing hides fragmentation).
  *new*: the node as built by ``edge.node.app.build_node`` (detector at
  ``tracker.low_score_threshold``, two-stage Kalman tracker). *old*: the same node with the
  previous tracker (``benchmarks/track_baseline.py``, edge/node/track.py of 62f02cf) and the
  detector at its own threshold, which is what the node did before.

Reported per clip, fps and tracker (summed over the phase runs): frames processed, tracks
created, alerts, wrong alerts (held-out people), enrolled people alerted (summed per run),
alerts per enrolled person alerted (ideal 1.0: each person once per run), the worst person's
alerts in one run, embeddings computed. Counts, and the scores of alerts naming an enrolled
person of the clip only; no face data of anyone is written.

    python benchmarks/track_alerts.py [--out out/bench/track_alerts.json] [--fps 25 10 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import track_baseline as old  # noqa: E402
from common import machine_note, table  # noqa: E402  (common puts the checkout on sys.path)

from edge.config import Config, TrackerSection, load_config  # noqa: E402
from edge.face.registry import FaceModels, load_face_models  # noqa: E402
from edge.lab.bench.sources import shared_data_file, video_info  # noqa: E402
from edge.lab.bench.watchlists import BenchWatchlist, auto_watchlist  # noqa: E402
from edge.link.schema import Alert  # noqa: E402
from edge.node.pipeline import Node  # noqa: E402
from edge.node.sources import Frame, FrameSource  # noqa: E402
from edge.node.track import tracking_config  # noqa: E402
from edge.privacy import FrameRing  # noqa: E402
from edge.watchlist.index import Watchlist  # noqa: E402

VIDEOS = ("walking_arcade_1080p.mp4", "hamilton_talking_360p.mp4")
OVERRIDES: dict[str, Any] = {"alerts": {"console": False, "cooldown_s": 0.0},
                             "privacy": {"lock_memory": False}}
TRACKERS = ("old", "new")


# ----------------------------------------------------------------------------- the old tracker
@dataclass
class _OldTrack(old.Track):
    def add_score(self, subject_id: str, entry_idx: int, score: float, quality: float = 0.0) -> None:
        super().add_score(subject_id, entry_idx, score)  # the old rule: best-k scores, no quality


class OldTracker(old.Tracker):
    """The previous tracker behind today's pipeline calls (scores, embeddable, quality)."""

    def __init__(self, cfg: TrackerSection, interval: int = 1, high_score: float = 0.0) -> None:
        super().__init__(cfg, interval)
        self.high_score = high_score

    def embeddable(self, score: float) -> bool:
        return score >= self.high_score  # every detection: the detector ran at its own threshold

    def update(self, boxes: np.ndarray, frame_index: int,  # type: ignore[override]
               scores: np.ndarray | None = None) -> list[old.Track]:
        return super().update(boxes, frame_index)

    def _new(self, box: np.ndarray, frame_index: int) -> old.Track:
        t = _OldTrack(self._next_id, box.astype(np.float32).copy(), frame_index, frame_index)
        self._next_id += 1
        return t


# ----------------------------------------------------------------------------- frames
class ScheduledVideoSource(FrameSource):
    """The frames of a video file whose indices are in ``indices``, each with its camera frame
    index (the others are decoded and dropped, like a live source's stale frames)."""

    def __init__(self, path: str, ring: FrameRing, indices: list[int], max_width: int = 1920) -> None:
        super().__init__(ring, max_width)
        self.path = path
        self.indices = sorted(indices)

    def frames(self) -> Iterator[Frame]:
        want = set(self.indices)
        last = self.indices[-1] if self.indices else -1
        cap = cv2.VideoCapture(self.path)
        self.stats.up()
        try:
            i = 0
            while i <= last and not self._stop.is_set():
                if i not in want:
                    if not cap.grab():
                        break
                    i += 1
                    continue
                ok, img = cap.read()
                if not ok or img is None:
                    break
                if self._check_shape(*img.shape[:2]):
                    img.fill(0)
                    self.stats.bad("bad frame size")
                    i += 1
                    continue
                self.ring.ensure_shape(img.shape)
                slot = self.ring.acquire()
                assert slot is not None
                buf = self.ring.slot(slot)
                np.copyto(buf, img)
                img.fill(0)  # the decoder's copy: cleared before it is freed
                self.stats.got_frame()
                yield Frame(i, time.time(), slot, buf)
                i += 1
        finally:
            cap.release()
            self.stats.set_state("ended", "end of schedule")


def schedule(n_frames: int, src_fps: float, fps: float, phase: int, skip: set[int]) -> list[int]:
    """Frame indices of one run at ``fps``: ``round(phase + j * step)``, minus ``skip``."""
    step = max(src_fps / fps, 1.0)
    out: list[int] = []
    j = 0
    while True:
        i = int(round(phase + j * step))
        if i >= n_frames:
            break
        if i not in skip and (not out or i != out[-1]):
            out.append(i)
        j += 1
    return out


def phases(src_fps: float, fps: float, max_phases: int) -> list[int]:
    """Offsets into the step (all of them, or ``max_phases`` spread evenly)."""
    n = max(1, math.ceil(src_fps / fps - 1e-9))
    if n <= max_phases:
        return list(range(n))
    return sorted({int(round(k * n / max_phases)) for k in range(max_phases)})


# ----------------------------------------------------------------------------- one run
def run_once(cfg: Config, wl: Watchlist, models: FaceModels, tracker: str, video: str,
             indices: list[int], video_subjects: set[str]) -> dict[str, Any]:
    node = Node(cfg, wl, models, sinks=[])
    if tracker == "old":
        node.tracker = OldTracker(cfg.tracker, cfg.detector.interval,  # type: ignore[assignment]
                                  cfg.detector.score_threshold)
    alerts: list[Alert] = []
    t0 = time.perf_counter()
    st = node.run(ScheduledVideoSource(video, node.ring, indices, cfg.source.max_width),
                  on_frame=lambda f, a: alerts.extend(a))
    dt = time.perf_counter() - t0
    mine = [a for a in alerts if a.subject_id in video_subjects]
    per: dict[str, int] = {}
    for a in mine:
        per[a.subject_id] = per.get(a.subject_id, 0) + 1
    return {
        "frames": st.frames, "seconds": round(dt, 2),
        "tracks": node.tracker._next_id - 1,
        "alerts": len(alerts), "wrong_alerts": len(alerts) - len(mine),
        "enrolled_alerts": len(mine), "people_alerted": len(per),
        "alerts_by_person": dict(sorted(per.items())),
        # enrolled people of the clip only: subject, score, track, frame (never a bystander's)
        "enrolled_alert_scores": [{"subject_id": a.subject_id, "score": round(a.score, 3),
                                   "track_id": a.track_id, "frame_index": a.frame_index} for a in mine],
        "embeddings": st.faces_embedded, "faces": st.faces_seen,
        "buffers_clear_after_run": node.bufs.is_clear(),
    }


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    s = {k: sum(r[k] for r in runs) for k in ("frames", "tracks", "alerts", "wrong_alerts",
                                               "enrolled_alerts", "people_alerted", "embeddings",
                                               "faces")}
    s["runs"] = len(runs)
    s["alerts_per_person"] = round(s["enrolled_alerts"] / s["people_alerted"], 2) \
        if s["people_alerted"] else None
    s["worst_person_alerts"] = max((max(r["alerts_by_person"].values(), default=0) for r in runs),
                                   default=0)
    s["seconds"] = round(sum(r["seconds"] for r in runs), 1)
    return s


def enrol_frames(wl: BenchWatchlist) -> set[int]:
    """Frames the clip's people were enrolled from (never processed)."""
    w = Watchlist.from_blobs(wl.blobs)
    out: set[int] = set()
    for e in w.entries:
        if e.subject_id in wl.video_subjects and e.image_name.startswith("frame "):
            out.add(int(e.image_name.split()[1]))
    return out


def bench_video(video: str, a: argparse.Namespace, echo: Any = print) -> dict[str, Any]:
    cfg = load_config(overrides={**OVERRIDES, "recognizer": {"threads": a.threads}}
                      if a.threads else OVERRIDES)
    info = video_info(video)
    n = info["frames"] if not a.max_frames else min(info["frames"], a.max_frames)
    wl = auto_watchlist(cfg, video, n_video=a.n_video, n_lfw=a.held_out)
    skip = enrol_frames(wl)
    watchlist = Watchlist.from_blobs(wl.blobs)
    subjects = set(wl.video_subjects)
    models = {"old": load_face_models(cfg), "new": load_face_models(tracking_config(cfg))}
    out: dict[str, Any] = {"video": Path(video).name, "clip_fps": round(info["fps"], 2),
                           "clip_frames": info["frames"], "frames_used": n,
                           "enrolled_from_frames": sorted(skip),
                           "watchlist": wl.description, "enrolled_in_clip": len(subjects),
                           "held_out": len(wl.held_out_subjects), "rates": []}
    for fps in a.fps:
        eff = min(fps, info["fps"])
        ph = phases(info["fps"], eff, a.max_phases)
        rate: dict[str, Any] = {"fps": fps, "effective_fps": round(eff, 2),
                                "step_frames": round(info["fps"] / eff, 2), "phases": ph}
        for tr in TRACKERS:
            runs = [run_once(cfg, watchlist, models[tr], tr, video,
                             schedule(n, info["fps"], eff, p, skip), subjects) for p in ph]
            rate[tr] = {"total": aggregate(runs), "runs": runs}
            t = rate[tr]["total"]
            echo(f"  {Path(video).name} {fps:>4} fps {tr}: {t['frames']} frames, {t['tracks']} tracks, "
                 f"{t['alerts']} alerts ({t['people_alerted']} person-runs, "
                 f"{t['alerts_per_person']} per person), {t['embeddings']} embeddings, {t['seconds']} s")
        out["rates"].append(rate)
    return out


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for v in result["videos"]:
        for r in v["rates"]:
            for tr in TRACKERS:
                t = r[tr]["total"]
                out.append({"clip": v["video"].split("_")[0],
                            "fps": r["fps"], "tracker": tr, "runs": t["runs"], "frames": t["frames"],
                            "tracks": t["tracks"], "alerts": t["alerts"], "wrong": t["wrong_alerts"],
                            "people alerted": t["people_alerted"],
                            "alerts/person": t["alerts_per_person"],
                            "worst person": t["worst_person_alerts"], "embeddings": t["embeddings"]})
    return out


COLS = ["clip", "fps", "tracker", "runs", "frames", "tracks", "alerts", "wrong", "people alerted",
        "alerts/person", "worst person", "embeddings"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="../shared/data (default: found beside the checkout)")
    ap.add_argument("--video", action="append", default=None,
                    help="a video file (repeatable; default: the two real clips in DATA/videos)")
    ap.add_argument("--fps", type=float, nargs="+", default=[25.0, 10.0, 2.0])
    ap.add_argument("--max-phases", type=int, default=13, help="phase runs per frame rate at most")
    ap.add_argument("--max-frames", type=int, default=0, help="use only the first N frames of a clip")
    ap.add_argument("--n-video", type=int, default=5, help="people of the clip enrolled")
    ap.add_argument("--held-out", type=int, default=100, help="held-out LFW identities enrolled")
    ap.add_argument("--threads", type=int, default=0, help="recogniser threads (0: the config's)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here")
    a = ap.parse_args(argv)
    if a.video:
        vids = a.video
    else:
        d = a.data / "videos" if a.data else shared_data_file(Path("shared") / "data" / "videos")
        if d is None or not d.is_dir():
            print("track_alerts: skipped, ../shared/data/videos is not present (evaluation data "
                  "kept beside the repo, not shipped)")
            return 0
        vids = [str(d / v) for v in VIDEOS if (d / v).exists()]
        if not vids:
            print(f"track_alerts: skipped, none of {', '.join(VIDEOS)} in {d}")
            return 0
    result: dict[str, Any] = {"machine": machine_note(), "overrides": OVERRIDES,
                              "fps": a.fps, "videos": []}
    for v in vids:
        print(f"{Path(v).name} ...", flush=True)
        result["videos"].append(bench_video(v, a))
    print()
    print(table(rows(result), COLS))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
