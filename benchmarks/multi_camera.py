"""Cameras per node: N = 1..4 live 1080p cameras in one node process vs N old single-camera nodes.

For each N (``--cameras``, default 1 2 3 4) and each detector interval (``--interval``, may be
repeated; default: the config's), the new node runs N copies of the video, each paced at its
frame rate, in ONE process (``edge.node.site``); and once per N, N processes of the node as it
was before sites (``--before-rev``, default 24177c1, extracted with ``git archive`` outside the
checkout) run live-paced on the same video at the same time, competing for the same cores.
Both search the same ``--watchlist auto`` list (5 people from the clip + held-out faces).

Writes ``multi_camera.json``, ``multi_camera.md`` (tables) and ``multi_camera_cameras.png``
(frames processed % and capture->alert p95 of the worst camera vs N) under ``--out``.
The code is ``edge.lab.bench.cameras``; ``edge bench --cameras N`` runs one N of it.

    python benchmarks/multi_camera.py --frames 525 --interval 1 --interval 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT  # noqa: E402  (also puts the checkout on sys.path)

from edge.errors import EdgeError  # noqa: E402
from edge.lab.bench import cameras as cams  # noqa: E402
from edge.lab.bench.run import BenchOptions  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3, 4], help="camera counts N")
    ap.add_argument("--interval", type=int, action="append", default=None,
                    help="detector.interval for the new node (repeatable; default: the config's)")
    ap.add_argument("--frames", type=int, default=0, help="frames per camera (0 = max(500, one pass))")
    ap.add_argument("--video", default=None, help="default: ../shared/data/videos/walking_arcade_1080p.mp4")
    ap.add_argument("--config", default=None, help="node config TOML (default: built-in defaults)")
    ap.add_argument("--held-out", type=int, default=100, help="LFW identities held out in the auto list")
    ap.add_argument("--before-rev", default=cams.BEFORE_REV, help="revision of the old one-camera node")
    ap.add_argument("--no-before", action="store_true", help="skip the old N-process runs")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each run wait up to this many seconds for the CPUs to go idle "
                         "(a shared machine); what was waited is recorded")
    ap.add_argument("--out", type=Path, default=OUT / "multi_camera")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="measure nothing: rebuild the tables and plot of an earlier multi_camera.json")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    a = ap.parse_args(argv)
    if min(a.cameras) < 1 or (a.interval and min(a.interval) < 1) or a.frames < 0:
        ap.error("--cameras and --interval must be 1 or more, --frames 0 or more")
    opts = BenchOptions(video=a.video, config=a.config, out=a.out, frames=a.frames, progress=not a.quiet,
                        n_lfw=a.held_out)
    copts = cams.CamerasOptions(cameras=tuple(a.cameras), intervals=tuple(a.interval or [0]),
                                before=not a.no_before, before_rev=a.before_rev,
                                quiet_wait_s=a.quiet_wait)
    try:
        if a.from_json is not None:
            result = cams.resummarise(json.loads(a.from_json.read_text()))
        else:
            result = cams.run_cameras(opts, copts)
    except (EdgeError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = cams.write_cameras_report(result, a.out, stem="multi_camera", md_name="multi_camera.md",
                                      plots=not a.no_plots)
    print("[multi_camera] results:")
    for line in cams.console_summary(result):
        print(line)
    print(f"[multi_camera] wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
