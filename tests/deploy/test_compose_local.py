"""docker/compose.yaml as it would start, without Docker: each service's exact command line,
environment, mounted configs and secrets run as local processes (see compose_local.py).

The secrets are made with docker/make-secrets.sh (the README's "First start" commands), the
officer with the documented `hub add-officer --password-stdin` command in the hub service.
Proves: the hub binds 0.0.0.0 with CURVE and serves HTTPS; the node (its CURVE key, the hub's
public key, the watchlist key, all from /run/secrets) delivers its alert to the hub; both
healthcheck commands pass as written; a missing secret is one line naming it.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

from tests.conftest import write_clip
from tests.deploy.compose_local import DOCKER, REPO, LocalService, local_service

pytestmark = pytest.mark.slow

yaml = pytest.importorskip("yaml", reason="PyYAML (dev extra) parses docker/compose.yaml")
PASSWORD = "correct horse battery staple"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture()
def deployment(tmp_path: Path, engine: Any, sample_images: Path) -> dict[str, Any]:
    """Secrets from make-secrets.sh, a watchlist (key = the watchlist_key secret), a clip."""
    from edge.node.demo import _enrolment_photo
    from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
    from edge.watchlist.vault import create_key_file

    secrets = tmp_path / "secrets"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    r = subprocess.run(["sh", str(DOCKER / "make-secrets.sh"), str(secrets)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    group = cv2.imread(str(sample_images / "t1.jpg"))
    people = sorted(engine.faces(group), key=lambda f: float(f.bbox[0]))
    enrol = engine.faces(_enrolment_photo(group, people[1].bbox))[0]
    key = create_key_file(secrets / "watchlist.key")
    wl = tmp_path / "watchlist"
    Watchlist(WatchlistMeta(deployment_id="compose-test"), {"P2": Subject("P2", "Person Two", "t")},
              [Entry("P2/1", "P2", "x.jpg")], enrol.embedding[None]).save(wl, key)
    frames = [cv2.resize(group[:, 10 * (i % 10): 10 * (i % 10) + 1200], (900, 664))
              for i in range(150)]
    clip = write_clip(tmp_path / "clip.mp4", frames)
    compose_env = {"EDGE_SECRETS_DIR": str(secrets), "EDGE_WATCHLIST_DIR": str(wl),
                   "EDGE_SOURCE": str(clip)}
    ports = {p: _free_port() for p in (5560, 8080, 9100, 9101)}
    compose = _compose()
    return {
        "tmp": tmp_path, "secrets": secrets, "ports": ports,
        "hub": local_service(compose, "hub", tmp_path, compose_env, ports),
        "node": local_service(compose, "node", tmp_path, compose_env, ports),
    }


def _start(svc: LocalService, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(svc.argv, env=svc.env, cwd=svc.cwd, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def _healthy(svc: LocalService) -> bool:
    return subprocess.run(svc.healthcheck(), capture_output=True, timeout=10).returncode == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_compose_hub_and_node_talk_over_curve_and_tls(deployment: dict[str, Any]) -> None:
    hub: LocalService = deployment["hub"]
    node: LocalService = deployment["node"]
    tmp: Path = deployment["tmp"]
    # officer provisioning exactly as docker/README.md: `docker compose run --rm -T hub hub
    # add-officer --config /etc/edge/hub.toml --password-stdin pc1`
    add = subprocess.run(hub.command(["hub", "add-officer", "--config", "/etc/edge/hub.toml",
                                      "--password-stdin", "pc1"]),
                         input=PASSWORD + "\n", env=hub.env, cwd=hub.cwd, capture_output=True,
                         text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    assert (tmp / "volumes" / "hub-state" / "officers.json").is_file()
    assert "0.0.0.0:" in hub.paths["/etc/edge/hub.toml"].read_text(encoding="utf-8")

    hub_proc = _start(hub, tmp / "hub.log")
    node_proc = None
    try:
        deadline = time.monotonic() + 60
        while not _healthy(hub):
            assert hub_proc.poll() is None, (tmp / "hub.log").read_text()
            assert time.monotonic() < deadline, "hub healthcheck never passed"
            time.sleep(0.5)
        ctx = ssl.create_default_context(cafile=str(deployment["secrets"] / "tls" / "ca.crt"))
        base = f"https://localhost:{deployment['ports'][8080]}"
        with httpx.Client(base_url=base, verify=ctx, timeout=10) as web:
            assert web.post("/login", data={"officer": "pc1", "password": PASSWORD}
                            ).status_code == 303
            node_proc = _start(node, tmp / "node.log")
            node_healthy = False
            alerts: list[Any] = []
            deadline = time.monotonic() + 120
            while not alerts:
                node_healthy = node_healthy or (node_proc.poll() is None and _healthy(node))
                alerts = web.get("/api/alerts").json()["alerts"]
                assert time.monotonic() < deadline, (tmp / "node.log").read_text()
                time.sleep(0.5)
        log = (tmp / "node.log").read_text()
        assert node_healthy or node_proc.poll() is not None, log
        assert len(alerts) == 1, alerts
        assert "P2" in str(alerts[0]) and "edge-node-docker-1" in str(alerts[0])
        assert (tmp / "volumes" / "hub-state" / "hub.sqlite").is_file()
        assert (tmp / "volumes" / "node-state" / "audit.jsonl").is_file()
        # plain HTTP on the TLS port is not served
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{deployment['ports'][8080]}/healthz", timeout=5)
    finally:
        if node_proc is not None:
            _stop(node_proc)
        _stop(hub_proc)
    assert node_healthy, "node healthcheck never passed while it ran:\n" + log


def test_compose_missing_secret_is_one_line(deployment: dict[str, Any]) -> None:
    node: LocalService = deployment["node"]
    secret = node.paths["/run/secrets/node_secret_key"]
    kept = secret.with_name("kept")
    shutil.move(secret, kept)
    r = subprocess.run(node.argv, env=node.env, cwd=node.cwd, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert str(secret) in r.stderr.strip().splitlines()[-1], r.stderr
    assert kept.is_file() and (deployment["tmp"] / "watchlist").is_dir()   # nothing lost
