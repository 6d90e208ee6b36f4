"""The node's benchmark: exactly ``edge bench`` (same options), runnable from a checkout.

Per-stage time (decode, detect, track, align, embed, search, alert, zeroize), end-to-end fps,
capture->alert latency p50/p95/p99 with frames arriving like a live camera's, CPU time, peak
memory, zeroization latency and its throughput cost (A/B in child processes), and with
``--peers`` the naive loop and face_recognition on the same video and watchlist. The code is
in ``edge/lab/bench/`` so the installed CLI and this script measure the same thing.

    python benchmarks/pipeline_bench.py --peers --out out/bench
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402,F401  (puts the checkout on sys.path)

from edge.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", *sys.argv[1:]]
    main()
