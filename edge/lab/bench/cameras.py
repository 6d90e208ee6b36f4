"""``edge bench --cameras N`` and ``benchmarks/multi_camera.py``: N live cameras in one node
process, side by side with N single-camera processes of the node as it was before sites.

Each camera is a copy of the same video paced at its frame rate (newest frame kept, the
live-source policy). The new node runs them all in one child process
(:mod:`edge.lab.bench.site_child`); the old setup is N child processes of an older revision
(default :data:`BEFORE_REV`, extracted with ``git archive`` outside the working tree) each
running that revision's own ``live`` bench child, all started at once so they compete for
the same cores as N separate nodes would. Both search the same watchlist.

Everything in the result is counts and timings: no pixels, crops, embeddings or landmarks.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge.config import load_config
from edge.errors import EdgeError
from edge.lab.bench.children import finish_child, run_child, start_child
from edge.lab.bench.jobs import ChildJob, has_figures
from edge.lab.bench.measure import WARMUP_FRAMES, ChildrenMeter, wait_until_quiet
from edge.lab.bench.plots import write_cameras_plot
from edge.lab.bench.run import (
    BENCH_OVERRIDES,
    BenchOptions,
    bench_video,
    bench_watchlist,
    config_summary,
    machine_info,
)
from edge.lab.bench.sources import repo_root
from edge.lab.bench.summary import GOALS

SCHEMA = "edge.lab.bench.cameras.v1"
# the last revision before several cameras per process (edge.node.site): one camera per node
BEFORE_REV = "24177c1"
CAMERA_GOALS = {
    "processed_pct": 95.0,  # of the frames a 25 fps camera sends, every camera
    "capture_to_alert_p95_ms": GOALS["capture_to_alert_p95_ms"],
    "rss_vs_before_single": 1.5,  # the N-camera node's peak RSS / one old single-camera node's
}

Echo = Callable[[str], None]


@dataclass(frozen=True)
class CamerasOptions:
    """What to compare: camera counts, detector intervals, and the old revision."""

    cameras: tuple[int, ...] = (1,)
    intervals: tuple[int, ...] = (0,)  # detector.interval for the new node; 0 = the config's
    before: bool = True  # also run the old revision, one process per camera
    before_rev: str = BEFORE_REV
    before_dir: Path | None = None  # where the old revision is extracted; None = a temp dir
    quiet_wait_s: float = 0.0  # before each run, wait up to this long for the CPUs to go idle


@dataclass
class CamerasInputs:
    """What every run of a comparison shares: the video, the frame count, the watchlist."""

    video: str
    info: dict[str, Any]
    frames: int
    base: ChildJob
    header: dict[str, Any]


# ---------------------------------------------------------------------- the old revision
def before_checkout(rev: str = BEFORE_REV, dest: Path | None = None) -> Path:
    """A copy of revision ``rev`` of this checkout, outside it (``git archive``; reused if there).

    The copy is never written to by the benchmark; it is only put on the old children's
    ``PYTHONPATH``.
    """
    root = repo_root()
    try:
        full = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise EdgeError(f"cannot find git revision {rev} in {root} (the 'before' runs need a git "
                        f"checkout; use --no-before to skip them): {exc}") from None
    dest = dest or Path(tempfile.gettempdir()) / f"edge-before-{full[:12]}"
    if (dest / "edge" / "__init__.py").is_file():
        return dest
    tar = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", full],
                         capture_output=True, check=False)
    if tar.returncode != 0:
        raise EdgeError(f"git archive {rev} failed: {tar.stderr.decode('utf-8', 'replace')[:200]}")
    part = dest.with_name(dest.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as tf:
        tf.extractall(part, filter="data")
    part.rename(dest)
    return dest


def run_before(inp: CamerasInputs, n: int, checkout: Path, timeout: float | None = None) -> dict[str, Any]:
    """N single-camera nodes of the old revision, one process each, all live-paced at once.

    They run at that revision's defaults: a config written for the new node (a detector
    interval, workers) is not the old node's to read, and would be refused by it.
    """
    jobs = [replace(inp.base, mode="live", config=None, label=f"before cam{i + 1}", progress=False)
            for i in range(n)]
    with ChildrenMeter() as m:
        procs = [start_child(job, checkout=checkout) for job in jobs]
        results = [finish_child(p, job, timeout) for p, job in zip(procs, jobs, strict=True)]
    return {"mode": "before", "revision": str(checkout), "cameras": n,
            "processes": [{k: v for k, v in r.items() if k not in ("per_frame", "alert_list")}
                          for r in results],
            "wall_s": round(m.wall, 3), "cores_used": round(m.cpu / max(m.wall, 1e-9), 2),
            "other_processes_cores": m.other_cores}


def run_site(inp: CamerasInputs, n: int, interval: int, progress: bool,
             timeout: float | None = None) -> dict[str, Any]:
    """The new node: N cameras in one process (``detector.interval`` = ``interval`` when > 0)."""
    ov: dict[str, Any] = dict(inp.base.overrides)
    if interval > 0:
        ov["detector"] = {**ov.get("detector", {}), "interval": interval}
    job = replace(inp.base, mode="site", cameras=n, overrides=ov, label=f"site x{n}", progress=progress)
    return run_child(job, timeout=timeout)


# ---------------------------------------------------------------------- per-camera rows
def camera_row(name: str, r: dict[str, Any], fps: float, interval: int = 1) -> dict[str, Any]:
    """One camera's headline figures, the same for both systems.

    Frames processed are counted against the frames a real camera would have sent while the
    run lasted: the stand-in captures into the node's frame ring, so when the node holds every
    slot the stand-in waits (a real camera would not) and falls behind its clock. Its worst lag
    times the frame rate is the frames such a camera would have sent on top.

    With ``detector.interval = k`` the frames between detections are carried (never looked
    at), so a frame that counts is one the detector should see: processed = frames handed to
    the node / (camera frames / k). Counting carried frames as processed would hide a camera
    whose every detection frame but a few was dropped as stale.
    """
    c2a = r.get("capture_to_alert_ms") or {}
    captured = int(r.get("captured") or 0)
    frames = int(r.get("frames") or 0)
    lag_ms = float(r.get("capture_thread_max_lag_ms") or 0.0)
    camera_frames = captured + int(lag_ms / 1e3 * fps)
    k = max(1, int(interval))
    handed = int(r.get("frames_handed_to_node", frames))
    due = -(-camera_frames // k)  # frames the detector is due to see
    return {
        "camera": name,
        "captured": captured,
        "camera_frames": camera_frames,
        "frames": frames,
        "frames_handed_to_node": handed,
        "processed_pct": round(min(100.0, 100.0 * handed / max(due, 1)), 1),
        "processed_pct_of_captured": round(100.0 * frames / max(captured, 1), 1),
        "capture_lag_ms": round(lag_ms),
        # processed frames / run wall time (the old live child's "fps" is 1 / mean frame period);
        # with an interval, k per frame the detector saw (as processed_pct counts them)
        "fps": _fps(r, handed, k, frames),
        "c2a_n": c2a.get("n", 0),
        "c2a_p50_ms": c2a.get("p50"),
        "c2a_p95_ms": c2a.get("p95"),
        "found": len(r.get("video_subjects_found") or []),
        "found_of": r.get("video_subjects_total"),
        "held_out_alerted": len(r.get("held_out_alerted") or []),
    }


def _fps(r: dict[str, Any], handed: int, k: int, frames: int) -> float | None:
    fps = r.get("fps_all_frames", r.get("fps"))
    if fps is None or k <= 1 or not frames:
        return fps
    return round(float(fps) * min(handed * k, frames) / frames, 2)


def system_summary(system: str, rows: list[dict[str, Any]], cores: float | None, rss_mb: float | None,
                   other: float | None, error: str = "") -> dict[str, Any]:
    """A system's worst camera (the goals hold for every camera) plus its process figures."""
    p95s = [r["c2a_p95_ms"] for r in rows if r["c2a_p95_ms"] is not None]
    return {
        "system": system,
        "error": error,
        "per_camera": rows,
        "processed_pct_min": min((r["processed_pct"] for r in rows), default=None),
        "capture_lag_ms_max": max((r["capture_lag_ms"] for r in rows), default=None),
        "fps_min": min((r["fps"] for r in rows if r["fps"] is not None), default=None),
        "c2a_p50_ms_max": max((r["c2a_p50_ms"] for r in rows if r["c2a_p50_ms"] is not None), default=None),
        "c2a_p95_ms_max": max(p95s, default=None),
        "found_min": min((r["found"] for r in rows), default=None),
        "found_of": rows[0]["found_of"] if rows else None,
        "held_out_alerted": sum(r["held_out_alerted"] for r in rows),
        "cores_used": cores,
        "rss_peak_mb": rss_mb,
        "other_processes_cores": other,
    }


