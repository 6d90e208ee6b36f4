"""Camera health on the hub: a heartbeat's down camera shows down, then up, never "up" once its
node is lost; ages grow with time; transitions logged once and counted; hostile camera values
refused with one line while the hub goes on."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
import zmq

from edge.hub.cameras import CameraBoard
from edge.hub.metrics import HubMetrics
from edge.link.schema import HEARTBEAT, HEARTBEAT_ACK, CameraHealth, Heartbeat
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

RUN = "c" * 32
DOWN = CameraHealth("entrance-a", "Entrance A", "down", 0.0, 12.0, 3, 1520, "RTSP read timeout")
UP = replace(DOWN, state="up", fps=24.5, last_frame_age_s=0.04, reason="")
EXIT = CameraHealth("exit-b", "", "up", 25.0, 0.02, 0, 900)


def _camera(h: RunningHub, node: str, name: str) -> dict | None:
    for n in h.hub.node_status():
        if n["node_id"] == node:
            for c in n["cameras"]:
                if c["name"] == name:
                    return c
    return None


def test_down_then_up_then_node_lost(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, "edge.hub")
    h = RunningHub(hub_config(tmp_path, **{"ui.node_lost_after_s": 2}))
    reg = h.hub.metrics.registry
    health = [DOWN, EXIT]
    s = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "n1", None, None, camera="Entrance",
                  heartbeat_interval=0.2, health=lambda: list(health)).start()
    try:
        c = wait_for(lambda: _camera(h, "n1", "entrance-a"), what="camera on the hub")
        assert (c["state"], c["label"], c["reason"]) == ("down", "Entrance A", "RTSP read timeout")
        assert c["last_frame_age_s"] >= 12.0 and c["reconnects"] == 3 and c["fps"] == 0.0
        assert c["received_at"] <= time.time()
        assert _camera(h, "n1", "exit-b")["label"] == "exit-b"  # no label: the name is shown
        # what the tablet reads over HTTP carries the same
        nodes = h.client().get("/api/nodes").json()["nodes"]
        (n,) = [n for n in nodes if n["node_id"] == "n1"]
        assert n["online"] and [c["state"] for c in n["cameras"]] == ["down", "up"]
        labels = {"node_id": "n1", "camera": "entrance-a"}
        wait_for(lambda: metric(reg, "edge_hub_cameras", {"state": "down"}) == 1, what="gauge")
        assert metric(reg, "edge_hub_camera_up", labels) == 0
        assert reg.get_sample_value("edge_hub_camera_up", labels) is not None
        assert metric(reg, "edge_hub_camera_up", {"node_id": "n1", "camera": "exit-b"}) == 1

        health[0] = UP
        wait_for(lambda: _camera(h, "n1", "entrance-a")["state"] == "up", what="camera up")
        wait_for(lambda: metric(reg, "edge_hub_camera_up", labels) == 1, what="up gauge")
        assert metric(reg, "edge_hub_cameras", {"state": "up"}) == 2
        assert metric(reg, "edge_hub_cameras", {"state": "down"}) == 0
    finally:
        s.close(0, reason=None)  # gone without a stop heartbeat, as a crash
    c = wait_for(lambda: (c := _camera(h, "n1", "entrance-a")) and c["state"] != "up" and c,
                 timeout=6, what="camera not up once its node is lost")
    assert c["state"] == "unknown" and c["reported_state"] == "up"
    assert "node lost" in c["reason"]
    age = c["last_frame_age_s"]
    time.sleep(1.1)
    assert _camera(h, "n1", "entrance-a")["last_frame_age_s"] >= age + 1.0  # keeps growing
    wait_for(lambda: metric(reg, "edge_hub_cameras", {"state": "unknown"}) == 2, what="unknown")
    assert metric(reg, "edge_hub_camera_up", labels) == 0
    h.close()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("edge.hub")]
    assert lines.count("camera entrance-a on node n1 down: no frames for 12 s; "
                       "RTSP read timeout") == 1, lines
    assert lines.count("camera entrance-a on node n1 up again") == 1, lines
    assert sum(line.startswith("node n1 lost") for line in lines) == 1, lines


def test_board_ages_grow_left_out_cameras_unknown_new_run_forgets() -> None:
    b = CameraBoard(HubMetrics())
    assert b.update("n1", RUN, [DOWN, EXIT], now=100.0)
    (c, e) = b.cameras("n1", True, 100.0, now=103.5)
    assert c["last_frame_age_s"] == 15.5 and e["last_frame_age_s"] == 3.5
    assert not b.update("n1", RUN, [DOWN, EXIT], now=101.0)  # nothing new for the tablet
    # same run, exit-b left out (e.g. the node's health provider lost it): unknown, not up
    assert b.update("n1", RUN, [DOWN], now=102.0)
    (_, e) = b.cameras("n1", True, 102.0, now=102.0)
    assert e["state"] == "unknown" and e["reported_state"] == "up"
    # a node restart (new run) without exit-b: it is no longer part of that node
    assert b.update("n1", "d" * 32, [UP], now=103.0)
    assert [c["name"] for c in b.cameras("n1", True, 103.0, now=103.0)] == ["entrance-a"]
    # the node is lost: unknown, whatever it said last
    (c,) = b.cameras("n1", False, 103.0, now=110.0)
    assert c["state"] == "unknown" and c["reason"] == "camera node lost (not heard for 7 s)"
    assert b.cameras("other", True, None, now=1.0) == []


def test_board_metrics_forget_removed_cameras() -> None:
    m = HubMetrics()
    b = CameraBoard(m)
    b.update("n1", RUN, [DOWN, EXIT], now=1.0)
    b.update_metrics(lambda n: True)
    assert m.registry.get_sample_value("edge_hub_camera_up",
                                       {"node_id": "n1", "camera": "exit-b"}) == 1
    b.update("n1", "d" * 32, [DOWN], now=2.0)
    b.update_metrics(lambda n: True)
    assert m.registry.get_sample_value("edge_hub_camera_up",
                                       {"node_id": "n1", "camera": "exit-b"}) is None
    assert m.registry.get_sample_value("edge_hub_cameras", {"state": "down"}) == 1
    assert m.registry.get_sample_value("edge_hub_cameras", {"state": "failed"}) == 0


def test_hostile_cameras_refused_one_line_hub_goes_on(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, "edge.hub")
    h = RunningHub(hub_config(tmp_path))
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    base = {"node_id": "n-evil", "run_id": RUN, "sent_at": 1.0}
    hostile = [
        {"a": 1},
        [{"name": "x" * 10000, "label": "", "state": "up", "fps": 1, "last_frame_age_s": 0,
          "reconnects": 0, "frames": 0}],
        [{"name": "c", "label": "", "state": "up", "fps": 1, "last_frame_age_s": 0,
          "reconnects": 0, "frames": 0, "embedding": [0.5] * 100}],
        [[[[[[]]]]]] * 40,
        [None],
    ]
    try:
        d.connect(h.endpoint)
        for cams in hostile:
            d.send_multipart([HEARTBEAT, json.dumps({**base, "cameras": cams}).encode()])
        d.send_multipart([HEARTBEAT, b'{"node_id":"n-evil","run_id":"' + RUN.encode()
                          + b'","sent_at":1,"cameras":[{"name":"c","fps":1e999}]}'])
        good = Heartbeat("n-evil", "", RUN, 2.0, 0, {}, (DOWN,)).to_frames()
        d.send_multipart(good)
        assert d.poll(10000), "no heartbeat-ack after the hostile ones"
        assert d.recv_multipart()[0] == HEARTBEAT_ACK
        reg = h.hub.metrics.registry
        assert metric(reg, "edge_hub_messages_refused_total", {"reason": "field"}) == 6
        assert _camera(h, "n-evil", "entrance-a")["state"] == "down"
        assert _camera(h, "n-evil", "c") is None
    finally:
        d.close(0)
        ctx.term()
        h.close()
    refused = [r.getMessage() for r in caplog.records if "refused heartbeat" in r.getMessage()]
    assert refused == ["refused heartbeat from a node: bad cameras in heartbeat"]
    assert "x" * 100 not in caplog.text and "embedding" not in caplog.text
