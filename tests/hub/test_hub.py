"""Hub: exactly-once store across a hub kill, officer auth, no anonymous data, live SSE,
decisions, retention, deployment record, metrics, config."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from edge.errors import ConfigError
from edge.exporter import serve_metrics
from edge.hub.config import load_hub_config
from edge.hub.officers import Officers, add_officer, verify_password
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.hub.throttle import LoginThrottle
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import PASSWORD, RunningHub, free_port, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
EDGE = [sys.executable, "-m", "edge.cli"]
JPEG = synthetic_jpeg(7, 128)
REF = synthetic_jpeg(8, 128)


@pytest.fixture()
def hub(tmp_path: Path):
    h = RunningHub(hub_config(tmp_path))
    yield h
    h.close()


def _send(h: RunningHub, tmp: Path, n: int = 1, node: str = "node-1", ref: bool = True
          ) -> list[str]:
    ids = []
    with ZmqSender(tmp / f"{node}-outbox.sqlite", h.endpoint, node, None, None,
                   camera="North gate") as s:
        for i in range(n):
            a = synthetic_alert(node, "North gate", i, display_name=f"Subject Person {i}")
            s.send(a, JPEG, REF if ref else None)
            ids.append(a.alert_id)
        wait_for(lambda: s.pending() == 0, what="delivery")
    return ids


# -- hub killed mid-flow ----------------------------------------------------------------

def _write_hub_toml(path: Path, tmp: Path, zport: int, hport: int) -> None:
    path.write_text(
        f"""
