"""Commands of an optional extra ([hub], [lab]) say in one line what to install when it is missing,
and the node's own commands work without either extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# Python refuses to import a module whose sys.modules entry is None: as if it were not installed.
WITHOUT = """
import sys
for name in {names!r}:
    sys.modules[name] = None
sys.argv = ["edge", *{args!r}]
from edge.cli import main
main()
"""
HUB_DEPS = ["fastapi", "uvicorn", "starlette"]
# scipy is not blocked: insightface, a core dependency, needs it
LAB_DEPS = ["matplotlib"]


def _edge_without(names: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    code = WITHOUT.format(names=names, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command, extra, deps", [
    ("hub", "hub", HUB_DEPS), ("bench", "lab", LAB_DEPS), ("eval", "lab", LAB_DEPS),
])
def test_command_of_a_missing_extra_names_the_install(command: str, extra: str, deps: list[str]) -> None:
    r = _edge_without(deps, command, "--help")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"needs the [{extra}] extra" in lines[0] and f"edge-face-node[{extra}]" in lines[0]


def test_node_commands_need_neither_extra() -> None:
    r = _edge_without(HUB_DEPS + LAB_DEPS, "--help")
    assert r.returncode == 0, r.stderr
    for name in ("run", "demo", "watchlist", "models", "audit", "keys", "hub", "bench", "eval"):
        assert name in r.stdout
    r = _edge_without(HUB_DEPS + LAB_DEPS, "run", "--help")
    assert r.returncode == 0 and "--watchlist" in r.stdout, r.stderr


def test_the_node_process_loads_neither_the_hub_nor_the_lab() -> None:
    """`edge run` must not pay for the hub's web stack or the lab's plots (memory on a node)."""
    code = (
        "import sys\n"
        "from edge.cli import cli\n"
        "try:\n"
        "    cli.main(['run', '--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('edge.lab', 'edge.hub', 'edge.commands.bench', 'edge.commands.eval', 'matplotlib',\n"
        "         'fastapi', 'uvicorn', 'starlette')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(heavy)))\n"
        "print('NODE', 'edge.node.app' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, r.stdout
    assert "NODE True" in r.stdout, "the test must have loaded the run command at all"
