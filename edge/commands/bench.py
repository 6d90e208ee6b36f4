"""``edge bench``: how fast the node is on this machine, and against what you'd use otherwise."""

from __future__ import annotations

from pathlib import Path

import click

from edge.errors import EdgeError
from edge.lab.bench import cameras as cams
from edge.lab.bench.report import console_summary, write_report
from edge.lab.bench.run import BenchOptions, run_bench


@click.command()
@click.option("--video", type=click.Path(dir_okay=False), default=None,
              help="Video file to run on. Default: ../shared/data/videos/walking_arcade_1080p.mp4 "
                   "beside the checkout when present, else a clip made from insightface's sample photo.")
@click.option("--watchlist", default="auto", show_default=True,
              help="Watchlist directory (encrypted; needs --key-file), or 'auto': enrol a few people "
                   "from the video itself plus held-out real faces, so there are true alerts.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Key file of --watchlist DIR.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Node config TOML to benchmark (default: built-in defaults).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out/bench"),
              show_default=True, help="Where bench.json, summary.md and the plots go.")
@click.option("--frames", type=click.IntRange(min=0), default=0,
              help="Frames per node run (the video is looped). 0 = max(500, one pass).")
@click.option("--peers", is_flag=True,
              help="Also run the naive loop and the face_recognition library on the same video and list.")
@click.option("--peer-frames", type=click.IntRange(min=0), default=0,
              help="Frames for each peer run. 0 = one pass of the video.")
@click.option("--no-face-recognition", is_flag=True, help="With --peers: skip the (slow) dlib peer.")
@click.option("--no-live", is_flag=True, help="Skip the live-camera run (capture->alert latency).")
@click.option("--no-zeroize-ab", is_flag=True, help="Skip the zeroization-off comparison runs.")
@click.option("--ab-reps", type=click.IntRange(1, 10), default=2, show_default=True,
              help="Zeroization on/off runs each (alternating; the best of each is compared).")
@click.option("--held-out", type=click.IntRange(min=0), default=100, show_default=True,
              help="Auto watchlist: LFW identities (from ../shared/data, when present) added as "
                   "held-out subjects who are not in the video.")
@click.option("--cameras", type=click.IntRange(min=1), default=None,
              help="Instead of the single-camera benchmark: N copies of the video as N live cameras "
                   "(paced at its frame rate) in ONE node process, side by side with N single-camera "
                   "processes of the node before sites (--before-rev), all at once.")
@click.option("--interval", type=click.IntRange(min=1), default=None,
              help="With --cameras: detector.interval for the new node (default: the config's).")
@click.option("--before-rev", default=cams.BEFORE_REV, show_default=True,
              help="With --cameras: git revision of the old one-camera-per-process node.")
@click.option("--no-before", is_flag=True, help="With --cameras: skip the old N-process runs.")
@click.option("--no-plots", is_flag=True, help="JSON and markdown only.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def bench(video: str | None, watchlist: str, key_file: str | None, config_path: str | None, out: Path,
          frames: int, peers: bool, peer_frames: int, no_face_recognition: bool, no_live: bool,
          no_zeroize_ab: bool, ab_reps: int, held_out: int, cameras: int | None, interval: int | None,
          before_rev: str, no_before: bool, no_plots: bool, quiet: bool) -> None:
    """Benchmark the node as configured on a real video and a real watchlist.

    Reports time per stage (decode, detect, track, align, embed, search, alert, zeroize),
    end-to-end fps, capture->alert latency p50/p95/p99 (with frames arriving like a live
    camera's), CPU time, peak memory, zeroization latency and its throughput cost, and with
    --peers the same video through a naive loop and the face_recognition library, as ratios.
    Each system runs in its own process, one after another. Writes bench.json, summary.md
    and PNG plots to --out; nothing written holds face data.

    \b
    Examples:
      edge bench
      edge bench --peers --out out/bench
      edge bench --video clip.mp4 --watchlist wl/ --key-file wl.key --config config/site.toml
      edge bench --cameras 3 --frames 525 --interval 3 --out out/bench/cameras3
    """
    if watchlist != "auto" and not key_file:
        raise EdgeError("--watchlist DIR needs --key-file (or use --watchlist auto)")
    if video is not None and not Path(video).is_file():
        raise EdgeError(f"video file not found: {video}")
    opts = BenchOptions(
        video=video, watchlist=None if watchlist == "auto" else watchlist, key_file=key_file,
        config=config_path, out=out, frames=frames, peers=peers, peer_frames=peer_frames,
        plots=not no_plots, live=not no_live, zeroize_ab=not no_zeroize_ab,
        face_recognition=not no_face_recognition, progress=not quiet, zeroize_reps=ab_reps,
        n_lfw=held_out,
    )
    if cameras is not None:
        copts = cams.CamerasOptions(cameras=(cameras,), intervals=(interval or 0,), before=not no_before,
                                    before_rev=before_rev)
        res = cams.run_cameras(opts, copts, echo=click.echo)
        written = cams.write_cameras_report(res, out, plots=not no_plots)
        click.echo("[bench] results:")
        for line in cams.console_summary(res):
            click.echo(line)
        click.echo(f"[bench] wrote {', '.join(str(p) for p in written.values())}")
        return
    if interval is not None:
        raise EdgeError("--interval needs --cameras (for one camera set [detector] interval in --config)")
    result = run_bench(opts, echo=click.echo)
    paths = write_report(result, out, plots=not no_plots)
    click.echo("[bench] results:")
    for line in console_summary(result):
        click.echo(line)
    click.echo(f"[bench] wrote {', '.join(str(p) for p in paths.values())}")
