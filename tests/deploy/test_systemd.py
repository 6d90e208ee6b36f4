"""deploy/systemd units: `systemd-analyze verify`, the hardening they promise, and each
ExecStart= run as a local process (paths and LoadCredential= mapped into a temp dir): the hub
serves HTTPS /healthz, the timer's service really destroys an expired watchlist."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from edge.watchlist.vault import create_key_file

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
SERVICES = ["edge-node.service", "edge-hub.service", "edge-destroy-expired.service"]
EDGE_BIN = "/opt/edge/venv/bin/edge"


def _unit(name: str) -> dict[str, list[str]]:
    """Key -> values (repeatable keys such as LoadCredential= keep every line)."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    edge_bin = Path(sys.executable).parent / "edge"
    files = []
    for name in [*SERVICES, "edge-destroy-expired.timer"]:
        # verify insists the ExecStart binary exists: point it at this venv's edge
        text = (UNITS / name).read_text(encoding="utf-8").replace(EDGE_BIN, str(edge_bin))
        (tmp_path / name).write_text(text, encoding="utf-8")
        files.append(f"./{name}")
    r = subprocess.run([analyze, "verify", *files], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_units_are_hardened(name: str) -> None:
    u = _unit(name)
    for key, want in [("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                      ("NoNewPrivileges", "yes"), ("LimitCORE", "0"), ("MemorySwapMax", "0"),
                      ("CapabilityBoundingSet", ""), ("SystemCallFilter", "@system-service"),
                      ("User", "edge")]:
        assert u.get(key) == [want], f"{name}: {key}={u.get(key)}"
    assert "MemoryDenyWriteExecute" not in u      # ONNX Runtime needs W+X pages; see the unit
    assert u["RestrictAddressFamilies"] and u["ReadWritePaths"] and u["LoadCredential"]
    assert "${CREDENTIALS_DIRECTORY}/" in u["ExecStart"][0] or name == "edge-hub.service"
    if name == "edge-node.service":
        assert u["LimitMEMLOCK"] == ["infinity"]
    timer = (UNITS / "edge-destroy-expired.timer").read_text(encoding="utf-8")
    assert "OnUnitActiveSec=" in timer and "timers.target" in timer


def _exec_start(name: str, tmp: Path, paths: dict[str, Path], cred_sources: dict[str, Path]
                ) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart= with LoadCredential= done: each credential copied to a fresh
    CREDENTIALS_DIRECTORY, container paths replaced per ``paths``."""
    u = _unit(name)
    creds = tmp / "credentials" / name
    creds.mkdir(parents=True)
    for line in u["LoadCredential"]:
        cred, src = line.split(":", 1)
        shutil.copyfile(cred_sources[src], creds / cred)
        (creds / cred).chmod(0o400)
    paths = {f"/run/credentials/{name}": creds, **paths}
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    for line in u.get("Environment", []):
        k, v = line.split("=", 1)
        env[k] = v
    argv = shlex.split(u["ExecStart"][0])
    assert argv[0] == EDGE_BIN
    out = [sys.executable, "-m", "edge.cli"]
    for a in argv[1:]:
        a = a.replace("${CREDENTIALS_DIRECTORY}", str(creds))
        for dst in sorted(paths, key=len, reverse=True):
            a = a.replace(dst, str(paths[dst]))
        out.append(a)
    return out, env


def _watchlist(tmp: Path, window: tuple[float, float], name: str) -> tuple[Path, Path]:
    key = create_key_file(tmp / f"{name}.key")
    meta = WatchlistMeta(deployment_id="systemd-test", window_start=window[0], window_end=window[1])
    emb = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    Watchlist(meta, {"S1": Subject("S1", "Someone", "t")}, [Entry("S1/1", "S1", "x.jpg")],
              emb / np.linalg.norm(emb)).save(tmp / name, key)
    return tmp / name, tmp / f"{name}.key"


@pytest.mark.parametrize("expired", [True, False])
def test_timer_service_destroys_an_expired_watchlist(tmp_path: Path, expired: bool) -> None:
    now = time.time()
    window = (now - 4 * 86400, now - 2 * 86400) if expired else (now - 3600, now + 86400)
    state = tmp_path / "var-lib-edge"
    wl, key = _watchlist(tmp_path, window, "wl")
    (state / "state").mkdir(parents=True)
    shutil.move(wl, state / "watchlist")
    argv, env = _exec_start("edge-destroy-expired.service", tmp_path, {"/var/lib/edge": state},
                            {"/etc/edge/credentials/watchlist.key": key})
    r = subprocess.run(argv, env={**_base_env(), **env}, cwd=state, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    left = list((state / "watchlist").glob("*")) if (state / "watchlist").exists() else []
    if expired:
        assert not left, left
        assert "watchlist.destroy" in (state / "state" / "audit.jsonl").read_text()
    else:
        assert left and not (state / "state" / "audit.jsonl").exists()


def _base_env() -> dict[str, str]:
    return dict(os.environ)


def test_hub_unit_serves_https(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    r = subprocess.run(["sh", str(REPO / "docker" / "make-secrets.sh"), str(secrets)],
                       env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}, cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    http, zmq_port, metrics = _free_port(), _free_port(), _free_port()
    state = tmp_path / "var-lib-edge-hub"
    state.mkdir()
    cfg = (UNITS / "hub.toml").read_text(encoding="utf-8")
    cfg = cfg.replace("5560", str(zmq_port)).replace("8080", str(http)).replace(
        "9101", str(metrics)).replace("/var/lib/edge-hub", str(state)).replace(
        "/etc/edge/allowed-nodes", str(secrets / "allowed-nodes"))
    creds = tmp_path / "credentials" / "edge-hub.service"
    cfg = cfg.replace("/run/credentials/edge-hub.service", str(creds))
    (tmp_path / "hub.toml").write_text(cfg, encoding="utf-8")
    argv, env = _exec_start(
        "edge-hub.service", tmp_path, {"/etc/edge/hub.toml": tmp_path / "hub.toml"},
        {"/etc/edge/credentials/hub.key_secret": secrets / "hub" / "hub.key_secret",
         "/etc/edge/credentials/tls/server.crt": secrets / "tls" / "server.crt",
         "/etc/edge/credentials/tls/server.key": secrets / "tls" / "server.key"})
    add = subprocess.run([*argv[:3], "hub", "add-officer", "--config", str(tmp_path / "hub.toml"),
                          "--password-stdin", "pc1"], input="a long enough password\n",
                         env={**_base_env(), **env}, capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    proc = subprocess.Popen(argv, env={**_base_env(), **env}, cwd=state,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "hub.log").open("wb"))
    ctx = ssl.create_default_context(cafile=str(secrets / "tls" / "ca.crt"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ok = httpx.get(f"https://localhost:{http}/healthz", verify=ctx, timeout=5)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "hub.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "hub.log").read_text()
                time.sleep(0.5)
        assert ok.status_code == 200
        assert (state / "hub.sqlite").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
