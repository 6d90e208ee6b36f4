"""The files and lines a benchmark result becomes: bench.json, summary.md, the console summary.

Counts and timings only: nothing written holds pixels, crops, embeddings or landmarks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.lab.bench.jobs import has_figures
from edge.lab.bench.measure import WARMUP_FRAMES
from edge.lab.bench.plots import write_plots


def write_report(result: dict[str, Any], out: Path, plots: bool = True) -> dict[str, Path]:
    """bench.json (everything), summary.md (tables), and PNG plots. Counts and times only."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "summary.md"}
    paths["json"].write_text(json.dumps(result, indent=1, sort_keys=False))
    if plots:
        paths.update(write_plots(result, out))
    paths["markdown"].write_text(markdown(result, {k: v.name for k, v in paths.items() if k.endswith("png")}))
    return paths


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def markdown(r: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """summary.md: the goal table, the node stage by stage, the live run and the peers."""
    m = r["machine"]
    v = r["video"]
    node = r.get("node") or {}
    lines = [
        "# edge bench",
        "",
        f"{r.get('started_at', '')} on {m['cpu']} ({m['cores']} cores), load average at start "
        f"{m['loadavg_at_start'][0]}; Python {m['python']}, onnxruntime {m['onnxruntime']}, "
        f"OpenCV {m['opencv']}.",
        "",
        f"Video: `{Path(v['path']).name}` {v['width']}x{v['height']}, {v['frames']} frames at "
        f"{v['fps']:g} fps. "
        f"Watchlist: {r['watchlist']['description']}. Detector input width "
        f"{r['config']['detector_input_width']} (min face {r['config']['min_face_px']} px, "
        f"{r['config'].get('detector_backend', 'opencv')}); recogniser "
        f"threads {r['config']['recognizer_threads']} (0 = half the cores); config "
        f"{r['config'].get('file') or 'built-in defaults'}.",
        "",
        "## Goals",
        "",
        "| goal | target | measured | met | note |",
        "|---|---|---|---|---|",
    ]
    for g in r["summary"]["goals"]:
        met = {True: "yes", False: "**no**", None: "-"}[g["met"]]
        val = "n/a" if g["value"] is None else f"{g['value']:g}{g['unit']}"
        lines.append(f"| {g['goal']} | {g['target']} | {val} | {met} | {g['note']} |")
    if has_figures(node):
        lock_note = ("; lock failures: " + "; ".join(node["memory_lock_failures"])
                     if node["memory_lock_failures"] else "")
        lines += ["", "## The node, stage by stage (ms per frame, mean after warm-up)", "",
                  f"From the first run ({node['fps']} fps; other processes kept "
                  f"{node.get('other_processes_cores')} cores busy meanwhile).", "",
                  "| stage | ms/frame |", "|---|---|",
                  f"| decode (separate pass) | {r['decode']['ms_per_frame'].get('mean', 0):.2f} |"]
        for k, val in node["stages_ms"].items():
            lines.append(f"| {k} | {val:.2f} |")
        lines.append(f"| **frame period** | **{1e3 / max(node['fps'], 1e-9):.2f}** |")
        lat = node["frame_latency_ms"]
        lines += [
            "",
            f"- Throughput: **{node['fps']} fps** ({node['frames']} frames, {node['fps_all_frames']} fps "
            f"including warm-up); {node['faces_per_frame']} faces/frame, {node['embedded_per_frame']} "
            f"embeddings/frame (tracker + quality gates); gated: {node['faces_gated']}.",
            "- Decoded -> done (includes frames waiting in the decode-ahead queue, so it is not "
            f"a camera latency; see the live run): p50 {lat.get('p50')} / p95 {lat.get('p95')} / "
            f"p99 {lat.get('p99')} ms.",
            f"- CPU {node['cpu_ms_per_frame']} ms/frame ({node['cores_used']} cores busy); peak RSS "
            f"{node['rss_peak_mb']} MB; other processes used {node.get('other_processes_cores')} cores "
            "meanwhile.",
            f"- Alerts: {node['alerts']} ({len(node['video_subjects_found'])}/"
            f"{node.get('video_subjects_total', '?')} enrolled video people found; held-out subjects "
            f"alerted: {node['held_out_alerted'] or 'none'}).",
            f"- Zeroization: zeroize p50 {node['zeroize_ms'].get('p50')} / p99 "
            f"{node['zeroize_ms'].get('p99')} ms;"
            f" decision->zeroed p50 {node['decision_to_zeroed_ms'].get('p50')} / p99 "
            f"{node['decision_to_zeroed_ms'].get('p99')} ms; buffers clear after run: "
            f"{node['buffers_clear_after_run']}; memory locked: {node['memory_locked_bytes']} bytes"
            f"{lock_note}.",
        ]
    elif node:
        lines += ["", f"Node run failed: {node.get('error')}"]
    ab = r.get("zeroize_ab")
    if ab:
        errs = [o["error"] for o in ab["off_runs"] if "error" in o]
        lines += ["", f"Zeroization A/B (off = test-only switch, in a child process): on {ab['on_fps']} fps, "
                  f"off {ab['off_fps']} fps; cost {r['summary'].get('zeroize_cost_pct', 'n/a')}% "
                  f"(best of each; includes run-to-run noise), "
                  f"{r['summary'].get('zeroize_direct_pct', 'n/a')}% (the zeroize stage's own time)."
                  + (f" Off-run errors: {errs}" if errs else "")]
    live = r.get("live")
    if live and has_figures(live):
        c = live["capture_to_alert_ms"]
        lines += ["", "## Live camera (frames arrive at the video's rate; newest kept)", "",
                  f"- Processed {live['frames']} of {live['captured']} captured frames "
                  f"({live['processed_fraction'] * 100:.0f}%), {live['fps_all_frames']} fps.",
                  f"- Capture->alert: n={c.get('n', 0)}, p50 {c.get('p50')} / p95 {c.get('p95')} / "
                  f"p99 {c.get('p99')} ms. Capture->frame done (all frames): p50 "
                  f"{live['frame_latency_ms'].get('p50')} / p95 {live['frame_latency_ms'].get('p95')} ms.",
                  f"- Alerts {live['alerts']}; enrolled video people found "
                  f"{len(live['video_subjects_found'])}/{live.get('video_subjects_total', '?')}."]
    elif live:
        lines += ["", f"Live run failed: {live.get('error')}"]
    peers = r.get("peers")
    if peers:
        lines += ["", "## Peers (same video, same watchlist subjects)", "",
                  "| system | fps | ours / it | faces/frame | embeddings/frame | detect ms | embed ms | "
                  "enrolled video people found | held-out alerted | peak RSS MB | others busy (cores) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        if has_figures(node):
            lines.append(
                f"| **edge node** | {r['summary']['fps']} | 1 | {node['faces_per_frame']} | "
                f"{node['embedded_per_frame']} | {node['stages_ms']['detect']:.1f} | "
                f"{node['stages_ms']['embed']:.1f} | {len(node['video_subjects_found'])} | "
                f"{len(node['held_out_alerted'])} | {node['rss_peak_mb']} | see goals |")
        for name, p in peers.items():
            if not has_figures(p):
                why = p.get("skipped") or p.get("error")
                lines.append(f"| {name} | - | - | - | - | - | - | - | - | {why} | |")
                continue
            ratio = r["summary"]["ratios"].get(f"ours/{name}")
            lines.append(
                f"| {name} | {p['fps']} | {_fmt(ratio, 2)} | {p['faces_per_frame']} | "
                f"{p['embedded_per_frame']} | "
                f"{p['stages_ms']['detect']:.1f} | {p['stages_ms']['embed']:.1f} | "
                f"{len(p['video_subjects_found'])} | {len(p['held_out_alerted'])} | {p['rss_peak_mb']} | "
                f"{p.get('other_processes_cores')} |")
        lines += ["", "naive = YuNet at the full frame size + cv2 FaceRecognizerSF per face, numpy match; "
                  "naive_scaled = the same at our detector input width. face_recognition = dlib HOG "
                  "(upsample 1) + ResNet encoder, tolerance 0.6; _half = frame scaled to 1/2 first. Peers "
                  "count every matched face of every frame as an alert; the node alerts once per track."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({name})" for k, name in sorted(plots.items())]
    lines += ["", "Per-stage means exclude the first "
              f"{WARMUP_FRAMES} frames of each run (lazy initialisation). Timing goals are reported, "
              "never asserted in tests. Full data: bench.json.", ""]
    return "\n".join(lines)


def console_summary(r: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    out = []
    for g in r["summary"]["goals"]:
        val = "n/a" if g["value"] is None else f"{g['value']:g}{g['unit']}"
        met = {True: "met", False: "NOT met", None: "-"}[g["met"]]
        out.append(f"  {g['goal']:<38} {val:>12}  (goal {g['target']}) {met}")
    return out
