"""README.md's commands as written: every `edge ...` line in its shell blocks names a real
sub-command with real options (a renamed option or command fails here), and the key-making
steps of "step by step" run as written in an empty folder."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from edge.cli import cli

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _shell_lines() -> list[str]:
    """Command lines of the README's ```bash/```sh blocks, continuations joined, comments cut."""
    out: list[str] = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", README, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _edge_commands() -> list[list[str]]:
    cmds = []
    for line in _shell_lines():
        for part in re.split(r"&&|;", line):
            # "$(date ...)" substitutions stay one token; the comment after them goes
            words = shlex.split(part, comments=True)
            for i, w in enumerate(words):
                if w in ("edge", ".venv/bin/edge"):
                    cmds.append(words[i + 1:])
                    break
    return cmds


def _resolve(args: list[str]) -> tuple[click.Command, list[str]]:
    cmd: click.Command = cli
    rest = list(args)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"README: `edge {' '.join(args)}`: no sub-command {rest[0]!r}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


def test_readme_has_the_commands() -> None:
    cmds = _edge_commands()
    assert len(cmds) >= 25, cmds  # the parser found the README's commands
    assert ["demo"] in cmds


@pytest.mark.parametrize("args", _edge_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_edge_command_names_real_options(args: list[str]) -> None:
    cmd, rest = _resolve(args)
    known = {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]}
    for w in rest:
        if w == "...":
            continue
        if w.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", w):
            opt = w.split("=", 1)[0]
            assert opt in known, f"README: `edge {' '.join(args)}`: {opt} is not an option of " \
                                 f"`{cmd.name}` ({sorted(known)})"


def test_step_by_step_key_commands_run_as_written(tmp_path: Path) -> None:
    block = README[README.index("# 1. keys for the encrypted node"):]
    block = block[:block.index("edge hub add-officer")]
    lines = [ln.split("#", 1)[0].strip() for ln in block.splitlines()]
    lines = [ln for ln in lines if ln]
    assert any(ln.startswith("edge keys tls") for ln in lines) and len(lines) >= 5, lines
    bin_dir = Path(sys.executable).parent
    script = "set -e\n" + "\n".join(lines) + "\nedge keys audit --dir keys/audit\n"
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                       env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 0, r.stderr
    for f in ("keys/hub/hub.key_secret", "keys/allowed-nodes/entrance-a.key",
              "keys/tls/server.crt", "keys/tls/ca.crt", "keys/push/vapid_private.pem",
              "keys/audit/audit.key"):
        assert (tmp_path / f).is_file(), f
