"""A decision can be undone for ui.undo_s, then it is final: counted, sent to the node's audit
log, kept across a hub restart. An optional outcome from a fixed list follows a final
decision into the audit log and the deployment record. API refusals are clear and counted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.audit import AuditLog, read_records, verify
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

JPEG = synthetic_jpeg(5, 128)
H = {"X-Edge-Request": "1"}


def _alert(h: RunningHub, tmp: Path, audit: AuditLog | None = None, n: int = 1
           ) -> tuple[ZmqSender, list[str]]:
    s = ZmqSender(tmp / "o.sqlite", h.endpoint, "node-1", None, audit, camera="Gate",
                  heartbeat_interval=0.2).start()
    ids = []
    for i in range(n):
        a = synthetic_alert("node-1", "Gate", i)
        s.send(a, JPEG)
        ids.append(a.alert_id)
    wait_for(lambda: s.pending() == 0, what="delivery")
    return s, ids


def test_undo_within_the_window_then_final_and_outcome_reach_the_node(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path, **{"ui.undo_s": 1.5}), officers=("pc1", "pc2"))
    audit = AuditLog(tmp_path / "audit.jsonl")
    s, (aid,) = _alert(h, tmp_path, audit)
    reg = h.hub.metrics.registry
    try:
        c, other = h.client("pc1"), h.client("pc2")
        r = c.post(f"/api/alerts/{aid}/decision", json={"decision": "reject"}, headers=H)
        card = r.json()["card"]
        assert r.status_code == 200 and card["undo_until"] > time.time() and not card["finalized"]
        assert c.get(f"/api/alerts/{aid}/probe.jpg").status_code == 200  # not purged yet
        r = other.post(f"/api/alerts/{aid}/undo", json={}, headers=H)
        assert r.status_code == 409 and r.json()["status"] == "not_yours"
        r = c.post(f"/api/alerts/{aid}/undo", json={}, headers=H)
        assert r.status_code == 200 and r.json()["card"]["decision"] is None
        assert metric(reg, "edge_hub_decisions_total", {"decision": "reject"}) == 0
        r = c.post(f"/api/alerts/{aid}/decision", json={"decision": "confirm"}, headers=H)
        assert r.status_code == 200
        r = c.post(f"/api/alerts/{aid}/outcome", json={"outcome": "arrested"}, headers=H)
        assert r.status_code == 409 and r.json()["status"] == "not_final"
        wait_for(lambda: h.store.get_alert(aid)["finalized"], timeout=5, what="final")
        r = c.post(f"/api/alerts/{aid}/undo", json={}, headers=H)
        assert r.status_code == 409 and "too late" in r.json()["detail"]
        assert metric(reg, "edge_hub_decisions_total", {"decision": "confirm"}) == 1
        recs = wait_for(lambda: [x for x in read_records(audit.path) if x["kind"] == "decision"],
                        what="decision in the node's audit log")
        assert [x["data"]["decision"] for x in recs] == ["confirm"]  # the undone one never went
        assert c.post(f"/api/alerts/{aid}/outcome", json={"outcome": "free text here"},
                      headers=H).status_code == 400
        r = c.post(f"/api/alerts/{aid}/outcome", json={"outcome": "wrong_person"}, headers=H)
        assert r.status_code == 200 and r.json()["card"]["outcome"] == "wrong_person"
        r = c.post(f"/api/alerts/{aid}/outcome", json={"outcome": "arrested"}, headers=H)
        assert r.status_code == 409 and r.json()["status"] == "already"
        assert c.post(f"/api/alerts/{aid}/outcome", json={"outcome": "arrested"}
                      ).status_code == 403  # CSRF header missing
        out = wait_for(lambda: [x for x in read_records(audit.path)
                                if x["kind"] == "decision.outcome"], what="outcome at the node")
        assert out[0]["data"]["outcome"] == "wrong_person" and out[0]["data"]["alert_id"] == aid
        wait_for(lambda: not h.store.undelivered_outcomes(), what="outcome acked")
        rec = h.store.deployment_record()
        assert rec["totals"]["confirmed"] == 1 and rec["totals"]["rejected"] == 0
        assert rec["totals"]["outcomes"] == {"wrong_person": 1}
        assert metric(reg, "edge_hub_outcomes_total", {"outcome": "wrong_person"}) == 1
    finally:
        s.close(0)
        audit.close()
        h.close()
    assert verify(tmp_path / "audit.jsonl").ok


def test_a_pending_decision_survives_a_hub_restart_and_becomes_final(tmp_path: Path) -> None:
    cfg = hub_config(tmp_path, **{"ui.undo_s": 2})
    h = RunningHub(cfg)
    s, (aid,) = _alert(h, tmp_path)
    s.close(0)
    assert h.hub.decide(aid, "no_action", "pc1")[0] == "ok"
    h.close()
    assert h.hub.store is None
    h2 = RunningHub(cfg)
    try:
        assert not h2.store.get_alert(aid)["finalized"]
        wait_for(lambda: h2.store.get_alert(aid)["finalized"], timeout=6, what="final")
        assert h2.store.deployment_record()["totals"]["no_action"] == 1
    finally:
        h2.close()


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path, **{"ui.undo_s": 5}))
    try:
        c = h.client()
        assert c.post(f"/api/alerts/{'f' * 32}/undo", json={}, headers=H).status_code == 404
        assert c.post("/api/alerts/nope/outcome", json={"outcome": "other"},
                      headers=H).status_code == 404
        assert c.post(f"/api/alerts/{'f' * 32}/outcome", content=b"[1]",
                      headers=H).status_code == 400
        assert c.post(f"/api/alerts/{'f' * 32}/undo", content=b"{x", headers=H).status_code == 400
        me = c.get("/api/me").json()
        assert me["undo_s"] == 5 and "arrested" in me["outcomes"]
    finally:
        h.close()


def test_export_record_json_csv_html_with_deployment_facts(tmp_path: Path) -> None:
    import csv
    import io
    import json
    import subprocess
    import sys

    from edge.link.schema import DeploymentInfo

    cfg = hub_config(tmp_path)
    h = RunningHub(cfg)
    dep = DeploymentInfo("OP-42", "Insp. A. Smith", 1_800_000_000.0, 1_800_036_000.0, 12)
    s = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-1", None, None, camera="Gate",
                  heartbeat_interval=0.1, deployment=dep).start()
    try:
        s.set_counts({"faces_seen": 4000})
        ids = []
        for i in range(4):
            a = synthetic_alert("node-1", "Gate", i, deployment_id="OP-42")
            s.send(a, JPEG)
            ids.append(a.alert_id)
        wait_for(lambda: s.pending() == 0, what="delivery")
        wait_for(lambda: h.store.deployment_record()["totals"]["faces_seen"] == 4000
                 and h.store.deployment_record()["deployments"], what="heartbeat facts")
        for aid, d in zip(ids, ["confirm", "reject", "reject", "no_action"], strict=True):
            assert h.hub.decide(aid, d, "pc1")[0] == "ok"
        assert h.hub.set_outcome(ids[0], "arrested", "pc1")[0] == "ok"
    finally:
        s.close(0)
        h.close()
    toml = tmp_path / "hub.toml"
    toml.write_text(f'[store]\npath = "{cfg.store.path}"\nofficers_file = '
                    f'"{cfg.store.officers_file}"\n')
    outs = [tmp_path / "rec.json", tmp_path / "rec.csv", tmp_path / "rec.html"]
    r = subprocess.run([sys.executable, "-m", "edge.cli", "hub", "--config", str(toml),
                        "export-record", *sum((["--out", str(o)] for o in outs), [])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rec = json.loads(outs[0].read_text())
    t = rec["totals"]
    assert (t["alerts"], t["confirmed"], t["rejected"], t["no_action"]) == (4, 1, 2, 1)
    assert t["outcomes"] == {"arrested": 1} and t["false_alert_one_in"] == 2000
    assert t["false_alert_rate"] == pytest.approx(2 / 4000) and t["false_alert_share"] == 0.5
    (d,) = rec["deployments"]
    assert (d["deployment_id"], d["authorising_officer"], d["watchlist_size"]) == \
        ("OP-42", "Insp. A. Smith", 12)
    assert rec["window"] == {"start": 1_800_000_000.0, "end": 1_800_036_000.0}
    rows = list(csv.DictReader(io.StringIO(outs[1].read_text())))
    assert [x["node_id"] for x in rows] == ["node-1", "TOTAL"]
    assert rows[-1]["rejected"] == "2" and rows[-1]["outcome_arrested"] == "1"
    page = outs[2].read_text()
    assert "OP-42" in page and "Insp. A. Smith" in page and "1 in 2,000" in page
    assert 'src="data:image/png;base64,' in page
    for text in (outs[0].read_text(), page):
        assert "Test Subject" not in text  # nobody's name
    bad = subprocess.run([sys.executable, "-m", "edge.cli", "hub", "--config", str(toml),
                          "export-record", "--out", str(tmp_path / "rec.pdf")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and ".json, .csv or .html" in bad.stderr
