"""Every visible text on the tablet has a contrast ratio >= 4.5:1 against what is behind it
(WCAG 2 formula, opacity and translucent backgrounds composited), in the dark theme and the
high-contrast sunlight theme, at 360 and 1024 px, with alerts, a decided card, an undo
button, outcome buttons, banners and a notification note on screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.hub.synthetic import synthetic_alert
from edge.link.schema import CameraHealth
from edge.link.zmq_sender import ZmqSender
from tests.hub.test_tablet_browser import ARTIFACTS, browser, face_jpegs, sign_in  # noqa: F401
from tests.hub_helpers import RunningHub, hub_config, wait_for

pytestmark = pytest.mark.browser

CONTRAST_JS = (Path(__file__).with_name("contrast.js")).read_text()


@pytest.mark.parametrize("width", [360, 1024])
def test_all_text_contrast_at_least_4_5(tmp_path: Path, browser, width: int) -> None:  # noqa: F811
    h = RunningHub(hub_config(tmp_path, **{"ui.undo_s": 30, "ui.node_lost_after_s": 1}))
    down = CameraHealth("entrance-a", "Entrance A", "down", 0.0, 12.0, 2, 800, "RTSP read timeout")
    s = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-c", None, None, camera="Gate",
                  heartbeat_interval=0.2, health=lambda: [down]).start()
    gone = ZmqSender(tmp_path / "g.sqlite", h.endpoint, "node-gone", None, None,
                     camera="Yard", heartbeat_interval=0.2).start()
    ctx = browser.new_context(viewport={"width": width, "height": 900}, has_touch=True,
                              bypass_csp=True)  # to switch animations off for a still frame
    page = ctx.new_page()
    try:
        probe, ref = face_jpegs()
        ids = []
        for i in range(4):
            a = synthetic_alert("node-c", "Gate", i, display_name=f"Subject {i % 2}")
            s.send(a, probe, ref)
            ids.append(a.alert_id)
        wait_for(lambda: s.pending() == 0, what="delivery")
        assert h.hub.decide(ids[0], "confirm", "pc1")[0] == "ok"  # pending: an Undo button
        gone.close(0, reason=None)  # a lost node banner
        sign_in(page, h.url)
        page.add_style_tag(content="*, *::before, *::after { animation: none !important; "
                                   "transition: none !important; }")
        page.wait_for_selector("#banners .banner.camera", timeout=10000)
        page.wait_for_selector("#decided button.undo", timeout=10000)
        wait_for(lambda: "Camera node lost" in page.locator("#banners").inner_text(),
                 timeout=10, what="lost banner")
        failures = {}
        for theme in ("dark", "hc"):
            if (theme == "hc") != page.evaluate("document.documentElement.classList.contains('hc')"):
                page.click("#theme-toggle")
            page.evaluate("window.scrollTo(0, 0)")
            rows = page.evaluate(CONTRAST_JS)
            assert len(rows) > 25, rows  # the screen really has content
            bad = sorted({(r[2], r[1], r[0]) for r in rows if r[1] < 4.5})
            if bad:
                failures[theme] = bad
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"tablet_contrast_{theme}_{width}.png"),
                            full_page=True)
        assert not failures, failures
        # the choice is remembered
        page.reload()
        page.wait_for_selector("#hub-state.pill-ok", timeout=10000)
        assert page.evaluate("document.documentElement.classList.contains('hc')")
    finally:
        ctx.close()
        s.close(0)
        gone.close(0)
        h.close()
