"""The defaults and the model manifest exist once, inside the package; the top-level files
that README and Docker point at are links to them, so the two can never drift apart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.config import DEFAULT_CONFIG, load_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "edge" / "data"


@pytest.mark.parametrize("top, packaged", [
    ("config/default.toml", "default.toml"),
    ("models/manifest.toml", "manifest.toml"),
])
def test_top_level_file_is_a_relative_link_to_the_packaged_one(top: str, packaged: str) -> None:
    link = REPO / top
    assert link.is_symlink(), f"{top} must be a link to edge/data/{packaged}, not a copy"
    target = os.readlink(link)
    assert not os.path.isabs(target), "the link must be relative so it works in any clone"
    assert link.resolve() == (PACKAGED / packaged).resolve()


def test_the_node_reads_the_packaged_defaults() -> None:
    assert DEFAULT_CONFIG.resolve() == (PACKAGED / "default.toml").resolve()
    assert load_config().match.threshold > 0


def test_no_other_copy_of_the_defaults_or_manifest_in_the_tree() -> None:
    names = {"default.toml", "manifest.toml"}
    skip = {".git", ".venv", "node_modules", "build", "dist"}
    copies = [p for p in REPO.rglob("*.toml")
              if p.name in names and not p.is_symlink() and not skip & set(p.relative_to(REPO).parts)
              and p.parent != PACKAGED]
    assert copies == [], f"stray copies: {copies}"
