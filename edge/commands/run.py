"""``edge run``: the live node."""

from __future__ import annotations

from pathlib import Path

import click

from edge.commands.options import key_from_options, key_options
from edge.config import load_config
from edge.node.app import RunRequest, run_node


@click.command()
@click.option("--source", "-s", default=None,
              help="One camera: webcam index (0), video file, rtsp:// or http:// URL, or image "
              "folder. Without it, every [[cameras]] entry of --config runs.")
@click.option("--watchlist", "-w", "watchlist_dir", required=True,
              type=click.Path(file_okay=False), help="Encrypted watchlist directory.")
@key_options
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Deployment config TOML (overrides config/default.toml).")
@click.option("--endpoint", default=None, help="Hub ZeroMQ endpoint (overrides alerts.endpoint).")
@click.option("--max-frames", type=int, default=0, help="Stop after this many frames (0 = no limit).")
@click.option("--hold-after-end", is_flag=True, hidden=True,
              help="Test hook: stay alive (idle) after the source ends until SIGTERM.")
def run(source: str | None, watchlist_dir: str, key_file: Path | None, passphrase_env: str | None,
        config_path: str | None, endpoint: str | None, max_frames: int,
        hold_after_end: bool) -> None:
    """Run the node: match every face of every camera against the watchlist, alert on likely
    matches. The cameras are the config's [[cameras]] entries, or the one --source.

    Alerts go to the hub over ZeroMQ (kept in a durable outbox until acknowledged) and are
    printed as one line each. Faces that match nobody are discarded on the device at once.
    The node refuses a watchlist outside its deployment window and stops when it closes.
    """
    overrides = {"alerts": {"endpoint": endpoint}} if endpoint else None
    cfg = load_config(config_path, overrides)  # a bad config stops us before anything opens
    key_path = Path(key_file) if key_file else None
    run_node(cfg, RunRequest(
        source=source, watchlist_dir=Path(watchlist_dir),
        key=lambda: key_from_options(watchlist_dir, key_path, passphrase_env),
        key_file=key_path, max_frames=max_frames, hold_after_end=hold_after_end,
    ), notify=lambda line: click.echo(line, err=True))
