"""The ``edge`` command line: one group, one module per sub-command under ``edge.commands``."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from edge.commands.audit import audit
from edge.commands.demo import demo
from edge.commands.keys import keys
from edge.commands.models import models
from edge.commands.run import run
from edge.commands.watchlist import watchlist
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


for _command in (models, audit, demo, run, keys, watchlist):
    cli.add_command(_command)

# Commands whose dependencies are optional extras of the package: without the extra the
# command still shows in --help and says in one line what to install.
OPTIONAL = (
    ("edge.commands.hub", "hub", "hub", "the alert hub and its web app for officers' tablets"),
    ("edge.commands.bench", "bench", "lab", "speed benchmarks"),
    ("edge.commands.eval", "eval_cmd", "lab", "accuracy and fairness evaluation"),
)


def _missing_extra(name: str, extra: str, what: str, missing: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=f"{what.capitalize()} (needs the [{extra}] extra).", add_help_option=False)
    def _cmd() -> None:
        raise EdgeError(f"`edge {name}` needs the [{extra}] extra ({missing} is not installed): "
                        f"pip install 'edge-face-node[{extra}]'")
    return _cmd


def _register_optional() -> None:
    for module, attr, extra, what in OPTIONAL:
        name = module.rsplit(".", 1)[1]
        try:
            command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] == "edge":
                raise  # our own module missing is a bug, not a missing extra
            command = _missing_extra(name, extra, what, exc.name or "a dependency")
        cli.add_command(command)


_register_optional()


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
