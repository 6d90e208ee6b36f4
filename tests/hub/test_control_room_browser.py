"""The tablet of a hub serving two deployments (a control room on the NATS fabric), in a real
headless Chromium: one line per deployment with its alerts, nodes and camera health, and a
selector that shows one deployment's alerts and camera banners only."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.hub.synthetic import synthetic_alert
from edge.link.nats_sender import NatsSender
from edge.link.schema import CameraHealth
from tests.hub.test_tablet_browser import ARTIFACTS, browser, face_jpegs, sign_in  # noqa: F401
from tests.hub_helpers import RunningHub, hub_config, wait_for
from tests.nats_helpers import Fabric, need_nats_server

pytestmark = pytest.mark.browser


def test_control_room_tablet_per_deployment(tmp_path: Path, browser) -> None:  # noqa: F811
    need_nats_server()
    fabric = Fabric(tmp_path / "nats", 1).start()
    hub = None
    senders: list[NatsSender] = []
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = ctx.new_page()
    try:
        hub = RunningHub(hub_config(tmp_path / "room", **{
            "transport": "nats", "nats.servers": list(fabric.urls), "nats.hub_name": "room",
            "nats.deployments": ["north", "south"], "ui.undo_s": 0}))
        gate = CameraHealth("gate", "North gate", "up", 25.0, 0.04, 0, 900)
        yard = CameraHealth("yard", "South yard", "down", 0.0, 9.0, 3, 400, "RTSP read timeout")
        for node, dep, cam in (("n1", "north", gate), ("s1", "south", yard)):
            senders.append(NatsSender(
                tmp_path / f"{node}.outbox.sqlite", fabric.settings(), node, dep,
                camera=cam.label, ack_timeout=1.0, max_backoff=1.0, heartbeat_interval=0.3,
                health=lambda cam=cam: [cam]).start())
        probe, ref = face_jpegs()
        ids: dict[str, set[str]] = {"north": set(), "south": set()}
        for i, (k, dep) in enumerate([(0, "north")] * 3 + [(1, "south")] * 2):
            node = ("n1", "s1")[k]
            a = synthetic_alert(node, ("North gate", "South yard")[k], i, deployment_id=dep,
                                display_name=f"{dep.title()} Subject {i}")
            senders[k].send(a, probe, ref)
            ids[dep].add(a.alert_id)
        wait_for(lambda: len(hub.store.alert_ids()) == 5, 20, "both deployments' alerts")

        sign_in(page, hub.url)
        north = page.locator('#deployments .dep[data-deployment="north"]')
        south = page.locator('#deployments .dep[data-deployment="south"]')
        wait_for(lambda: south.count() == 1 and "nodes 1/1 online" in south.inner_text()
                 and "nodes 1/1 online" in north.inner_text(), 15, "a line per deployment")
        wait_for(lambda: "3 open · 3 alerts" in north.inner_text()
                 and "2 open · 2 alerts" in south.inner_text(), 10, "alert counts")
        assert "cameras: 1 up" in north.inner_text()
        assert "cameras: 1 down" in south.inner_text()
        assert page.locator("#deployment-filter").is_visible()

        def shown() -> set[str]:
            return {x for x in page.locator("#open article").evaluate_all(
                "els => els.map(e => e.dataset.alertId)")}

        wait_for(lambda: shown() == ids["north"] | ids["south"], 10, "all alerts shown")
        banner = page.locator('#banners .banner.camera[data-camera="yard"]')
        banner.wait_for(timeout=10000)
        assert banner.get_attribute("data-deployment") == "south"
        assert banner.inner_text().startswith("south · Camera down: South yard")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tablet_control_room.png"))

        # north only: its alerts, no banner of south's camera
        page.select_option("#deployment-filter", "north")
        wait_for(lambda: shown() == ids["north"], 10, "north's alerts only")
        wait_for(lambda: page.locator("#open-count").inner_text() == "3 open", 5,
                 "the header counts north's open alerts only")
        assert page.locator("#banners .banner.camera").count() == 0
        assert north.locator(".dep-pick").get_attribute("aria-pressed") == "true"
        # south by its button: its alerts and its camera's banner
        south.locator(".dep-pick").click()
        wait_for(lambda: shown() == ids["south"], 10, "south's alerts only")
        assert page.locator("#open-count").inner_text() == "2 open"
        assert page.locator("#deployment-filter").input_value() == "south"
        banner.wait_for(timeout=10000)
        page.screenshot(path=str(ARTIFACTS / "tablet_control_room_south.png"))
        # pressed again: all deployments
        south.locator(".dep-pick").click()
        wait_for(lambda: shown() == ids["north"] | ids["south"], 10, "all alerts again")
        wait_for(lambda: page.locator("#open-count").inner_text() == "5 open", 5, "all open")
        assert page.locator("#deployment-filter").input_value() == ""
        # a portrait tablet: the deployment lines wrap, nothing overflows sideways
        page.set_viewport_size({"width": 768, "height": 1024})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        ctx.close()
        for s in senders:
            s.close(timeout=0)
        if hub is not None:
            hub.close()
        fabric.stop()
