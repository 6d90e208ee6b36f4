"""Command-line options that several commands share: how a watchlist's key is given.

``--key-file PATH`` (32 random bytes, made on first use, mode 0600, never inside the watchlist
folder) or a passphrase (``--passphrase-env VAR`` or ``--passphrase-prompt``; scrypt-derived).
Every command that opens a list uses :func:`key_options` and :func:`key_from_options`, so they
all ask the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edge.errors import WatchlistError
from edge.watchlist import vault

F = TypeVar("F", bound=Callable[..., Any])
_PROMPT_META = "edge.watchlist.passphrase_prompt"
MIN_PASSPHRASE_CHARS = 12


def _remember_prompt(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[_PROMPT_META] = bool(value)
    return value


def key_options(f: F) -> F:
    """Add ``--key-file``, ``--passphrase-env`` and ``--passphrase-prompt`` to a command.

    The command receives ``key_file`` and ``passphrase_env``; the prompt flag is kept in the
    click context and read by :func:`key_from_options`.
    """
    f = click.option(
        "--passphrase-prompt", is_flag=True, expose_value=False, callback=_remember_prompt,
        help="Ask for the passphrase on the terminal.")(f)
    f = click.option(
        "--passphrase-env", metavar="VAR",
        help="Name of an environment variable holding the watchlist passphrase.")(f)
    f = click.option(
        "--key-file", type=click.Path(dir_okay=False, path_type=Path),
        help="Key file (32 random bytes). Keep it off the watchlist's disk; never inside its folder.")(f)
    return f


def _inside(path: Path, folder: Path) -> bool:
    p, d = path.expanduser().resolve(), folder.expanduser().resolve()
    return p == d or d in p.parents


def check_key_location(watchlist_dir: Path, key_file: Path | None) -> None:
    """Refuse a key file inside (or equal to) the watchlist folder: it would sit beside the data."""
    if key_file is not None and _inside(Path(key_file), Path(watchlist_dir)):
        raise WatchlistError(
            f"key file {key_file} is inside the watchlist folder {watchlist_dir}; "
            "keep the key elsewhere (another disk or a secrets store)")


def _passphrase(passphrase_env: str | None, prompt: bool, create: bool) -> str:
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            raise WatchlistError(f"environment variable {passphrase_env} is not set or empty")
    else:
        value = click.prompt("Watchlist passphrase", hide_input=True, confirmation_prompt=create,
                             err=True)
    if create and len(value) < MIN_PASSPHRASE_CHARS:
        raise WatchlistError(
            f"the passphrase is too short for a new watchlist (at least {MIN_PASSPHRASE_CHARS} "
            "characters; a key file is stronger)")
    return value


def key_from_options(watchlist_dir: str | Path, key_file: Path | None, passphrase_env: str | None,
                     create: bool = False) -> vault.VaultKey:
    """The key for a watchlist from the command-line options.

    ``create`` (new lists): a missing key file is created (0600) and its path printed; a
    passphrase must be at least 12 characters and gets a new random salt.
    """
    ctx = click.get_current_context(silent=True)
    prompt = bool(ctx and ctx.meta.get(_PROMPT_META))
    given = sum([key_file is not None, bool(passphrase_env), prompt])
    if given == 0:
        raise WatchlistError(
            "no key given: use --key-file PATH"
            + (" (created if missing)" if create else "")
            + ", --passphrase-env VAR or --passphrase-prompt")
    if given > 1:
        raise WatchlistError("give only one of --key-file, --passphrase-env, --passphrase-prompt")
    if key_file is not None:
        key_file = Path(key_file).expanduser()
        check_key_location(Path(watchlist_dir), key_file)
        if create and not key_file.exists():
            key = vault.create_key_file(key_file)
            click.echo(f"created key file {key_file} (mode 0600); keep it away from the watchlist: "
                       "without it the list cannot be opened", err=True)
            return key
        return vault.VaultKey.from_file(key_file)
    pw = _passphrase(passphrase_env, prompt, create)
    return vault.VaultKey.from_passphrase(pw)


def passphrase_prompted() -> bool:
    """True when the running command was given ``--passphrase-prompt``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get(_PROMPT_META))
