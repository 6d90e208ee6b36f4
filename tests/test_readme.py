"""README.md's commands as written: every `edge ...` line in its shell blocks names a real
sub-command with real options (a renamed option or command fails here), and the key-making
steps of "step by step" run as written in an empty folder."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import cv2
import pytest

from edge.cli import cli
from edge.face.photos import FaceEngine
from edge.node.demo import _enrolment_photo, sample_images_dir

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


@pytest.mark.unit
def test_readme_has_the_commands() -> None:
    cmds = _edge_commands()
    assert len(cmds) >= 25, cmds  # the parser found the README's commands
    assert ["demo"] in cmds


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.parametrize("section", ["# 3. the watchlist for this deployment",
                                     "source .venv/bin/activate"])
def test_watchlist_create_runs_as_written_with_todays_window(section: str, tmp_path: Path,
                                                             models_ready: None) -> None:
    # the README's own subjects.csv example, two photos of one person from the demo's picture
    csv = re.search(r"```csv\n(.*?)```", README, flags=re.S)
    assert csv, "README shows the subjects CSV"
    (tmp_path / "subjects.csv").write_text(csv.group(1), encoding="utf-8")
    group = cv2.imread(str(sample_images_dir() / "t1.jpg"))
    engine = FaceEngine.from_config()
    people = sorted(engine.faces(group), key=lambda f: float(f.bbox[0]))
    (tmp_path / "photos").mkdir()
    for i, name in enumerate(("jane_1.jpg", "jane_2.jpg")):
        photo = _enrolment_photo(group, people[1].bbox)
        if i:
            photo = cv2.resize(photo, None, fx=0.9, fy=0.9)
        cv2.imwrite(str(tmp_path / "photos" / name), photo)
    text = README[README.index(section):]
    start = text.index("edge watchlist create")
    line = re.sub(r"\\\n\s*", " ", text[start:]).splitlines()[0].split("#", 1)[0]
    # absolute example paths into the temp dir; the dates are computed by the shell, from today
    line = line.replace("/srv/edge/", f"{tmp_path}/srv/").replace("/run/keys/", f"{tmp_path}/keys/")
    (tmp_path / "keys").mkdir()
    bin_dir = Path(sys.executable).parent
    r = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    key = next((tmp_path / "keys").glob("*.key"))
    out = next(p for p in (tmp_path / "srv" / "op42", tmp_path / "wl") if p.exists())
    show = subprocess.run([str(bin_dir / "edge"), "watchlist", "show", str(out), "--key-file",
                           str(key)], capture_output=True, text=True, timeout=120)
    assert show.returncode == 0 and "WL-0001" in show.stdout, show.stdout + show.stderr
