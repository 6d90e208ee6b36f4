"""PNG plots of a benchmark result: where a frame's time goes, per-frame time, latency, peers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import color_sequences
from matplotlib.figure import Figure

from edge.lab.bench.jobs import has_figures
from edge.lab.bench.measure import WARMUP_FRAMES
from edge.lab.bench.summary import GOALS


def _figure(size: tuple[float, float]) -> Figure:
    """A figure that belongs to no window system (no pyplot state, safe in any thread)."""
    return Figure(figsize=size)


def write_plots(r: dict[str, Any], out: Path) -> dict[str, Path]:
    """stages.png, timeline.png, latency.png and (with peers) peers.png; returns their paths."""
    paths: dict[str, Path] = {}
    node = r.get("node") or {}
    if has_figures(node):
        # 1. where a frame's time goes, ours vs the naive peers
        dec = r["decode"]["ms_per_frame"].get("mean", 0.0)
        # the node decodes ahead in a thread (overlapped), the naive loops decode in-line
        systems = [("edge node\n(decode overlapped)", dict(node["stages_ms"]))]
        for name, p in (r.get("peers") or {}).items():
            if has_figures(p) and name.startswith("naive"):
                systems.append((name, {"decode": dec, **p["stages_ms"]}))
        stages = ["decode", "detect", "track", "align", "embed", "search", "alert", "zeroize", "other"]
        fig = _figure((9, 1.2 + 0.7 * len(systems)))
        ax = fig.subplots()
        colors = color_sequences["tab10"]
        labelled: set[str] = set()
        for yi, (_name, st) in enumerate(systems):
            left = 0.0
            for si, s in enumerate(stages):
                w = max(0.0, float(st.get(s, 0.0)))
                if w <= 0:
                    continue
                ax.barh(yi, w, left=left, color=colors[si % 10], label=None if s in labelled else s)
                labelled.add(s)
                left += w
        ax.axvline(40.0, color="k", ls="--", lw=1)
        ax.text(40.5, len(systems) - 0.5, "25 fps", va="top", fontsize=8)
        ax.set_yticks(range(len(systems)), [n for n, _ in systems])
        ax.set_xlabel("ms per frame")
        ax.set_title("Where a frame's time goes")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=False))
        ax.legend(uniq.values(), uniq.keys(), ncol=5, fontsize=8, loc="lower right")
        fig.tight_layout()
        paths["stages_png"] = out / "stages.png"
        fig.savefig(paths["stages_png"], dpi=110)

        # 2. per-frame time and faces over the run
        pf = node["per_frame"]
        fig = _figure((9, 3.2))
        ax = fig.subplots()
        ax.plot(np.array(pf["period"]) * 1e3, lw=0.8, label="frame period (ms)")
        ax.plot(np.array(pf["embed"]) * 1e3, lw=0.8, label="embed (ms)")
        ax.axhline(40.0, color="k", ls="--", lw=1, label="25 fps")
        ax.set_xlabel("frame")
        ax.set_ylabel("ms")
        ax2 = ax.twinx()
        ax2.plot(pf["faces"], color="grey", lw=0.6, alpha=0.6, label="faces")
        ax2.set_ylabel("faces in frame")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("Per-frame time over the run (video looped)")
        fig.tight_layout()
        paths["timeline_png"] = out / "timeline.png"
        fig.savefig(paths["timeline_png"], dpi=110)

        # 3. latency distributions
        fig = _figure((7, 3.4))
        ax = fig.subplots()
        # the throughput run's decoded->done includes frames queued by the decode-ahead thread;
        # only the live run's latencies are what a camera would see
        runs = []
        live = r.get("live") or {}
        if not has_figures(live):
            runs.append(("throughput: decoded->done (queued)", np.array(pf["latency"][WARMUP_FRAMES:]) * 1e3))
        else:
            runs.append(("live: capture->done", np.array(live["per_frame"]["latency"][WARMUP_FRAMES:]) * 1e3))
            c2a = [a["capture_to_alert_s"] * 1e3 for a in live["alert_list"]
                   if a["capture_to_alert_s"] is not None and a["frame_seq"] >= WARMUP_FRAMES]
            if c2a:
                runs.append(("live: capture->alert", np.array(c2a)))
        for name, data in runs:
            if len(data):
                ax.hist(data, bins=40, alpha=0.55, label=f"{name} (p95 {np.percentile(data, 95):.0f} ms)",
                        density=True)
        ax.axvline(GOALS["capture_to_alert_p95_ms"], color="k", ls="--", lw=1, label="goal p95 250 ms")
        ax.set_xlabel("ms")
        ax.set_yticks([])
        ax.legend(fontsize=8)
        ax.set_title("Latency")
        fig.tight_layout()
        paths["latency_png"] = out / "latency.png"
        fig.savefig(paths["latency_png"], dpi=110)

    peers = r.get("peers") or {}
    if peers and has_figures(node):
        names = ["edge node"] + [n for n, p in peers.items() if has_figures(p)]
        fps = [node["fps"]] + [peers[n]["fps"] for n in names[1:]]
        fig = _figure((7, 3.4))
        ax = fig.subplots()
        bars = ax.bar(names, fps, color=["tab:green"] + ["tab:grey"] * (len(names) - 1))
        for b, f in zip(bars, fps, strict=True):
            ax.text(b.get_x() + b.get_width() / 2, f, f"{f:.2f}", ha="center", va="bottom", fontsize=8)
        ax.axhline(GOALS["fps"], color="k", ls="--", lw=1, label="goal 25 fps")
        ax.set_yscale("log")
        ax.set_ylabel("frames per second (log)")
        ax.set_title("Same video, same watchlist: throughput")
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths["peers_png"] = out / "peers.png"
        fig.savefig(paths["peers_png"], dpi=110)
    return paths


def write_cameras_plot(r: dict[str, Any], path: Path) -> Path:
    """Frames processed % and capture->alert p95 (worst camera) vs the number of cameras."""
    fig = _figure((10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    series: dict[str, list[tuple[int, float | None, float | None]]] = {}
    for e in r["runs"]:
        for key, name in (("site", "new: one process"), ("before", "old: N processes")):
            s = e.get(key)
            if not s or not s.get("per_camera"):
                continue
            label = f"{name}, interval {s['detector_interval']}" if key == "site" else name
            pts = series.setdefault(label, [])
            if (e["cameras"], s["processed_pct_min"], s["c2a_p95_ms_max"]) not in pts:
                pts.append((e["cameras"], s["processed_pct_min"], s["c2a_p95_ms_max"]))
    for label, pts in series.items():
        pts.sort()
        style = "--" if label.startswith("old") else "-"
        ns = [p[0] for p in pts]
        ax1.plot(ns, [p[1] for p in pts], style, marker="o", label=label)
        ax2.plot(ns, [np.nan if p[2] is None else p[2] for p in pts], style, marker="o", label=label)
    ax1.axhline(95.0, color="k", ls=":", lw=1, label="goal 95%")
    ax2.axhline(GOALS["capture_to_alert_p95_ms"], color="k", ls=":", lw=1, label="goal 250 ms")
    ns_all = sorted({e["cameras"] for e in r["runs"]})
    for ax in (ax1, ax2):
        ax.set_xticks(ns_all)
        ax.set_xlabel("cameras (1080p, 25 fps each)")
        ax.grid(alpha=0.3)
    ax1.set_ylabel("frames processed, worst camera (%)")
    ax1.set_ylim(0, 105)
    ax2.set_ylabel("capture->alert p95, worst camera (ms)")
    ax2.set_yscale("log")
    ax1.legend(fontsize=7, loc="lower left")
    ax2.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Cameras per node on {r['machine'].get('cores')} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
