"""The officer app reaches an officer who is not looking: installable (manifest + service
worker), a chime and a system notification on a new alert once allowed, the screen kept
awake; a refused permission is a clear note and nothing else breaks; the service worker
caches the app shell only, never alert data or face images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.hub.synthetic import synthetic_alert
from edge.link.zmq_sender import ZmqSender
from tests.hub.test_tablet_browser import browser, face_jpegs, sign_in  # noqa: F401
from tests.hub_helpers import RunningHub, hub_config, wait_for

pytestmark = pytest.mark.browser

# Before the app's scripts: count what the app asks of the browser (sound, wake lock,
# notifications), without depending on what headless Chromium can actually play or show.
HOOKS = """
window.__edge = { tones: 0, wake: 0, shown: [] };
const RealCtx = window.AudioContext;
window.AudioContext = function () {
  const ctx = new RealCtx();
  const osc = ctx.createOscillator.bind(ctx);
  ctx.createOscillator = () => { window.__edge.tones += 1; return osc(); };
  return ctx;
};
Object.defineProperty(navigator, 'wakeLock', { configurable: true, value: {
  request: async () => { window.__edge.wake += 1;
    return { addEventListener() {}, release: async () => {} }; } } });
if (window.ServiceWorkerRegistration) {
  ServiceWorkerRegistration.prototype.showNotification = async function (title, opts) {
    window.__edge.shown.push({ title, body: (opts || {}).body, tag: (opts || {}).tag });
  };
}
"""


def _setup(tmp_path: Path):
    h = RunningHub(hub_config(tmp_path))
    s = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-p", None, None, camera="Gate").start()
    return h, s


def test_installable_notifies_chimes_keeps_awake_caches_no_alert_data(tmp_path: Path,
                                                                      browser) -> None:  # noqa: F811
    h, s = _setup(tmp_path)
    ctx = browser.new_context(viewport={"width": 768, "height": 1024}, has_touch=True,
                              bypass_csp=True)
    ctx.grant_permissions(["notifications"], origin=h.url)
    ctx.add_init_script(HOOKS)
    page = ctx.new_page()
    try:
        sign_in(page, h.url)
        manifest = page.evaluate("fetch('/manifest.webmanifest').then((r) => r.json())")
        assert manifest["display"] == "standalone" and manifest["start_url"] == "/"
        for icon in manifest["icons"]:
            r = page.request.get(h.url + icon["src"])
            assert r.status == 200 and r.headers["content-type"] == "image/png"
        scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
        assert scope == h.url + "/"
        assert page.locator("#enable-alerts").is_hidden()  # already granted: nothing to ask
        assert page.evaluate("window.__edge.wake") >= 1  # the screen is kept on
        probe, ref = face_jpegs()
        a = synthetic_alert("node-p", "Gate", 1, display_name="Secret Name")
        s.send(a, probe, ref)
        page.wait_for_selector(f'article[data-alert-id="{a.alert_id}"]', timeout=10000)
        wait_for(lambda: page.evaluate("window.__edge.shown.length") == 1, what="notification")
        (shown,) = page.evaluate("window.__edge.shown")
        assert shown["title"] == "New watchlist alert" and "Gate" in shown["body"]
        assert "Secret Name" not in json.dumps(shown)  # a lock screen is public
        assert page.evaluate("window.__edge.tones") >= 2  # the chime played
        # the service worker's cache: the shell only, never /api/ or an image of a face
        c = page.request.get(h.url + f"/api/alerts/{a.alert_id}/probe.jpg")
        assert c.status == 200
        cached = page.evaluate("""caches.keys().then((ks) => Promise.all(ks.map((k) =>
            caches.open(k).then((c) => c.keys()).then((rs) => rs.map((r) => r.url))))
            ).then((l) => l.flat())""")
        assert cached and all("/api/" not in u and not u.endswith(".jpg") for u in cached), cached
        assert any(u.endswith("/static/app.js") for u in cached)
    finally:
        ctx.close()
        s.close(0)
        h.close()


def test_refused_permission_is_a_note_and_alerts_still_arrive(tmp_path: Path,
                                                             browser) -> None:  # noqa: F811
    h, s = _setup(tmp_path)
    ctx = browser.new_context(viewport={"width": 360, "height": 800}, has_touch=True,
                              bypass_csp=True)
    ctx.add_init_script(HOOKS + """
      Object.defineProperty(Notification, 'permission', { get: () => window.__perm || 'default' });
      Notification.requestPermission = async () => { window.__perm = 'denied'; return 'denied'; };
    """)
    page = ctx.new_page()
    try:
        sign_in(page, h.url)
        page.wait_for_selector("#enable-alerts", state="visible", timeout=5000)
        page.click("#enable-alerts")
        page.wait_for_selector("#notify-notes", state="visible", timeout=5000)
        note = page.locator("#notify-notes").inner_text()
        assert note.startswith("Notifications are blocked for this site") and "\n" not in note
        assert page.locator("#enable-alerts").is_hidden()
        probe, ref = face_jpegs()
        a = synthetic_alert("node-p", "Gate", 2)
        s.send(a, probe, ref)
        page.wait_for_selector(f'article[data-alert-id="{a.alert_id}"]', timeout=10000)
        assert page.evaluate("window.__edge.shown.length") == 0
        assert page.evaluate("window.__edge.tones") >= 2  # the chime still plays in the app
    finally:
        ctx.close()
        s.close(0)
        h.close()
