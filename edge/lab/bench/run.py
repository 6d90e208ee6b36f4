"""The whole benchmark behind ``edge bench``, in order: watchlist, decode, node, A/B, live, peers.

:func:`run_bench` returns one result dict (counts and timings only);
:mod:`edge.lab.bench.report` turns it into files.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from edge.config import Config, load_config
from edge.errors import EdgeError, SourceError
from edge.face.scaling import detector_width
from edge.lab.bench.children import run_child
from edge.lab.bench.jobs import ChildJob, has_figures, strip
from edge.lab.bench.measure import WARMUP_FRAMES, Meter, pct
from edge.lab.bench.peer_face_recognition import face_recognition_status
from edge.lab.bench.sources import SAMPLE_CLIP_NAME, default_video, make_sample_clip, video_info
from edge.lab.bench.summary import GOALS, summarise
from edge.lab.bench.watchlists import BenchWatchlist, auto_watchlist, load_user_watchlist

SCHEMA = "edge.lab.bench.v1"
BENCH_OVERRIDES: dict[str, Any] = {
    # one alert per track instead of one per subject per minute: a looped video then gives
    # enough alerts for latency percentiles; it does not change how much work a frame costs
    "alerts": {"console": False, "cooldown_s": 0.0},
}


@dataclass
class BenchOptions:
    """What ``edge bench`` was asked to measure (its command-line options)."""

    video: str | None = None
    watchlist: str | None = None  # directory of an encrypted list; None = auto
    key_file: str | None = None
    config: str | None = None
    out: Path = Path("out/bench")
    frames: int = 0  # node runs: frames (video looped); 0 = max(500, one pass)
    peers: bool = False
    peer_frames: int = 0  # 0 = one pass of the video
    plots: bool = True
    live: bool = True
    zeroize_ab: bool = True
    zeroize_reps: int = 2
    face_recognition: bool = True
    progress: bool = True
    n_video_subjects: int = 5
    n_lfw: int = 100


def decode_pass(video: str, frames: int, progress: bool = True) -> dict[str, Any]:
    """Decoding alone (the node decodes inside its source, so its stage timers can't see it)."""
    info = video_info(video)
    buf = np.zeros((info["height"], info["width"], 3), np.uint8)
    times: list[float] = []
    cap = cv2.VideoCapture(video)
    # disable=None: bars only on a terminal, never thousands of lines into a log file
    bar = tqdm(total=frames, desc="decode only", unit="frame", disable=None if progress else True,
               leave=False, mininterval=0.5)
    try:
        with Meter() as m:
            while len(times) < frames:
                t0 = time.perf_counter()
                if not cap.grab():
                    cap.release()
                    cap = cv2.VideoCapture(video)
                    if not cap.grab():
                        break
                    t0 = time.perf_counter()
                got, img = cap.retrieve(buf)
                if not got:
                    break
                if img is not buf:
                    buf = img
                times.append(time.perf_counter() - t0)
                bar.update(1)
    finally:
        cap.release()
        bar.close()
        buf.fill(0)
    d = pct(times[WARMUP_FRAMES:] or times)
    return {"frames": len(times), "ms_per_frame": d, "fps": round(1e3 / max(d.get("mean", 1e9), 1e-9), 1),
            **m.as_dict(len(times))}


def machine_info() -> dict[str, Any]:
    """The CPU, its load when the run started, and the versions that decide the speed."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "platform": platform.platform(),
    }


def config_summary(cfg: Config, info: dict[str, Any]) -> dict[str, Any]:
    """The settings of the benchmarked config that decide how much work a frame is."""
    return {
        "detector": cfg.detector.model,
        "min_face_px": cfg.detector.min_face_px,
        "detector_input_width": detector_width(info["width"], cfg.detector.min_face_px,
                                               cfg.detector.input_width),
        "recognizer": cfg.recognizer.model,
        "recognizer_threads": cfg.recognizer.threads,
        "detector_backend": cfg.detector.backend if cfg.detector.kind == "yunet" else cfg.detector.kind,
        "tracker": cfg.tracker.model_dump(),
        "quality_enabled": cfg.quality.enabled,
        "threshold": cfg.match.threshold,
        "zeroize": cfg.privacy.zeroize,
        "lock_memory": cfg.privacy.lock_memory,
        "bench_overrides": BENCH_OVERRIDES,
    }


def bench_video(opts: BenchOptions, echo: Callable[[str], None] = print) -> tuple[str, dict[str, Any]]:
    """The video to run on (``--video``, else the arcade clip, else a clip from t1.jpg) and its info."""
    video = opts.video
    if video is None:
        found = default_video()
        if found is not None:
            video = str(found)
        else:
            video = str(make_sample_clip(opts.out / SAMPLE_CLIP_NAME))
            echo(f"[bench] ../shared/data not found: using a clip made from insightface's t1.jpg ({video})")
    if not Path(video).is_file():
        raise SourceError(f"video file not found: {video}")
    info = video_info(video)
    if info["frames"] <= 0:
        raise SourceError(f"video {video} has no frames")
    return video, info


def bench_watchlist(opts: BenchOptions, video: str, echo: Callable[[str], None] = print) -> BenchWatchlist:
    """``--watchlist DIR`` (encrypted), or the auto list: people from the video + held-out faces."""
    if opts.watchlist:
        if not opts.key_file:
            raise EdgeError("--watchlist needs --key-file (or use --watchlist auto)")
        return load_user_watchlist(opts.watchlist, opts.key_file)
    echo("[bench] building the auto watchlist (enrolling faces from the video + held-out faces)")
    # enrol with the default detector settings whatever the benchmarked config says, so
    # that runs of different configs are scored against the same people
    enrol_cfg = load_config(opts.config, overrides={
        **BENCH_OVERRIDES, "detector": {"min_face_px": 32, "input_width": 0}})
    return auto_watchlist(enrol_cfg, video, opts.n_video_subjects, opts.n_lfw)


def run_bench(opts: BenchOptions, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark; returns the result dict (see :func:`edge.lab.bench.report.write_report`)."""
    video, info = bench_video(opts, echo)
    frames = opts.frames or max(500, info["frames"])
    peer_frames = opts.peer_frames or info["frames"]
    cfg = load_config(opts.config, overrides=BENCH_OVERRIDES)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "video": info,
        "config": {"file": opts.config, **config_summary(cfg, info)},
        "goals": GOALS,
    }
    echo(f"[bench] video {info['path']} ({info['width']}x{info['height']}, {info['frames']} frames "
         f"at {info['fps']:g} fps); node runs: {frames} frames (looped)")
    bw = bench_watchlist(opts, video, echo)
    result["watchlist"] = {"description": bw.description, "entries": bw.entries,
                           "video_subjects": len(bw.video_subjects),
                           "held_out_subjects": len(bw.held_out_subjects)}
    echo(f"[bench] watchlist: {bw.description}")
    base = ChildJob(mode="node", video=video, frames=frames, config=opts.config, overrides=BENCH_OVERRIDES,
                    blobs=bw.blobs, video_subjects=bw.video_subjects,
                    held_out_subjects=bw.held_out_subjects, progress=opts.progress)

    echo("[bench] decode only")
    result["decode"] = decode_pass(video, min(frames, 300), opts.progress)

    echo("[bench] node, zeroization on (throughput: frames as fast as they decode)")
    node = run_child(replace(base, label="node"))
    result["node"] = node
    if opts.zeroize_ab:
        # on/off alternate and the best of each is compared, so that a burst of load from
        # something else on the machine does not decide the result
        ov = {**BENCH_OVERRIDES, "privacy": {"zeroize": False}}
        ons: list[dict[str, Any]] = [node]
        offs: list[dict[str, Any]] = []
        for rep in range(max(1, opts.zeroize_reps)):
            echo(f"[bench] node, zeroization off (test-only switch, child process only) "
                 f"{rep + 1}/{opts.zeroize_reps}")
            off = run_child(replace(base, label=f"node zeroize off {rep + 1}", overrides=ov),
                            zeroize_off=True)
            offs.append(strip(off))
            if rep + 1 < opts.zeroize_reps:
                echo(f"[bench] node, zeroization on, repeat {rep + 2}/{opts.zeroize_reps}")
                ons.append(strip(run_child(replace(base, label=f"node repeat {rep + 2}"))))
        on_fps = [x.get("fps", 0.0) for x in ons if has_figures(x)]
        off_fps = [x.get("fps", 0.0) for x in offs if has_figures(x)]
        result["zeroize_ab"] = {"on_fps": on_fps, "off_fps": off_fps,
                                "on_other_processes_cores": [x.get("other_processes_cores") for x in ons],
                                "off_other_processes_cores": [x.get("other_processes_cores") for x in offs],
                                "best_on_fps": max(on_fps, default=None),
                                "best_off_fps": max(off_fps, default=None),
                                "on_repeats": ons[1:], "off_runs": offs}
    if opts.live:
        echo(f"[bench] node fed like a live camera at {info['fps']:g} fps (newest frame kept)")
        live_frames = max(info["frames"], min(frames, int(info["fps"] * 30)))
        result["live"] = run_child(replace(base, mode="live", frames=live_frames, label="live"))

    if opts.peers:
        peers: dict[str, Any] = {}
        peer = replace(base, frames=peer_frames)
        echo("[bench] peer: naive loop (same models, whole-frame detector input, every face every frame)")
        peers["naive"] = run_child(replace(peer, mode="naive", label="naive", detector_width=-1))
        echo("[bench] peer: naive loop at our detector input width")
        peers["naive_scaled"] = run_child(replace(peer, mode="naive", label="naive scaled",
                                                  detector_width=0))
        fr_ready, why = face_recognition_status()
        if not opts.face_recognition:
            peers["face_recognition"] = {"skipped": "disabled with --no-face-recognition"}
        elif not fr_ready:
            peers["face_recognition"] = {"skipped": why}
            echo(f"[bench] face_recognition skipped: {why}")
        elif not bw.enrol:
            peers["face_recognition"] = {"skipped": "the watchlist has no reference images to enrol from"}
        else:
            echo("[bench] peer: face_recognition (dlib HOG + ResNet, full frame, upsample 1)")
            fr_job = replace(peer, mode="face_recognition", enrol=bw.enrol)
            peers["face_recognition"] = run_child(replace(fr_job, label="face_recognition"))
            echo("[bench] peer: face_recognition at half scale (its README's speed-up)")
            peers["face_recognition_half"] = run_child(replace(fr_job, label="face_recognition 1/2",
                                                               scale=0.5))
        result["peers"] = peers
    result["summary"] = summarise(result)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result