def site_summary(r: dict[str, Any]) -> dict[str, Any]:
    if not has_figures(r):
        return system_summary("site", [], None, None, None, r.get("error", "no result"))
    rows = []
    for name, c in r["per_camera"].items():
        rows.append(camera_row(name, c, float(r.get("camera_fps") or 25.0),
                               int(r.get("detector_interval") or 1)))
    s = system_summary("site", rows, r.get("cores_used"), r.get("rss_peak_mb"),
                       r.get("other_processes_cores"))
    s.update({k: r.get(k) for k in ("detector_interval", "stages_ms_per_frame", "worker_busy_fraction",
                                    "processed_fps_total", "workers")})
    return s


def before_summary(r: dict[str, Any]) -> dict[str, Any]:
    procs = r.get("processes") or []
    bad = [p.get("error", "no result") for p in procs if not has_figures(p)]
    rows = [camera_row(f"cam{i + 1}", p, float(p.get("camera_fps") or 25.0))
            for i, p in enumerate(procs) if has_figures(p)]
    rss = [p["rss_peak_mb"] for p in procs if has_figures(p)]
    s = system_summary("before", rows, r.get("cores_used"), round(sum(rss), 1) if rss else None,
                       r.get("other_processes_cores"), "; ".join(bad))
    # the old node had no detector interval: every frame is detected
    s.update({"detector_interval": 1, "rss_peak_mb_per_process": rss,
              "rss_single_camera_mb": round(sum(rss) / len(rss), 1) if rss else None,
              "stages_ms_per_frame": _mean_stages([p for p in procs if has_figures(p)])})
    return s


