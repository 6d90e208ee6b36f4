"""Exactly-once through faults: many nodes -> a 3-server JetStream cluster (R3 streams) -> two
hubs; one NATS server and one hub (a real `edge hub` process) are killed with SIGKILL mid-run
and restarted. Every alert is stored once on both hubs, both show the same decisions, every
decision is in its node's audit log once, and the restarted hub's tablet, in a real headless
Chromium, shows every alert exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from edge.audit import AuditLog, read_records
from edge.hub.officers import add_officer
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.nats_sender import NatsSender
from tests.hub.test_tablet_browser import CHROMIUM, CHROMIUM_ARGS, sign_in
from tests.hub_helpers import PASSWORD, RunningHub, free_port, hub_config, wait_for
from tests.nats_helpers import Fabric, need_nats_server

# 40-80 s on 2 cores (20 nodes x 50 alerts, 3 servers, 2 hubs); the browser check ~5 s of it
pytestmark = pytest.mark.slow

DEP = "dep-test"
NODES = int(os.environ.get("EDGE_FABRIC_NODES", "20"))
PER_NODE = int(os.environ.get("EDGE_FABRIC_ALERTS", "50"))
JPEGS = [synthetic_jpeg(i) for i in range(8)]


class HubProcess:
    """`edge hub --config` as its own process, so it can be killed with SIGKILL."""

    def __init__(self, tmp: Path, urls: tuple[str, ...]) -> None:
        self.dir = tmp / "hub-b"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "hub.sqlite"
        self.port = free_port()
        officers = self.dir / "officers.json"
        add_officer(officers, "pc2", PASSWORD)
        servers = ", ".join(f'"{u}"' for u in urls)
        self.toml = self.dir / "hub.toml"
        self.toml.write_text(
            'transport = "nats"\n'
            f'[nats]\nservers = [{servers}]\nhub_name = "b"\ndeployments = ["{DEP}"]\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'[store]\npath = "{self.db}"\nofficers_file = "{officers}"\n'
            '[metrics]\nport = 0\n[ui]\nundo_s = 0\n')
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        log = open(self.dir / "hub.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "hub", "--config",
                                      str(self.toml)], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "hub b exited"
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1
                                 ).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "hub b answering")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rows(self) -> dict[str, tuple[str | None, int]]:
        """alert_id -> (decision, finalized), read from its store (WAL: readers see commits)."""
        if not self.db.exists():
            return {}
        c = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return {r[0]: (r[1], r[2]) for r in c.execute(
                "SELECT alert_id, decision, finalized FROM alerts")}
        except sqlite3.OperationalError:  # not created yet
            return {}
        finally:
            c.close()

    def tablet_count(self) -> int:
        """What its tablet app serves: the alert list (max 500 a page) and none twice."""
        c = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        try:
            r = c.post("/login", data={"officer": "pc2", "password": PASSWORD})
            assert r.status_code == 303
            ids = [a["alert_id"] for a in c.get("/api/alerts?limit=500").json()["alerts"]]
        finally:
            c.close()
        assert len(ids) == len(set(ids))
        return len(ids)


@dataclass
class FaultRun:
    """What the fault run left running for the checks: both hubs, what was sent and decided."""

    tmp: Path
    hub_a: RunningHub
    hub_b: HubProcess
    sent: dict[str, str] = field(default_factory=dict)  # alert id -> node
    decided: dict[str, str] = field(default_factory=dict)  # alert id -> decision

    def b_decisions(self) -> dict[str, str | None]:
        return {k: d for k, (d, fin) in self.hub_b.rows().items() if fin}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultRun]:
    """20 nodes x 50 alerts; mid-run a NATS server and hub b are killed (SIGKILL) and
    restarted; returns once every outbox is delivered and both hubs hold every alert."""
    need_nats_server()
    tmp_path = tmp_path_factory.mktemp("fault")
    fabric = Fabric(tmp_path / "nats", 3).start()
    hub_a = None
    hub_b = HubProcess(tmp_path, fabric.urls)
    senders: list[NatsSender] = []
    audits: list[AuditLog] = []
    try:
        hub_a = RunningHub(hub_config(tmp_path / "a", **{
            "transport": "nats", "nats.servers": list(fabric.urls), "nats.hub_name": "a",
            "nats.deployments": [DEP], "ui.undo_s": 0}))
        hub_b.start()
        for i in range(NODES):
            node = f"node-{i}"
            audit = AuditLog(tmp_path / f"{node}.audit.jsonl")
            audits.append(audit)
            # each node knows the servers in its own order (they spread over the cluster)
            urls = fabric.urls[i % 3:] + fabric.urls[:i % 3]
            senders.append(NatsSender(
                tmp_path / f"{node}.outbox.sqlite", fabric.settings(servers=urls), node, DEP,
                audit=audit, ack_timeout=2.0, max_backoff=2.0, heartbeat_interval=1.0).start())
        run = FaultRun(tmp_path, hub_a, hub_b)
        sent, decided = run.sent, run.decided
        half = PER_NODE // 2

        def send_round(r: int) -> None:
            for i, s in enumerate(senders):
                a = synthetic_alert(f"node-{i}", n=r, deployment_id=DEP)
                s.send(a, JPEGS[(i + r) % len(JPEGS)])
                sent[a.alert_id] = f"node-{i}"

        def decide_some() -> None:
            assert hub_a is not None and hub_a.store is not None
            for aid in sorted(hub_a.store.alert_ids()):
                if aid not in decided and int(aid[:2], 16) % 4 == 0:  # about a quarter
                    choice = ("confirm", "reject", "no_action")[int(aid[2], 16) % 3]
                    status, _ = hub_a.hub.decide(aid, choice, "pc1")
                    assert status == "ok"
                    decided[aid] = choice

        for r in range(half):
            send_round(r)
            time.sleep(0.02)
        decide_some()
        # mid-run: a NATS server and hub b die without a goodbye; sending goes on
        fabric.servers[1].kill()
        hub_b.kill()
        stop = threading.Event()

        def keep_sending() -> None:
            for r in range(half, PER_NODE):
                send_round(r)
                time.sleep(0.02)
            stop.set()

        t = threading.Thread(target=keep_sending)
        t.start()
        time.sleep(2.0)
        decide_some()
        t.join(timeout=300)
        assert stop.is_set()
        fabric.servers[1].start()
        hub_b.start()
        total = NODES * PER_NODE
        wait_for(lambda: all(s.pending() == 0 for s in senders), 240, "every outbox delivered")
        wait_for(lambda: len(hub_a.store.alert_ids()) == total, 240, "hub a has every alert")
        decide_some()
        assert set(hub_a.store.alert_ids()) == set(sent)
        wait_for(lambda: set(hub_b.rows()) == set(sent), 240, "hub b has every alert")
        yield run
    finally:
        for s in senders:
            s.close(timeout=0)
        for a in audits:
            a.close()
        hub_b.stop()
        if hub_a is not None:
            hub_a.close()
        fabric.stop()


def test_exactly_once_through_server_and_hub_kills(fault_run: FaultRun) -> None:
    run, hub_a, hub_b, decided, sent = (fault_run, fault_run.hub_a, fault_run.hub_b,
                                        fault_run.decided, fault_run.sent)
    assert hub_b.tablet_count() == min(500, NODES * PER_NODE)
    wait_for(lambda: run.b_decisions() == decided, 240, "hub b shows hub a's decisions")

    def a_final() -> dict[str, str | None]:
        assert hub_a.store is not None
        return {c["alert_id"]: c["decision"] for c in hub_a.store.list_alerts(limit=10**6)
                if c["finalized"]}

    wait_for(lambda: a_final() == decided, 240, "hub a final on the same decisions")

    def audited() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i in range(NODES):
            recs = read_records(run.tmp / f"node-{i}.audit.jsonl")
            out[f"node-{i}"] = [x["data"]["alert_id"] for x in recs
                                if x["kind"] == "decision"]
        return out

    want = {f"node-{i}": sorted(a for a in decided if sent[a] == f"node-{i}")
            for i in range(NODES)}
    wait_for(lambda: {k: sorted(v) for k, v in audited().items()} == want, 240,
             "every decision in its node's audit log")
    for node, ids in audited().items():
        assert len(ids) == len(set(ids)), f"{node}: a decision audited twice"


@pytest.mark.browser
def test_restarted_hubs_tablet_shows_every_alert_once(fault_run: FaultRun) -> None:
    """Hub b (killed and restarted) in headless Chromium: the tablet's list, page after page
    ("Show earlier alerts"), renders every alert exactly once, the decided ones as decided."""
    if not CHROMIUM.exists():
        pytest.skip("the tablet check needs /usr/bin/chromium (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    run = fault_run
    wait_for(lambda: run.b_decisions() == run.decided, 240, "hub b shows hub a's decisions")
    url = f"http://127.0.0.1:{run.hub_b.port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1024, "height": 768}).new_page()
        try:
            sign_in(page, url, "pc2")
            cards = page.locator("article[data-alert-id]")
            older = page.locator("#load-older")
            cards.first.wait_for(timeout=20000)
            pages = 0
            while True:  # the list comes 200 at a time; the officer asks for earlier ones
                wait_for(lambda: older.is_hidden() or older.is_enabled(), 30, "page loaded")
                if older.is_hidden():
                    break
                pages += 1
                assert pages <= NODES * PER_NODE // 200 + 2, "more pages than alerts"
                older.click()
            assert pages >= (NODES * PER_NODE - 1) // 200  # it did page through the list
            ids = cards.evaluate_all("els => els.map(e => e.dataset.alertId)")
            assert len(ids) == len(set(ids)), "an alert rendered twice"
            assert set(ids) == set(run.sent)
            shown = dict(page.locator("#decided article").evaluate_all(
                "els => els.map(e => [e.dataset.alertId, e.dataset.decision])"))
            assert shown == run.decided
            assert page.locator("#open article").count() == len(run.sent) - len(run.decided)
            assert page.locator("#deployments").is_hidden()  # one deployment: no selector
            assert page.locator("#deployment-filter").is_hidden()
        finally:
            browser.close()
