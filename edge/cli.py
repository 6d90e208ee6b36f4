"""The ``edge`` command line: one group, one module per sub-command under ``edge.commands``."""

from __future__ import annotations

import logging
import sys

import click

from edge.errors import EdgeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="edge-face-node")
def cli(verbose: int) -> None:
    """Edge camera node for live watchlist face matching.

    Faces that match nobody on the watchlist are discarded on the device at once:
    never written, logged or sent. See README.md for the privacy statement.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register() -> None:
    # --- sub-command registration: one import + add_command per line ---
    from edge.commands import audit as _audit
    from edge.commands import models as _models

    cli.add_command(_models.models)
    cli.add_command(_audit.audit)
    from edge.commands import demo as _demo

    cli.add_command(_demo.demo)
    from edge.commands import run as _run

    cli.add_command(_run.run)
    from edge.commands import hub as _hub
    from edge.commands import keys as _keys

    cli.add_command(_hub.hub)
    cli.add_command(_keys.keys)
    from edge.commands import bench as _bench

    cli.add_command(_bench.bench)
    from edge.commands import watchlist as _watchlist

    cli.add_command(_watchlist.watchlist)
    from edge.commands import eval as _eval

    cli.add_command(_eval.eval_cmd)
    # --- end registration ---


_register()


def main() -> None:
    """Entry point: turn EdgeError into one line on stderr and exit code 2."""
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except EdgeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