def _mean_stages(procs: list[dict[str, Any]]) -> dict[str, float] | None:
    if not procs:
        return None
    keys = procs[0].get("stages_ms", {}).keys()
    return {k: round(sum(p["stages_ms"].get(k, 0.0) for p in procs) / len(procs), 3) for k in keys}


def goals(site: dict[str, Any], before_single_rss: float | None) -> list[dict[str, Any]]:
    """The multi-camera goals for the new node (reported, never asserted)."""
    rows: list[dict[str, Any]] = []

    def goal(name: str, value: float | None, target: float, higher: bool, unit: str, note: str = "") -> None:
        met = None if value is None else (value >= target if higher else value <= target)
        rows.append({"goal": name, "target": f"{'>=' if higher else '<='} {target:g}{unit}", "value": value,
                     "unit": unit, "met": met, "note": note})

    goal("frames processed (worst camera)", site.get("processed_pct_min"), CAMERA_GOALS["processed_pct"],
         True, " %")
    goal("capture->alert p95 (worst camera)", site.get("c2a_p95_ms_max"),
         CAMERA_GOALS["capture_to_alert_p95_ms"], False, " ms")
    total = site.get("found_of")
    goal("enrolled people found (worst camera)", site.get("found_min"), float(total or 0), True,
         f" of {total}")
    ratio = None
    if site.get("rss_peak_mb") and before_single_rss:
        ratio = round(site["rss_peak_mb"] / before_single_rss, 2)
    goal("peak RSS / old single-camera node", ratio, CAMERA_GOALS["rss_vs_before_single"], False, "x",
         f"{site.get('rss_peak_mb')} MB vs {before_single_rss} MB" if ratio else "no old run")
    return rows


# ---------------------------------------------------------------------- the comparison
def prepare(opts: BenchOptions, echo: Echo = print) -> CamerasInputs:
    """Video, frame count and watchlist, shared by every run of the comparison."""
    video, info = bench_video(opts, echo)
    frames = opts.frames or max(500, info["frames"])
    cfg = load_config(opts.config, overrides=BENCH_OVERRIDES)
    bw = bench_watchlist(opts, video, echo)
    echo(f"[bench] watchlist: {bw.description}")
    base = ChildJob(mode="site", video=video, frames=frames, config=opts.config, overrides=BENCH_OVERRIDES,
                    blobs=bw.blobs, video_subjects=bw.video_subjects, held_out_subjects=bw.held_out_subjects,
                    progress=opts.progress)
    header = {
        "schema": SCHEMA,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "video": info,
        "frames_per_camera": frames,
        "config": {"file": opts.config, "detector_interval_default": cfg.detector.interval,
                   **config_summary(cfg, info)},
        "watchlist": {"description": bw.description, "entries": bw.entries,
                      "video_subjects": len(bw.video_subjects),
                      "held_out_subjects": len(bw.held_out_subjects)},
        "goals": CAMERA_GOALS,
    }
    return CamerasInputs(video, info, frames, base, header)


