"""The tablet app's layout in real headless Chromium: no horizontal scroll from phone to
tablet width, alerts grouped by subject (oldest open first) with a camera filter, tap-to-zoom
on both images, and the score shown as a similarity with its threshold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.hub.synthetic import synthetic_alert
from edge.link.zmq_sender import ZmqSender
from tests.hub.test_tablet_browser import ARTIFACTS, browser, face_jpegs, sign_in  # noqa: F401
from tests.hub_helpers import RunningHub, hub_config, wait_for

pytestmark = pytest.mark.browser

WIDTHS = (360, 390, 768, 1024)

# (subject id, name, camera) per alert, in sending order: Beta is first seen, then Alpha, then
# Gamma; the last alerts are Alpha, Beta, Gamma, so newest-first would give the reverse.
FIRST = [("WL-B", "Beta Person", "North gate"), ("WL-A", "Alpha Person", "South yard"),
         ("WL-C", "Gamma Person", "South yard")]
MIDDLE = [("WL-A", "Alpha Person", "North gate"), ("WL-B", "Beta Person", "North gate"),
          ("WL-C", "Gamma Person", "South yard"), ("WL-A", "Alpha Person", "South yard")] * 3 + [
    ("WL-B", "Beta Person", "North gate"), ("WL-C", "Gamma Person", "South yard")]
LAST = [("WL-A", "Alpha Person", "North gate"), ("WL-B", "Beta Person", "North gate"),
        ("WL-C", "Gamma Person", "South yard")]
PLAN = FIRST + MIDDLE + LAST

# every element inside a card: its box within the card's box (1 px for rounding)
INSIDE_CARDS = """() => {
  const bad = [];
  for (const card of document.querySelectorAll('#open article')) {
    const c = card.getBoundingClientRect();
    if (!c.width) continue;  // folded
    for (const e of card.querySelectorAll('button, img, .img, dd, .name')) {
      const r = e.getBoundingClientRect();
      if (!r.width) continue;
      if (r.left < c.left - 1 || r.right > c.right + 1)
        bad.push(card.dataset.alertId + ' ' + e.className + ' ' + r.left + '-' + r.right +
                 ' not in ' + c.left + '-' + c.right);
    }
  }
  return bad;
}"""

# WCAG contrast of the text this layout adds against the background it sits on
CONTRAST = """() => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const bg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = {};
  for (const sel of ['.group-name', '.group-count', '.group-since', '.group-more',
                     '.tools label', '.tools select', '.score', '.zoom-hint']) {
    const el = document.querySelector(sel);
    if (!el) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    out[sel] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return out;
}"""


def test_layout_groups_filter_zoom_and_similarity(tmp_path: Path, browser) -> None:  # noqa: F811
    assert len(PLAN) == 20
    h = RunningHub(hub_config(tmp_path))
    sender = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-1", None, None,
                       camera="North gate").start()
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = ctx.new_page()
    try:
        sign_in(page, h.url)
        wait_for(lambda: sender.hub_connected, what="node connected")
        probe, ref = face_jpegs()
        for i, (sid, name, cam) in enumerate(PLAN):
            sender.send(synthetic_alert("node-1", cam, i, subject_id=sid, display_name=name,
                                        score=0.734, threshold=0.6), probe, ref)
            if i < len(FIRST):  # the first of each subject lands strictly in this order
                wait_for(lambda: sender.pending() == 0, what="first alerts acked")
        wait_for(lambda: page.locator("#open article").count() == 20, what="20 open cards")
        wait_for(lambda: page.locator("#open article.lead[data-images-at]").count() == 3,
                 what="newest photo pairs loaded")

        # three groups, oldest open first, each with its count and newest alert in front
        groups = page.locator("#open section.group")
        assert groups.count() == 3
        assert [groups.nth(i).get_attribute("data-subject") for i in range(3)] == [
            "WL-B", "WL-A", "WL-C"]
        want = {s: sum(1 for p in PLAN if p[0] == s) for s in ("WL-A", "WL-B", "WL-C")}
        for i in range(3):
            g = groups.nth(i)
            sid = g.get_attribute("data-subject")
            assert g.get_attribute("data-count") == str(want[sid])
            assert f"{want[sid]} open" in g.locator(".group-count").inner_text()
            assert g.locator("article:visible").count() == 1  # earlier ones folded
        assert page.locator("#open-count").inner_text() == "20 open"

        # the score reads as a similarity with the alert threshold, not as a percentage
        score = groups.first.locator("article.lead .score").inner_text()
        assert re.fullmatch(r"similarity 0\.73 \(alerts at 0\.60\)", score), score
        assert "%" not in groups.first.inner_text()

        # fits without horizontal scroll at phone and tablet widths, Sign out on screen,
        # buttons and images inside their card (folded and unfolded)
        groups.first.locator(".group-more").tap()
        assert groups.first.locator("article:visible").count() == want["WL-B"]
        ARTIFACTS.mkdir(exist_ok=True)
        for w in WIDTHS:
            page.set_viewport_size({"width": w, "height": 800})
            page.wait_for_timeout(100)
            sw = page.evaluate("document.documentElement.scrollWidth")
            assert sw <= page.evaluate("window.innerWidth"), (w, sw)
            box = page.locator("button.signout").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= w, (w, box)
            assert page.locator("button.signout").is_visible()
            assert page.evaluate(INSIDE_CARDS) == [], w
            page.screenshot(path=str(ARTIFACTS / f"tablet_layout_{w}.png"))
        groups.first.locator(".group-more").tap()
        page.set_viewport_size({"width": 1024, "height": 768})

        # the text this layout adds is readable (WCAG AA, >= 4.5:1)
        ratios = page.evaluate(CONTRAST)
        assert len(ratios) >= 6 and all(r >= 4.5 for r in ratios.values()), ratios

        # camera filter: lists the cameras present; one camera shows only its alerts
        opts = page.locator("#camera-filter option").all_inner_texts()
        assert opts == ["All cameras", "North gate", "South yard"], opts
        page.select_option("#camera-filter", "South yard")
        south = [p for p in PLAN if p[2] == "South yard"]
        wait_for(lambda: page.locator("#open article").count() == len(south), what="filtered")
        cams = page.locator("#open article .camera").all_inner_texts()
        assert cams and all(c.startswith("South yard") for c in cams), cams
        assert [groups.nth(i).get_attribute("data-subject") for i in range(groups.count())] == [
            "WL-A", "WL-C"]  # Beta was only seen at North gate
        page.select_option("#camera-filter", "")
        wait_for(lambda: page.locator("#open article").count() == 20, what="filter cleared")

        # tap-to-zoom on the probe and on the reference; tap again or Escape closes
        zoom = page.locator("#zoom")
        assert not zoom.is_visible()
        lead = groups.first.locator("article.lead")
        for kind, close in (("probe", "tap"), ("reference", "escape")):
            src = lead.locator(f"img.{kind}").get_attribute("src")
            lead.locator(f"img.{kind}").tap()
            wait_for(zoom.is_visible, timeout=5, what=f"{kind} enlarged")
            assert zoom.locator("img").get_attribute("src") == src
            big = zoom.locator("img").bounding_box()
            small = lead.locator(f"img.{kind}").bounding_box()
            assert big and small and big["width"] > 1.5 * small["width"], (big, small)
            if kind == "probe":
                page.screenshot(path=str(ARTIFACTS / "tablet_zoom.png"))
            if close == "tap":
                zoom.tap()
            else:
                page.keyboard.press("Escape")
            wait_for(lambda: not zoom.is_visible(), timeout=5, what="zoom closed")

        # deciding the front alert brings the subject's next one forward, count drops
        lead.locator("button.reject").tap()
        wait_for(lambda: groups.first.get_attribute("data-count") == str(want["WL-B"] - 1),
                 what="count after decision")
        assert groups.first.locator("article.lead").count() == 1
        assert page.locator("#open-count").inner_text() == "19 open"
    finally:
        ctx.close()
        sender.close(0)
        h.close()
