"""The ``edge`` command line: one group, one module per sub-command under ``edge.commands``.

Sub-commands are imported when they are used, not all at start: ``edge run`` then loads the
node alone, not the hub's web stack or the lab's plotting (tens of MB of RSS on a node), and
a command whose optional extra is missing says in one line what to install.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from edge.errors import EdgeError

# name -> (module, attribute, the extra it needs or "" for the core package, what it is)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "models": ("edge.commands.models", "models", "", "face model files"),
    "audit": ("edge.commands.audit", "audit", "", "the audit log"),
    "demo": ("edge.commands.demo", "demo", "", "the bundled demo"),
    "run": ("edge.commands.run", "run", "", "the live node"),
    "hub": ("edge.commands.hub", "hub", "hub", "the alert hub and its web app for officers' tablets"),
    "keys": ("edge.commands.keys", "keys", "", "CURVE keys for the node-hub link"),
    "bench": ("edge.commands.bench", "bench", "lab", "speed benchmarks"),
    "watchlist": ("edge.commands.watchlist", "watchlist", "", "watchlists"),
    "eval": ("edge.commands.eval", "eval_cmd", "lab", "accuracy and fairness evaluation"),
}


def _missing_extra(name: str, extra: str, what: str, missing: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=f"{what.capitalize()} (needs the [{extra}] extra).", add_help_option=False)
    def _cmd() -> None:
        raise EdgeError(f"`edge {name}` needs the [{extra}] extra ({missing} is not installed): "
                        f"pip install 'edge-face-node[{extra}]'")
    return _cmd


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, attr, extra, what = spec
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if not extra or (exc.name or "").split(".")[0] == "edge":
                raise  # a core dependency or our own module missing is a bug, not a missing extra
            return _missing_extra(cmd_name, extra, what, exc.name or "a dependency")
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="edge-face-node")
def cli(verbose: int) -> None:
    """Edge camera node for live watchlist face matching.

    Faces that match nobody on the watchlist are discarded on the device at once:
    never written, logged or sent. See README.md for the privacy statement.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
