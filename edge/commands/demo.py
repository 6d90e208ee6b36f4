"""``edge demo``: run the node end to end on photos bundled with a dependency."""

from __future__ import annotations

import click

from edge.config import load_config
from edge.node.demo import run_demo


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Node config TOML (default: built-in defaults).")
def demo(config_path: str | None) -> None:
    """Enrol one person from a sample photo, run the node on a short clip, show the result.

    Needs no camera and no files of your own: the photos come with the insightface package.
    Models must be installed first (`edge models install`).
    """
    cfg = load_config(config_path, overrides={"alerts": {"console": True}})

    res = run_demo(cfg, echo=click.echo)
    click.echo(f"[demo] {res.frames} frames at {res.fps:.1f} fps; {res.faces_seen} face detections "
               f"in {res.tracks} tracks")
    click.echo(f"[demo] alerts: {len(res.alerts)} "
               + ", ".join(f"{s} score={sc:.3f} track={t}" for s, sc, t in res.alerts))
    if res.ok:
        click.echo("[demo] OK: the enrolled person raised an alert; nobody else did, and every "
                   "other face was discarded on the device.")
    else:
        raise click.ClickException("demo did not produce exactly the expected alert")
