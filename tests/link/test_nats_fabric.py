"""The NATS JetStream fabric against real nats-server processes on 127.0.0.1: alerts stored once
on every hub, decisions once in the node's audit log, a node cut off keeps its outbox, a hub
rebuilt from an empty disk, and refusals (wrong credentials, impersonation, a deployment the
hub may not read) counted."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from edge.audit import AuditLog, read_records
from edge.errors import ConfigError, EdgeError
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.metrics import LinkMetrics
from edge.link.nats_fabric import (
    HubAccount,
    NatsSettings,
    NodeAccount,
    pack,
    subject,
    unpack,
)
from edge.link.nats_sender import NatsSender
from edge.link.schema import MessageError, encode
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for
from tests.nats_helpers import Fabric, need_nats_server

pytestmark = pytest.mark.unit

DEP = "dep-test"
JPEG = synthetic_jpeg(3)


@pytest.fixture(scope="module")
def nats_bin() -> str:
    return need_nats_server()


def nats_hub(tmp: Path, fabric: Fabric, name: str, deployments: list[str] = [DEP],  # noqa: B006
             undo_s: float = 0, **over: Any) -> RunningHub:
    settings = {"transport": "nats", "nats.servers": list(fabric.urls), "nats.hub_name": name,
                "nats.deployments": deployments, "ui.undo_s": undo_s}
    settings.update(over)
    return RunningHub(hub_config(tmp / name, **settings))


def sender(tmp: Path, settings: NatsSettings, node: str, audit: AuditLog | None = None,
           metrics: LinkMetrics | None = None, deployment: str = DEP) -> NatsSender:
    return NatsSender(tmp / f"{node}.outbox.sqlite", settings, node, deployment, audit=audit,
                      metrics=metrics, ack_timeout=1.0, max_backoff=1.0,
                      heartbeat_interval=0.5).start()


def alert(node: str, n: int, deployment: str = DEP):  # noqa: ANN201
    return synthetic_alert(node, n=n, deployment_id=deployment)


def decide(h: RunningHub, alert_id: str, decision: str) -> None:
    c = h.client()
    r = c.post(f"/api/alerts/{alert_id}/decision", json={"decision": decision},
               headers={"x-edge-request": "1"})
    c.close()
    assert r.status_code == 200, r.text


def open_on_tablet(h: RunningHub) -> set[str]:
    c = h.client()
    r = c.get("/api/alerts?open_only=true&limit=500")
    c.close()
    return {x["alert_id"] for x in r.json()["alerts"]}


def decisions_in(path: Path) -> list[dict[str, Any]]:
    return [r["data"] for r in read_records(path) if r["kind"] == "decision"]


def test_pack_unpack_round_trip_and_refusals() -> None:
    frames = encode(alert("n1", 1), JPEG, JPEG)
    headers, payload = pack(frames)
    assert unpack(headers, payload) == frames
    for bad in ({}, {**headers, "Edge-Frames": "1,2"}, {**headers, "Edge-Frames": "x"},
                {**headers, "Edge-Frames": "-1," + str(len(payload) + 1)},
                {**headers, "Edge-Frames": "1,1,1,1," + str(len(payload) - 4)}):
        with pytest.raises(MessageError):
            unpack(bad, payload)


def test_plain_text_off_loopback_refused() -> None:
    with pytest.raises(ConfigError, match="unencrypted"):
        NatsSettings(servers=("nats://10.1.2.3:4222",)).check()
    NatsSettings(servers=("nats://127.0.0.1:4222",)).check()
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        NatsSettings(tls_cert=Path("a")).check()


def test_alert_once_on_two_hubs_decision_once_in_audit(tmp_path: Path, nats_bin: str) -> None:
    fabric = Fabric(tmp_path / "nats", 1).start()
    hubs: list[RunningHub] = []
    s = None
    try:
        grace = {"nats.rejected_stream_grace_s": 0}
        hubs = [nats_hub(tmp_path, fabric, "a", **grace), nats_hub(tmp_path, fabric, "b", **grace)]
        audit = AuditLog(tmp_path / "audit.jsonl")
        metrics = LinkMetrics()
        s = sender(tmp_path, fabric.settings(), "node-1", audit, metrics)
        sent = [alert("node-1", i) for i in range(5)]
        for a in sent:
            s.send(a, JPEG)
        wait_for(lambda: s.pending() == 0, 20, "alerts acked by the stream")
        s.send(sent[0], JPEG)  # a re-send of the same alert id: the stream holds it once
        wait_for(lambda: s.pending() == 0, 20, "re-send acked")
        ids = sorted(a.alert_id for a in sent)
        for h in hubs:
            wait_for(lambda h=h: sorted(h.store.alert_ids()) == ids, 20, "alerts on the hub")
        assert metric(metrics.registry, "edge_node_alerts_acked_total",
                      {"status": "duplicate"}) >= 1
        wait_for(lambda: s.hub_connected, 10, "fabric answers heartbeats")
        wait_for(lambda: all(n["online"] and n["deployment"] == DEP
                             for n in hubs[1].hub.node_status()), 10, "node online on hub b")
        # an officer on hub a decides; hub b shows the same state, the node audits it once
        decide(hubs[0], sent[2].alert_id, "confirm")
        for h in hubs:
            wait_for(lambda h=h: (h.store.get_alert(sent[2].alert_id) or {}).get("finalized"),
                     20, "decision final on every hub")
            card = h.store.get_alert(sent[2].alert_id)
            assert card["decision"] == "confirm" and card["officer"] == "pc1"
        wait_for(lambda: len(decisions_in(tmp_path / "audit.jsonl")) == 1, 20,
                 "decision in the node's audit log")
        s.close()
        # the node restarts: the decision is not redelivered into the audit log
        s = sender(tmp_path, fabric.settings(), "node-1", audit, metrics)
        wait_for(lambda: s.hub_connected, 10, "reconnected")
        decide(hubs[1], sent[3].alert_id, "reject")
        wait_for(lambda: len(decisions_in(tmp_path / "audit.jsonl")) == 2, 20, "second decision")
        got = decisions_in(tmp_path / "audit.jsonl")
        assert [d["alert_id"] for d in got] == [sent[2].alert_id, sent[3].alert_id]
        # a rejected alert's probe goes from every hub and from the stream
        for h in hubs:
            wait_for(lambda h=h: h.store.image(sent[3].alert_id, "probe") is None, 20,
                     "rejected probe purged")
        wait_for(lambda: fabric.stream_info("EDGE_ALERTS").state.messages == 5 - 1 + 2, 20,
                 "rejected alert deleted from the stream (4 alerts + 2 decisions)")
        open_a, open_b = open_on_tablet(hubs[0]), open_on_tablet(hubs[1])
        assert open_a == open_b == set(ids) - {sent[2].alert_id, sent[3].alert_id}
        audit.close()
    finally:
        if s is not None:
            s.close()
        for h in hubs:
            h.close()
        fabric.stop()


def test_cut_off_node_keeps_outbox_and_rebuilt_hub_matches_peer(tmp_path: Path,
                                                                nats_bin: str) -> None:
    fabric = Fabric(tmp_path / "nats", 1).start()
    hub_a = hub_b = None
    s = None
    try:
        hub_a = nats_hub(tmp_path, fabric, "a")
        s = sender(tmp_path, fabric.settings(), "node-1")
        first = [alert("node-1", i) for i in range(3)]
        for a in first:
            s.send(a, JPEG)
        wait_for(lambda: s.pending() == 0, 20, "first alerts delivered")
        fabric.servers[0].kill()  # the node is cut off from the fabric
        later = [alert("node-1", 10 + i) for i in range(4)]
        for a in later:
            s.send(a, JPEG)
        wait_for(lambda: not s.hub_connected, 10, "node sees the fabric gone")
        assert s.pending() == 4  # kept in the outbox, none lost
        fabric.servers[0].start()  # same store directory: the stream comes back
        wait_for(lambda: s.pending() == 0, 60, "outbox delivered on reconnect")
        everything = sorted(a.alert_id for a in first + later)
        wait_for(lambda: sorted(hub_a.store.alert_ids()) == everything, 60, "hub a caught up")
        decide(hub_a, first[0].alert_id, "no_action")
        wait_for(lambda: (hub_a.store.get_alert(first[0].alert_id) or {}).get("finalized"), 20,
                 "decision final on hub a")
        # hub b starts later with an empty disk: it rebuilds its view from the stream
        hub_b = nats_hub(tmp_path, fabric, "b")
        wait_for(lambda: sorted(hub_b.store.alert_ids()) == everything, 30, "hub b rebuilt")
        wait_for(lambda: (hub_b.store.get_alert(first[0].alert_id) or {}).get("finalized"), 20,
                 "hub b has the decision")

        def open_ids(h: RunningHub) -> set[str]:
            return {x["alert_id"] for x in h.store.list_alerts(open_only=True, limit=500)}

        assert open_ids(hub_a) == open_ids(hub_b) == set(everything) - {first[0].alert_id}
        # and again from nothing: stop hub b, delete its disk, start it
        hub_b.close()
        shutil.rmtree(tmp_path / "b")
        hub_b = nats_hub(tmp_path, fabric, "b")
        wait_for(lambda: sorted(hub_b.store.alert_ids()) == everything, 30, "hub b rebuilt again")
        wait_for(lambda: open_ids(hub_b) == open_ids(hub_a), 20, "same open alerts")
    finally:
        if s is not None:
            s.close()
        for h in (hub_a, hub_b):
            if h is not None:
                h.close()
        fabric.stop()


def _secured(tmp_path: Path) -> tuple[Fabric, dict[str, Path]]:
    pw = {"node-1": "pw-node-1", "node-2": "pw-node-2", "hub-a": "pw-hub-a"}
    nodes = [NodeAccount("node-1", DEP, "node-1", pw["node-1"]),
             NodeAccount("node-2", "other", "node-2", pw["node-2"])]
    hubs = [HubAccount("a", (DEP,), "hub-a", pw["hub-a"])]
    files = {}
    for user, secret in {**pw, "wrong": "not-the-password"}.items():
        f = tmp_path / f"{user}.password"
        f.write_text(secret + "\n")
        files[user] = f
    return Fabric(tmp_path / "nats", 1, nodes=nodes, hubs=hubs).start(), files


def test_refusals_counted(tmp_path: Path, nats_bin: str) -> None:
    fabric, pw = _secured(tmp_path)
    hub = None
    senders: list[NatsSender] = []
    try:
        # a hub asking for a deployment it may not read: refused and counted, the rest served
        hub = nats_hub(tmp_path, fabric, "a", deployments=[DEP, "other"], **{
            "nats.user": "hub-a", "nats.password_file": str(pw["hub-a"])})
        reg = hub.hub.metrics.registry
        wait_for(lambda: metric(reg, "edge_hub_fabric_errors_total",
                                {"reason": "permission"}) >= 1, 20, "forbidden deployment refused")
        good_m = LinkMetrics()
        good = sender(tmp_path, fabric.settings("node-1", pw["node-1"]), "node-1",
                      metrics=good_m)
        senders.append(good)
        a1 = alert("node-1", 1)
        good.send(a1, JPEG)
        wait_for(lambda: hub.store.alert_ids() == [a1.alert_id], 20, "own alert stored")

        # wrong password: never connected, counted, the alert stays in the outbox
        bad_m = LinkMetrics()
        bad = sender(tmp_path / "x", fabric.settings("node-1", pw["wrong"]), "node-1",
                     metrics=bad_m)
        senders.append(bad)
        bad.send(alert("node-1", 2), JPEG)
        wait_for(lambda: metric(bad_m.registry, "edge_node_fabric_errors_total",
                                {"reason": "auth"}) >= 1, 20, "wrong credentials counted")
        assert bad.pending() == 1 and not bad.hub_connected

        # node-2's credentials publishing as node-1 (its subject): the server refuses it
        (tmp_path / "y").mkdir()
        imp_m = LinkMetrics()
        imp = sender(tmp_path / "y", fabric.settings("node-2", pw["node-2"]), "node-1",
                     metrics=imp_m)
        senders.append(imp)
        imp.send(alert("node-1", 3), JPEG)
        wait_for(lambda: metric(imp_m.registry, "edge_node_fabric_errors_total",
                                {"reason": "permission"}) >= 1, 20, "impersonation refused")
        assert imp.pending() == 1

        # an alert on a node's own subject whose header names another node: the hub refuses it
        async def forged() -> None:
            nc = await nats.connect(servers=list(fabric.urls), user="node-1",
                                    password="pw-node-1", inbox_prefix="_INBOX.n.node-1")
            try:
                fake = dataclasses.replace(alert("node-9", 4))
                headers, payload = pack(encode(fake, JPEG))
                await nc.jetstream().publish(subject(DEP, "node-1", "alert"), payload,
                                             headers=headers)
                headers, payload = pack([b"edge.alert.v1", b"{not json", JPEG])
                await nc.jetstream().publish(subject(DEP, "node-1", "alert"), payload,
                                             headers=headers)
            finally:
                await nc.close()
            # node-2's own connection publishing on node-1's subject: refused by the server
            errors: list[str] = []

            async def on_error(exc: Exception) -> None:
                errors.append(str(exc))

            nc = await nats.connect(servers=list(fabric.urls), user="node-2",
                                    password="pw-node-2", inbox_prefix="_INBOX.n.node-2",
                                    error_cb=on_error)
            try:
                headers, payload = pack(encode(alert("node-1", 6), JPEG))
                with pytest.raises(nats.errors.TimeoutError):
                    await nc.jetstream().publish(subject(DEP, "node-1", "alert"), payload,
                                                 headers=headers, timeout=1.0)
                assert any("permissions violation for publish" in e.lower() for e in errors)
            finally:
                await nc.close()

        asyncio.run(forged())
        wait_for(lambda: metric(reg, "edge_hub_messages_refused_total",
                                {"reason": "node_id_mismatch"}) == 1, 20, "forged node_id refused")
        wait_for(lambda: metric(reg, "edge_hub_messages_refused_total",
                                {"reason": "json"}) == 1, 20, "malformed alert refused")
        assert hub.store.alert_ids() == [a1.alert_id]  # nothing else stored, hub still serving
        a5 = alert("node-1", 5)
        good.send(a5, JPEG)
        wait_for(lambda: sorted(hub.store.alert_ids()) == sorted([a1.alert_id, a5.alert_id]),
                 20, "hub still serving after the refusals")
    finally:
        for x in senders:
            x.close(timeout=0)
        if hub is not None:
            hub.close()
        fabric.stop()


def test_hub_with_wrong_credentials_stops_with_one_line(tmp_path: Path, nats_bin: str) -> None:
    fabric, pw = _secured(tmp_path)
    try:
        with pytest.raises(EdgeError, match="refused this hub's credentials"):
            nats_hub(tmp_path, fabric, "a", **{"nats.user": "hub-a",
                                               "nats.password_file": str(pw["wrong"])})
    finally:
        fabric.stop()


def test_authorization_block_is_what_the_server_loads(tmp_path: Path) -> None:
    from edge.link.nats_fabric import authorization

    text = authorization([NodeAccount("n1", "d1", "n1", "p")], [HubAccount("h", ("d1",), "h", "q")])
    body = json.loads(text.split(" ", 1)[1])
    node = body["users"][0]["permissions"]
    assert node["publish"]["allow"][:2] == ["edge.d1.n1.alert", "edge.d1.n1.health"]
    assert "edge.d1.*.decision" not in node["publish"]["allow"]  # a node cannot decide
    with pytest.raises(ConfigError):
        authorization([NodeAccount("n.1", "d1", "n", "p")], [])


def test_fleet_example_configs_load() -> None:
    from edge.config import load_config
    from edge.hub.config import load_hub_config

    repo = Path(__file__).resolve().parents[2]
    hub = load_hub_config(repo / "config" / "fleet-hub.example.toml")
    assert hub.transport == "nats" and hub.nats.deployments == ["north", "south"]
    node = load_config(repo / "config" / "fleet-node.example.toml")
    assert node.alerts.transport == "nats" and node.alerts.nats.tls_ca
    assert load_config(None).alerts.transport == "zmq"  # the default stays ZeroMQ
    with pytest.raises(ConfigError, match="nats.deployments"):
        hub_config(repo, transport="nats")


def test_control_room_hub_shows_each_deployment(tmp_path: Path, nats_bin: str) -> None:
    fabric = Fabric(tmp_path / "nats", 1).start()
    hub = None
    senders: list[NatsSender] = []
    try:
        hub = nats_hub(tmp_path, fabric, "room", deployments=["north", "south"])
        n1 = sender(tmp_path, fabric.settings(), "n1", deployment="north")
        s1 = sender(tmp_path, fabric.settings(), "s1", deployment="south")
        senders += [n1, s1]
        for i in range(3):
            n1.send(alert("n1", i, "north"), JPEG)
        s1.send(alert("s1", 9, "south"), JPEG)
        wait_for(lambda: len(hub.store.alert_ids()) == 4, 20, "alerts of both deployments")
        c = hub.client()
        assert c.get("/readyz").status_code == 200  # nats_fabric_connected, store_open

        def overview() -> dict[str, Any]:
            return {d["deployment_id"]: d for d in c.get("/api/deployments").json()["deployments"]}

        wait_for(lambda: all(d["nodes_online"] == 1 for d in overview().values()), 20,
                 "a node online in each deployment")
        got = overview()
        assert (got["north"]["alerts"], got["south"]["alerts"]) == (3, 1)
        assert [n["node_id"] for n in got["south"]["node_status"]] == ["s1"]
        south = c.get("/api/alerts?deployment=south").json()["alerts"]
        assert [a["node_id"] for a in south] == ["s1"]
        c.close()
    finally:
        for x in senders:
            x.close(timeout=0)
        if hub is not None:
            hub.close()
        fabric.stop()
