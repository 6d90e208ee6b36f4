"""Run a docker/compose.yaml service as a local process, without Docker.

Everything comes from the compose file and the Dockerfile: the ENTRYPOINT, the service's
``command:``, ``environment:``, ``volumes:`` and ``secrets:``, and its ``healthcheck:``.
Container paths are mapped to the bind-mount sources, named volumes to folders under a temp
dir, ``/run/secrets/NAME`` to the secret's ``file:``; mounted config files are copied with
those paths, the service host names (-> 127.0.0.1) and the container ports (-> free ports)
rewritten. What the test then runs is the compose command line, not a hand-copied one.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` substitution."""
    return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)


def entrypoint(dockerfile: Path) -> list[str]:
    m = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile.read_text(encoding="utf-8"), re.M)
    assert m, f"{dockerfile}: no exec-form ENTRYPOINT"
    return list(json.loads(m.group(1)))


@dataclass
class LocalService:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    paths: dict[str, Path]     # container path -> host path
    svc: dict[str, Any]
    rewrite_text: Any

    def command(self, args: list[str]) -> list[str]:
        """Another command line in this service's container (like `docker compose run`)."""
        return self.argv[: self._entry] + [self.rewrite_text(a) for a in args]

    _entry: int = 0

    def healthcheck(self) -> list[str]:
        test = self.svc["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python", test
        return [sys.executable, *(self.rewrite_text(a) for a in test[2:])]


def local_service(compose: dict[str, Any], name: str, tmp: Path, env: dict[str, str],
                  ports: dict[int, int]) -> LocalService:
    """``name`` as a local process: see the module docstring."""
    svc = compose["services"][name]
    paths: dict[str, Path] = {}
    config_files: list[tuple[str, Path]] = []
    for vol in svc.get("volumes", []):
        src, dst = interpolate(vol, env).split(":")[:2]
        if src.startswith((".", "/")):
            host = (DOCKER / src).resolve()
            if host.is_file():
                config_files.append((dst, host))
                continue
        else:   # a named volume: a folder of its own, shared by the services that mount it
            host = tmp / "volumes" / src
            host.mkdir(parents=True, exist_ok=True)
        paths[dst] = host
    for secret in svc.get("secrets", []):
        paths[f"/run/secrets/{secret}"] = (
            DOCKER / interpolate(compose["secrets"][secret]["file"], env)).resolve()
    others = [s for s in compose["services"]]

    def rewrite(text: str) -> str:
        text = re.sub(r"(?<!\d)(" + "|".join(map(str, ports)) + r")(?!\d)",
                      lambda m: str(ports[int(m.group(1))]), text)
        for host_name in others:   # compose network names resolve to this machine
            text = text.replace(f"//{host_name}:", "//127.0.0.1:")
        for dst in sorted(paths, key=len, reverse=True):
            text = text.replace(dst, str(paths[dst]))
        return text

    for dst, host in config_files:   # after every path is known: they may name each other
        copy = tmp / "mounted" / name / Path(dst).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(rewrite(host.read_text(encoding="utf-8")), encoding="utf-8")
        paths[dst] = copy
    cwd = tmp / "workdir" / name
    cwd.mkdir(parents=True, exist_ok=True)
    dockerfile = REPO / svc["build"]["dockerfile"]
    entry = entrypoint(dockerfile)
    assert entry == ["edge"], entry
    run_env = dict(os.environ)
    run_env.update({k: rewrite(interpolate(str(v), env))
                    for k, v in (svc.get("environment") or {}).items()})
    base = [sys.executable, "-m", "edge.cli"]
    argv = base + [rewrite(interpolate(a, env)) for a in svc["command"]]
    out = LocalService(argv, run_env, cwd, paths, svc, rewrite)
    out._entry = len(base)
    return out
