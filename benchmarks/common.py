"""Shared helpers for the scripts in benchmarks/ (the measuring code itself is in edge.lab.bench).

The scripts run from a checkout (``python benchmarks/<name>.py``); this module makes the
package importable from there, finds the evaluation video, and writes results as JSON.
Everything written is counts and timings only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edge.lab.bench.sources import SAMPLE_CLIP_NAME, default_video, make_sample_clip  # noqa: E402

OUT = REPO / "out" / "bench"


def video_or_sample(path: str | None, out: Path = OUT) -> str:
    """The given video, else the arcade clip from ../shared/data, else a clip from t1.jpg."""
    if path:
        return path
    found = default_video()
    if found is not None:
        return str(found)
    return str(make_sample_clip(out / SAMPLE_CLIP_NAME))


def write_json(name: str, data: dict[str, Any], out: Path = OUT) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def machine_note() -> dict[str, Any]:
    """When and how busy the machine was: timings on a shared 2-core box need this context."""
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def interleaved(fns: dict[str, Callable[[], float]], rounds: int = 5) -> dict[str, dict[str, float]]:
    """Time several variants round-robin (A B C A B C ...) so that a burst of load from
    elsewhere hits all of them alike; returns median and min of each variant's seconds."""
    import numpy as np

    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(fn())
    return {k: {"median_ms": round(float(np.median(v)) * 1e3, 3), "min_ms": round(min(v) * 1e3, 3)}
            for k, v in samples.items()}


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A markdown table of ``rows`` restricted to ``cols``."""
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)