[zmq]
bind = "tcp://127.0.0.1:{zport}"
[http]
host = "127.0.0.1"
port = {hport}
[store]
path = "{tmp / 'hub' / 'hub.sqlite'}"
officers_file = "{tmp / 'hub' / 'officers.json'}"
[metrics]
port = 0
"""
    )


def _start_hub_process(cfg: Path, url: str) -> subprocess.Popen:
    p = subprocess.Popen([*EDGE, "hub", "--config", str(cfg)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/login", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        if p.poll() is not None:
            raise AssertionError(p.stderr.read().decode())  # type: ignore[union-attr]
        time.sleep(0.05)
    p.kill()
    raise AssertionError("hub process did not come up")


def test_hub_killed_mid_flow_every_alert_exactly_once(tmp_path: Path) -> None:
    zport, hport = free_port(), free_port()
    cfg = tmp_path / "hub.toml"
    _write_hub_toml(cfg, tmp_path, zport, hport)
    add_officer(tmp_path / "hub" / "officers.json", "pc1", PASSWORD)
    url = f"http://127.0.0.1:{hport}"
    p = _start_hub_process(cfg, url)
    c = httpx.Client(base_url=url, timeout=5)
    assert c.post("/login", data={"officer": "pc1", "password": PASSWORD}).status_code == 303

    def stored() -> list[str]:
        return [a["alert_id"] for a in c.get("/api/alerts", params={"limit": 500}).json()["alerts"]]

    sent: list[str] = []
    sender = ZmqSender(tmp_path / "outbox.sqlite", f"tcp://127.0.0.1:{zport}", "node-1", None,
                       None, ack_timeout=0.3, max_backoff=1.0).start()
    done = threading.Event()

    def produce() -> None:
        for i in range(60):
            a = synthetic_alert("node-1", n=i)
            sender.send(a, JPEG)
            sent.append(a.alert_id)
            time.sleep(0.02)
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_for(lambda: len(stored()) >= 10, what="first alerts stored")
        p.send_signal(signal.SIGKILL)  # mid-flow, no chance to clean up
        p.wait(10)
        time.sleep(0.5)
        assert sender.pending() > 0  # alerts kept coming while the hub was dead
        p = _start_hub_process(cfg, url)
        done.wait(10)
        wait_for(lambda: sender.pending() == 0, timeout=20, what="outbox drained after restart")
        ids = stored()  # the session survived the hub restart (sessions live in the store)
        assert len(ids) == len(set(ids)) == 60
        assert sorted(ids) == sorted(sent)
    finally:
        t.join()
        sender.close(0)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    assert p.returncode in (0, -signal.SIGTERM)


# -- officers and sign-in ---------------------------------------------------------------

def test_add_officer_cli_and_hash(tmp_path: Path) -> None:
    off = tmp_path / "officers.json"
    r = subprocess.run([*EDGE, "hub", "--officers", str(off), "add-officer", "pc7",
                        "--password-stdin"], input="a long enough secret\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(off.stat().st_mode) == 0o600
    text = off.read_text()
    assert "a long enough secret" not in text
    rec = json.loads(text)["officers"]["pc7"]
    assert rec["hash"].startswith("scrypt$") and verify_password("a long enough secret", rec["hash"])
    assert not verify_password("a long enough secreT", rec["hash"])
    short = subprocess.run([*EDGE, "hub", "--officers", str(off), "add-officer", "pc8",
                            "--password-stdin"], input="short\n", capture_output=True, text=True,
                           timeout=60)
    assert short.returncode == 2 and "too short" in short.stderr
    dup = subprocess.run([*EDGE, "hub", "--officers", str(off), "add-officer", "pc7",
                          "--password-stdin"], input="another long secret\n",
                         capture_output=True, text=True, timeout=60)
    assert dup.returncode == 2 and "exists" in dup.stderr


def test_login_refusals_counted_and_locked(hub: RunningHub) -> None:
    reg = hub.hub.metrics.registry
    c = httpx.Client(base_url=hub.url)
    r = c.post("/login", data={"officer": "nobody", "password": PASSWORD})
    assert r.status_code == 401 and "edge_session" not in r.headers.get("set-cookie", "")
    r = c.post("/login", data={"officer": "pc1", "password": "wrong password!"})
    assert r.status_code == 401
    assert metric(reg, "edge_hub_login_failures_total", {"reason": "unknown_officer"}) == 1
    assert metric(reg, "edge_hub_login_failures_total", {"reason": "bad_password"}) == 1
    r = c.post("/login", content=b"\xff" * 5000,
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    for _ in range(4):
        c.post("/login", data={"officer": "pc1", "password": "wrong password!"})
    r = c.post("/login", data={"officer": "pc1", "password": PASSWORD})  # right, but throttled
    assert r.status_code == 429 and "Too many" in r.text and "Try again in" in r.text
    assert metric(reg, "edge_hub_login_failures_total", {"reason": "throttled"}) >= 1


def test_officer_throttle_expires() -> None:
    clock = [1000.0]
    o = Officers(Path("/nonexistent/officers.json"), LoginThrottle(None, clock=lambda: clock[0]))
    for _ in range(4):
        assert o.check("x", "y", "c") == (False, "unknown_officer")
    assert o.check("x", "y", "c") == (False, "throttled")
    clock[0] += o.throttle.wait_s("x", "c")
    assert o.check("x", "y", "c")[1] == "unknown_officer"


def test_session_cookie_flags_and_logout(hub: RunningHub) -> None:
    c = httpx.Client(base_url=hub.url)
    r = c.post("/login", data={"officer": "pc1", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert c.get("/api/me").json()["officer"] == "pc1"
    token = c.cookies.get("edge_session")
    c.post("/logout")
    stale = httpx.Client(base_url=hub.url, cookies={"edge_session": token})
    assert stale.get("/api/me").status_code == 401


# -- anonymous clients get nothing ------------------------------------------------------

def test_unauthenticated_client_receives_nothing(tmp_path: Path, hub: RunningHub) -> None:
    (aid,) = _send(hub, tmp_path)
    secret_bits = [aid, "Subject Person", "North gate"]
    for cookies in ({}, {"edge_session": "forged-token-value"}):
        c = httpx.Client(base_url=hub.url, cookies=cookies, follow_redirects=False, timeout=5)
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        for path in ("/static/app.js", "/static/app.css", "/api/alerts", f"/api/alerts/{aid}",
                     f"/api/alerts/{aid}/probe.jpg", f"/api/alerts/{aid}/reference.jpg",
                     "/api/events", "/api/nodes", "/api/me"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert not any(b in r.text for b in secret_bits), path
            assert JPEG[100:140] not in r.content
        r = c.post(f"/api/alerts/{aid}/decision", json={"decision": "confirm"},
                   headers={"X-Edge-Request": "1"})
        assert r.status_code == 401
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert c.get(path).status_code == 404
        login = c.get("/login")
        assert login.status_code == 200 and not any(b in login.text for b in secret_bits)
    assert hub.store.get_alert(aid)["decision"] is None
    assert metric(hub.hub.metrics.registry, "edge_hub_http_unauthorized_total") >= 20


def test_security_headers(hub: RunningHub) -> None:
    r = httpx.get(hub.url + "/login")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


# -- live alerts, decisions -------------------------------------------------------------

def test_sse_pushes_alert_live_and_decision_reaches_node(tmp_path: Path, hub: RunningHub) -> None:
    from edge.audit import AuditLog, read_records

    c = hub.client()
    audit = AuditLog(tmp_path / "audit.jsonl")
    got: dict[str, dict] = {}
    with c.stream("GET", "/api/events", timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        event = None
        s = ZmqSender(tmp_path / "o.sqlite", hub.endpoint, "node-1", None, audit,
                      camera="North gate").start()
        a = synthetic_alert("node-1", "North gate", 1)
        sent_at = time.time()
        s.send(a, JPEG, REF)
        for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("alert", "status"):
                got[event] = json.loads(line[6:])
                if event == "alert":
                    break
        latency = time.time() - sent_at
    card = got["alert"]
    assert card["alert_id"] == a.alert_id and card["display_name"] == a.display_name
    assert card["probe_url"] == f"/api/alerts/{a.alert_id}/probe.jpg"
    assert "probe" not in card and "embedding" not in json.dumps(card)
    assert latency < 10
    assert c.get(card["probe_url"]).content == JPEG
    assert c.get(card["reference_url"]).content == REF
    nodes = got["status"]["nodes"]
    assert isinstance(nodes, list)
    r = c.post(f"/api/alerts/{a.alert_id}/decision", json={"decision": "confirm"},
               headers={"X-Edge-Request": "1"})
    assert r.status_code == 200 and r.json()["card"]["officer"] == "pc1"

    def decided() -> list:
        return [x for x in read_records(tmp_path / "audit.jsonl") if x["kind"] == "decision"]

    recs = wait_for(decided, what="decision in node audit log")
    assert recs[0]["data"]["alert_id"] == a.alert_id
    assert recs[0]["data"]["decision"] == "confirm" and recs[0]["data"]["officer"] == "pc1"
    wait_for(lambda: not hub.store.undelivered_decisions(), what="decision acked by node")
    s.close(0)
    audit.close()


def test_decision_validation(tmp_path: Path, hub: RunningHub) -> None:
    aid, aid2 = _send(hub, tmp_path, 2)
    c = hub.client()
    reg = hub.hub.metrics.registry
    h = {"X-Edge-Request": "1"}
    assert c.post(f"/api/alerts/{aid}/decision", json={"decision": "arrest"},
                  headers=h).status_code == 400
    assert c.post(f"/api/alerts/{aid}/decision", content=b"{nope", headers=h).status_code == 400
    assert c.post(f"/api/alerts/{aid}/decision", json={"decision": "confirm"}).status_code == 403
    assert c.post(f"/api/alerts/{'f' * 32}/decision", json={"decision": "confirm"},
                  headers=h).status_code == 404
    assert c.post("/api/alerts/../../x/decision", json={"decision": "confirm"},
                  headers=h).status_code == 404
    assert c.post(f"/api/alerts/{aid}/decision", json={"decision": "no_action"},
                  headers=h).status_code == 200
    r = c.post(f"/api/alerts/{aid}/decision", json={"decision": "confirm"}, headers=h)
    assert r.status_code == 409 and r.json()["card"]["decision"] == "no_action"
    assert metric(reg, "edge_hub_decisions_refused_total", {"reason": "bad_value"}) == 2
    assert metric(reg, "edge_hub_decisions_refused_total", {"reason": "csrf"}) == 1
    assert metric(reg, "edge_hub_decisions_refused_total", {"reason": "already_decided"}) == 1
    assert metric(reg, "edge_hub_decisions_total", {"decision": "no_action"}) == 1
    open_ids = [x["alert_id"] for x in c.get("/api/alerts?open_only=true").json()["alerts"]]
    assert open_ids == [aid2]


def test_rejected_probe_purged_at_once(tmp_path: Path, hub: RunningHub) -> None:
    (aid,) = _send(hub, tmp_path)
    c = hub.client()
    assert c.get(f"/api/alerts/{aid}/probe.jpg").status_code == 200
    r = c.post(f"/api/alerts/{aid}/decision", json={"decision": "reject"},
               headers={"X-Edge-Request": "1"})
    assert r.status_code == 200 and r.json()["card"]["probe_url"] is None
    assert c.get(f"/api/alerts/{aid}/probe.jpg").status_code == 404
    assert c.get(f"/api/alerts/{aid}/reference.jpg").status_code == 200
    assert hub.store.image(aid, "probe") is None


def test_rejected_probe_kept_when_policy_off(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path, **{"retention.purge_rejected_probe": False}))
    try:
        (aid,) = _send(h, tmp_path)
        h.hub.decide(aid, "reject", "pc1")
        assert h.store.image(aid, "probe") == JPEG
    finally:
        h.close()


# -- retention, record, metrics ---------------------------------------------------------

def test_retention_purge_keeps_statistics(tmp_path: Path, hub: RunningHub) -> None:
    ids = _send(hub, tmp_path, 3)
    hub.hub.decide(ids[0], "confirm", "pc1")
    needle = JPEG[300:364]
    files = sorted(Path(hub.hub.cfg.store.path).parent.glob("hub.sqlite*"))
    assert any(needle in f.read_bytes() for f in files)  # positive control for the scan below
    assert hub.hub.purge()["alerts"] == 0  # all fresh
    future = time.time() + 31 * 86400 + 60
    assert hub.hub.purge(now=future)["alerts"] == 3
    assert hub.store.count_alerts() == 0
    for i in ids:
        assert hub.store.image(i, "probe") is None and hub.store.image(i, "reference") is None
    rec = hub.store.deployment_record()
    assert rec["totals"]["alerts"] == 3 and rec["totals"]["confirmed"] == 1
    assert metric(hub.hub.metrics.registry, "edge_hub_purged_total", {"what": "alerts"}) == 3
    for f in Path(hub.hub.cfg.store.path).parent.glob("hub.sqlite*"):
        assert needle not in f.read_bytes(), f"purged crop still in {f.name}"


def test_retention_period_configurable_lower_only(tmp_path: Path) -> None:
    assert load_hub_config(None, {"retention.days": 7}).retention.days == 7
    with pytest.raises(ConfigError, match="retention.days"):
        load_hub_config(None, {"retention.days": 32})
    bad = tmp_path / "bad.toml"
    bad.write_text("[retention]\nkeep_forever = true\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_hub_config(bad)
    ex = load_hub_config(REPO / "config" / "hub.example.toml")
    assert ex.retention.days <= 31


def test_export_record_cli_counts_faces_from_heartbeats(tmp_path: Path) -> None:
    cfg_path = tmp_path / "hub.toml"
    _write_hub_toml(cfg_path, tmp_path, free_port(), free_port())
    cfg = load_hub_config(cfg_path, {"zmq.bind": "tcp://127.0.0.1:0", "ui.undo_s": 0})
    h = RunningHub(cfg)
    try:
        with ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-1", None, None,
                       camera="North gate") as s:
            s.set_counts({"faces_seen": 1234, "faces_discarded": 1231, "alerts": 3})
            ids = []
            for i in range(3):
                a = synthetic_alert("node-1", "North gate", i)
                s.send(a, JPEG)
                ids.append(a.alert_id)
            wait_for(lambda: s.pending() == 0, what="delivery")
            wait_for(lambda: h.store.deployment_record()["totals"]["faces_seen"] == 1234,
                     what="heartbeat counts")
        h.hub.decide(ids[0], "confirm", "pc1")
        h.hub.decide(ids[1], "reject", "pc1")
    finally:
        h.close()
    out = tmp_path / "record.json"
    r = subprocess.run([*EDGE, "hub", "export-record", "--config", str(cfg_path), "--out",
                        str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    assert rec["totals"] == {"faces_seen": 1234, "alerts": 3, "confirmed": 1, "rejected": 1,
                             "no_action": 0, "undecided": 1, "outcomes": {},
                             "false_alert_rate": 1 / 1234, "false_alert_one_in": 1234,
                             "false_alert_share": 0.5}
    (cam,) = rec["per_camera"]
    assert cam["camera"] == "North gate" and cam["node_counts"]["faces_discarded"] == 1231
    assert "Test Subject" not in out.read_text()  # counts only, nobody's name


def test_metrics_endpoint_counts_only(tmp_path: Path, hub: RunningHub) -> None:
    (aid,) = _send(hub, tmp_path)
    srv = serve_metrics(hub.hub.metrics.registry, 0)
    try:
        text = httpx.get(f"http://127.0.0.1:{srv.port}/metrics").text
    finally:
        srv.close()
    assert "edge_hub_alerts_received_total 1.0" in text
    assert "edge_hub_capture_to_hub_seconds_bucket" in text
    assert aid not in text and "Subject" not in text and "North gate" not in text


def test_node_lost_shows_in_status(tmp_path: Path, hub: RunningHub) -> None:
    s = ZmqSender(tmp_path / "o.sqlite", hub.endpoint, "node-9", None, None,
                  camera="Bridge").start()
    c = hub.client()
    try:
        wait_for(lambda: [n for n in c.get("/api/nodes").json()["nodes"]
                          if n["node_id"] == "node-9" and n["online"]], what="node online")
    finally:
        s.close(0, reason=None)  # gone without a stop heartbeat, as a crash
    (n,) = wait_for(lambda: [n for n in c.get("/api/nodes").json()["nodes"]
                             if n["node_id"] == "node-9" and not n["online"]],
                    timeout=6, what="node reported lost")
    assert n["camera"] == "Bridge" and n["last_seen"] > 0


def test_hub_cli_bad_config_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text("[retention]\ndays = 90\n")
    r = subprocess.run([*EDGE, "hub", "--config", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: hub config")
    assert len(r.stderr.strip().splitlines()) == 1


def test_store_files_private(hub: RunningHub) -> None:
    p = Path(hub.hub.cfg.store.path)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.stat(p.parent).st_mode & 0o077 == 0