def run_cameras(opts: BenchOptions, copts: CamerasOptions, echo: Echo = print) -> dict[str, Any]:
    """Every (interval, N) of ``copts``: the new node, and once per N the old N-process setup."""
    if not copts.cameras or min(copts.cameras) < 1:
        raise EdgeError("--cameras must be 1 or more")
    if min(copts.intervals) < 0:
        raise EdgeError("--interval must be 1 or more (0 = the config's)")
    checkout = None
    if copts.before:
        checkout = before_checkout(copts.before_rev, copts.before_dir)
        echo(f"[bench] old node: revision {copts.before_rev}, extracted to {checkout}")
    inp = prepare(opts, echo)
    fps = inp.info["fps"]
    timeout = inp.frames / max(fps, 1e-9) * 3 + 300
    result: dict[str, Any] = {**inp.header, "before_revision": copts.before_rev if copts.before else None,
                              "runs": []}
    before_done: dict[int, dict[str, Any]] = {}
    default_k = inp.header["config"]["detector_interval_default"]
    for k in copts.intervals:
        for n in copts.cameras:
            echo(f"[bench] new node: {n} camera(s) x {inp.frames} frames at {fps:g} fps in one process, "
                 f"detector interval {k or default_k}")
            quiet = _settle(copts, echo)
            site = run_site(inp, n, k, opts.progress, timeout)
            entry: dict[str, Any] = {"cameras": n, "interval": k or default_k, "site_raw": site,
                                     "site": site_summary(site), "site_quiet_wait": quiet}
            if checkout is not None:
                if n not in before_done:
                    echo(f"[bench] old node ({copts.before_rev}): {n} single-camera process(es) at once")
                    quiet = _settle(copts, echo)
                    before_done[n] = run_before(inp, n, checkout, timeout)
                    before_done[n]["quiet_wait"] = quiet
                    before_done[n]["shared_with_intervals"] = []
                before_done[n]["shared_with_intervals"].append(k or default_k)
                entry["before_raw"] = before_done[n]
                entry["before"] = before_summary(before_done[n])
            result["runs"].append(entry)
            _echo_run(entry, echo)
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return resummarise(result)


def resummarise(result: dict[str, Any]) -> dict[str, Any]:
    """(Re)build every run's summaries and goals from its raw child results (also for an old JSON)."""
    for entry in result["runs"]:
        entry["site"] = site_summary(entry["site_raw"])
        if "before_raw" in entry:
            entry["before"] = before_summary(entry["before_raw"])
    single = _before_single_rss(result["runs"])
    for entry in result["runs"]:
        entry["goals"] = goals(entry["site"], single)
    result["before_single_camera_rss_mb"] = single
    return result


def _settle(copts: CamerasOptions, echo: Echo) -> dict[str, Any] | None:
    if copts.quiet_wait_s <= 0:
        return None
    q = wait_until_quiet(copts.quiet_wait_s)
    if not q["quiet"]:
        echo(f"[bench] the machine stayed busy ({q['busy_cores']} cores) for {q['waited_s']:g} s; "
             "running anyway (see other_processes_cores)")
    return q


def _before_single_rss(runs: list[dict[str, Any]]) -> float | None:
    """One old single-camera node's peak RSS: from the N=1 run if there is one, else per process."""
    ones = [e["before"] for e in runs if "before" in e and e["cameras"] == 1
            and e["before"].get("rss_single_camera_mb")]
    if ones:
        return float(ones[0]["rss_single_camera_mb"])
    any_ = [e["before"]["rss_single_camera_mb"] for e in runs
            if "before" in e and e["before"].get("rss_single_camera_mb")]
    return float(any_[0]) if any_ else None


def _echo_run(entry: dict[str, Any], echo: Echo) -> None:
    for s in (entry["site"], entry.get("before")):
        if s is not None:
            echo("  " + one_line(entry["cameras"], s))


# ---------------------------------------------------------------------- tables and files
def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def one_line(n: int, s: dict[str, Any]) -> str:
    if s.get("error") and not s.get("per_camera"):
        return f"{s['system']:<7} x{n}: failed: {s['error']}"
    return (f"{s['system']:<7} x{n} (interval {s.get('detector_interval')}): processed >= "
            f"{_f(s['processed_pct_min'])}%, fps >= {_f(s['fps_min'])}, "
            f"c2a p95 <= {_f(s['c2a_p95_ms_max'], 0)} ms, "
            f"found >= {s['found_min']}/{s['found_of']}, "
            f"camera held back <= {_f(s['capture_lag_ms_max'], 0)} ms, "
            f"CPU {_f(s['cores_used'], 2)} cores, "
            f"RSS {_f(s['rss_peak_mb'], 0)} MB (others busy {s['other_processes_cores']})")


SYSTEM_NAMES = {"site": "new: one process", "before": "old: N processes"}


def summary_table(result: dict[str, Any]) -> list[str]:
    """One row per (N, interval, system): the worst camera's figures and the process's."""
    lines = ["| cameras | detector interval | system | processed % (worst cam) | fps (worst cam) | "
             "c2a p50 ms (worst) | c2a p95 ms (worst) | found (worst cam) | CPU cores | peak RSS MB | "
             "camera held back (max ms) | others busy (cores) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["runs"]:
        for key in ("site", "before"):
            s = e.get(key)
            if s is None:
                continue
            name = SYSTEM_NAMES[key]
            if not s.get("per_camera"):
                lines.append(f"| {e['cameras']} | {s.get('detector_interval') or e['interval']} | {name} | "
                             f"failed: {s.get('error')} | | | | | | | | |")
                continue
            rss = _f(s["rss_peak_mb"], 0) + (" (sum)" if key == "before" and e["cameras"] > 1 else "")
            lines.append(
                f"| {e['cameras']} | {s['detector_interval']} | {name} | {_f(s['processed_pct_min'])} | "
                f"{_f(s['fps_min'])} | {_f(s['c2a_p50_ms_max'], 0)} | {_f(s['c2a_p95_ms_max'], 0)} | "
                f"{s['found_min']}/{s['found_of']} | {_f(s['cores_used'], 2)} | {rss} | "
                f"{_f(s['capture_lag_ms_max'], 0)} | {s['other_processes_cores']} |")
    return lines


def camera_table(result: dict[str, Any]) -> list[str]:
    lines = ["| cameras | interval | system | camera | camera frames | captured | processed | % | "
             "node count % of captured | held back ms | fps | alerts (n) | c2a p50 ms | c2a p95 ms | found | "
             "held-out alerted |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in result["runs"]:
        for key in ("site", "before"):
            s = e.get(key)
            for r in (s or {}).get("per_camera", []):
                lines.append(
                    f"| {e['cameras']} | {s['detector_interval']} | {SYSTEM_NAMES[key]} | {r['camera']} | "
                    f"{r['camera_frames']} | {r['captured']} | {r['frames']} | {_f(r['processed_pct'])} | "
                    f"{_f(r['processed_pct_of_captured'])} | {r['capture_lag_ms']} | {_f(r['fps'])} | "
                    f"{r['c2a_n']} | "
                    f"{_f(r['c2a_p50_ms'], 0)} | {_f(r['c2a_p95_ms'], 0)} | {r['found']}/{r['found_of']} | "
                    f"{r['held_out_alerted']} |")
    return lines


def stage_table(result: dict[str, Any]) -> list[str]:
    """Where the time goes: ms per processed frame, per stage (new node: carried frames included)."""
    stages = ("detect", "track", "align", "embed", "search", "alert", "zeroize")
    lines = ["| cameras | interval | system | " + " | ".join(stages)
             + " | workers | stage time / wall | frames/s (all cams) |",
             "|---|---|---|" + "---|" * len(stages) + "---|---|---|"]
    for e in result["runs"]:
        for key in ("site", "before"):
            s = e.get(key)
            st = (s or {}).get("stages_ms_per_frame")
            if not st:
                continue
            busy = s.get("worker_busy_fraction")
            busy_s = "n/a" if busy is None else f"{busy * 100:.0f}%"
            lines.append(f"| {e['cameras']} | {s['detector_interval']} | {SYSTEM_NAMES[key]} | "
                         + " | ".join(_f(st.get(k), 2) for k in stages)
                         + f" | {s.get('workers') or 1} | {busy_s} | {_f(s.get('processed_fps_total'))} |")
    return lines


def markdown(result: dict[str, Any], plot: str | None = None) -> str:
    m, v = result["machine"], result["video"]
    lines = [
        "# edge bench --cameras",
        "",
        f"{result.get('started_at', '')} on {m['cpu']} ({m['cores']} cores), load average at start "
        f"{m['loadavg_at_start'][0]}; Python {m['python']}, onnxruntime {m['onnxruntime']}.",
        "",
        f"Each camera: `{Path(v['path']).name}` {v['width']}x{v['height']} paced at {v['fps']:g} fps, "
        f"looped to {result['frames_per_camera']} frames (newest frame kept). Watchlist: "
        f"{result['watchlist']['description']}. New node: all cameras in one process "
        f"(`edge.node.site`). Old node: revision {result.get('before_revision') or 'not run'}, one process "
        "per camera, all at once (it has no detector interval: it detects every frame; one old run per "
        "camera count is shared by the interval rows).",
        "",
        "## Per camera count (worst camera)",
        "",
        *summary_table(result),
    ]
    goal_runs = [e for e in result["runs"] if e.get("goals")]
    if goal_runs:
        lines += ["", "## Goals (new node)", "",
                  "| cameras | interval | goal | target | measured | met | note |",
                  "|---|---|---|---|---|---|---|"]
        for e in goal_runs:
            for g in e["goals"]:
                met = {True: "yes", False: "**no**", None: "-"}[g["met"]]
                val = "n/a" if g["value"] is None else f"{g['value']:g}{g['unit']}"
                lines.append(f"| {e['cameras']} | {e['interval']} | {g['goal']} | {g['target']} | {val} | "
                             f"{met} | {g['note']} |")
    lines += ["", "## Where the time goes (ms per processed frame, mean after warm-up)", "",
              *stage_table(result), "", "## Every camera", "", *camera_table(result)]
    if plot:
        lines += ["", f"![frames processed and p95 latency vs cameras]({plot})"]
    lines += ["", "Frames processed: of the frames a real camera would have sent during the run (with "
              "detector interval k: of every k-th of them, the frames the detector is due to see; the "
              "others are carried by the tracker whatever happens) (the "
              "stand-in camera captures into the node's frame ring and waits when the node holds every "
              "slot; 'held back' is how far it fell behind its 25 fps clock, and those frames count as "
              "sent, not processed). Capture time is the camera clock's, so waiting counts in the latency.",
              "", f"Latency percentiles exclude each camera's first {WARMUP_FRAMES} frames. CPU cores: "
              "CPU time / wall time of the node process (old: of all N processes together); peak RSS: "
              "VmHWM (old: summed over its processes). Goals are reported, never asserted. Full data: "
              "the JSON beside this file.", ""]
    return "\n".join(lines)


def console_summary(result: dict[str, Any]) -> list[str]:
    out = []
    for e in result["runs"]:
        for key in ("site", "before"):
            if e.get(key) is not None:
                out.append("  " + one_line(e["cameras"], e[key]))
        for g in e.get("goals", []):
            val = "n/a" if g["value"] is None else f"{g['value']:g}{g['unit']}"
            met = {True: "met", False: "NOT met", None: "-"}[g["met"]]
            out.append(f"    {g['goal']:<40} {val:>14}  (goal {g['target']}) {met}")
    return out


def write_cameras_report(result: dict[str, Any], out: Path, stem: str = "bench", md_name: str = "summary.md",
                         plots: bool = True) -> dict[str, Path]:
    """``<stem>.json`` (everything), the markdown tables and, with more than one point, a PNG."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "markdown": out / md_name}
    paths["json"].write_text(json.dumps(result, indent=1))
    plot = None
    if plots and len({e["cameras"] for e in result["runs"]}) > 1:
        paths["png"] = write_cameras_plot(result, out / f"{stem}_cameras.png")
        plot = paths["png"].name
    paths["markdown"].write_text(markdown(result, plot))
    return paths
