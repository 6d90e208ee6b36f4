"""The tablet UI in a real headless Chromium: sign in, live alert, confirm, decision in the
node's audit log, node-lost banner, HTTPS; screenshots at tablet size in artifacts/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.audit import AuditLog, read_records
from edge.hub.synthetic import synthetic_alert
from edge.hub.tls import generate_tls, load_cert, spki_sha256_b64
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import PASSWORD, RunningHub, hub_config, wait_for

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def face_jpegs() -> tuple[bytes, bytes]:
    """(probe, reference) from a photo shipped in insightface's wheel (a public sample)."""
    from edge.node.demo import sample_images_dir

    img = cv2.imread(str(sample_images_dir() / "Tom_Hanks_54745.png"))
    assert img is not None
    ref = cv2.imencode(".jpg", cv2.resize(img, (224, 224)))[1].tobytes()
    # a "live" crop: mirrored, darker, softer, like a street camera
    live = cv2.GaussianBlur(cv2.flip(img, 1), (3, 3), 0)
    live = np.clip(live.astype(np.int16) - 25, 0, 255).astype(np.uint8)
    probe = cv2.imencode(".jpg", cv2.resize(live, (160, 160)), [cv2.IMWRITE_JPEG_QUALITY, 85])[
        1
    ].tobytes()
    return probe, ref


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(page, url: str, officer: str = "pc1") -> None:
    page.goto(url + "/")
    assert page.url.endswith("/login")
    page.fill("#officer", officer)
    page.fill("#password", PASSWORD)
    page.click("#signin")
    page.wait_for_selector("#hub-state.pill-ok", timeout=10000)


def test_sign_in_live_alert_confirm_reaches_node_audit(tmp_path: Path, browser) -> None:
    h = RunningHub(hub_config(tmp_path, **{"ui.node_lost_after_s": 2}))
    audit = AuditLog(tmp_path / "node" / "audit.jsonl")
    sender = ZmqSender(tmp_path / "node" / "outbox.sqlite", h.endpoint, "node-north",
                       None, audit, camera="North gate, cam 2").start()
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = ctx.new_page()
    try:
        # a wrong password first: stays on the sign-in page with an error
        page.goto(h.url + "/")
        page.fill("#officer", "pc1")
        page.fill("#password", "not the password")
        page.click("#signin")
        assert page.locator(".error").is_visible()
        sign_in(page, h.url)
        wait_for(lambda: sender.hub_connected, what="node connected")
        page.wait_for_function("document.querySelector('#banners').textContent === ''",
                               timeout=10000)
        probe, ref = face_jpegs()
        alert = synthetic_alert(
            "node-north", "North gate, cam 2", 1, display_name="Jordan Example",
            category="Wanted: robbery (warrant 24/1187)", score=0.713, threshold=0.45,
            subject_id="WL-0042", captured_at=time.time(), decided_at=time.time(),
        )
        sender.send(alert, probe, ref)
        sel = f'#open article[data-alert-id="{alert.alert_id}"]'
        page.wait_for_selector(sel + "[data-rendered-at][data-images-at]", timeout=10000)
        card = page.locator(sel)
        assert "Jordan Example" in card.inner_text()
        assert "similarity 0.71 (alerts at 0.45)" in card.inner_text()
        assert "North gate, cam 2" in card.inner_text()
        # both images really loaded (naturalWidth > 0)
        assert page.evaluate(
            f"""Array.from(document.querySelectorAll('{sel} img'))
                .every(i => i.complete && i.naturalWidth > 0)"""
        )
        # a replayed alert (node re-send) still shows once
        sender.send(alert, probe, ref)
        wait_for(lambda: sender.pending() == 0, what="replay acked")
        time.sleep(0.3)
        assert page.locator(f'article[data-alert-id="{alert.alert_id}"]').count() == 1
        # buttons are touch-sized
        box = card.locator("button.confirm").bounding_box()
        assert box and box["height"] >= 56 and box["width"] >= 120
        ARTIFACTS.mkdir(exist_ok=True)
        page.wait_for_timeout(1300)  # let the arrival highlight fade for the screenshot
        page.screenshot(path=str(ARTIFACTS / "tablet_alert.png"))

        card.locator("button.confirm").tap()
        page.wait_for_selector(
            f'#decided article[data-alert-id="{alert.alert_id}"] .decision-tag.confirm',
            timeout=10000,
        )

        def decisions() -> list:
            return [r for r in read_records(audit.path) if r["kind"] == "decision"]

        (rec,) = wait_for(decisions, what="decision in the node's audit log")
        assert rec["data"]["alert_id"] == alert.alert_id
        assert rec["data"]["decision"] == "confirm" and rec["data"]["officer"] == "pc1"
        assert page.locator("#open article").count() == 0

        # the node goes away: the tablet says so
        sender.close(0, reason=None)  # vanishes (no stopping heartbeat): "lost"
        page.wait_for_selector("#banners .banner", timeout=10000)
        assert "Camera node lost" in page.locator("#banners").inner_text()
        assert "North gate, cam 2" in page.locator("#banners").inner_text()
        page.screenshot(path=str(ARTIFACTS / "tablet_node_lost.png"))
    finally:
        ctx.close()
        sender.close(0)
        h.close()
        audit.close()


def test_portrait_layout_and_unauthenticated_redirect(tmp_path: Path, browser) -> None:
    h = RunningHub(hub_config(tmp_path))
    ctx = browser.new_context(viewport={"width": 768, "height": 1024}, has_touch=True)
    page = ctx.new_page()
    try:
        for path in ("/", "/static/app.js"):
            resp = page.goto(h.url + path)
            assert page.url.endswith("/login") or (resp is not None and resp.status == 401)
        sign_in(page, h.url)
        with ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-1", None, None,
                       camera="Station") as s:
            probe, ref = face_jpegs()
            a = synthetic_alert("node-1", "Station", 2, display_name="Portrait Check")
            s.send(a, probe, ref)
            page.wait_for_selector(f'article[data-alert-id="{a.alert_id}"][data-images-at]',
                                   timeout=10000)
        # nothing overflows horizontally on a portrait tablet
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # one deployment: no per-deployment lines, no deployment selector; one page of alerts
        assert page.locator("#deployments").is_hidden()
        assert page.locator("#deployment-filter").is_hidden()
        assert page.locator("#load-older").is_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tablet_portrait.png"))
    finally:
        ctx.close()
        h.close()


def test_end_to_end_node_on_video_to_tablet(tmp_path: Path, browser, engine, sample_images
                                            ) -> None:
    """`edge run` on a clip of a real photo -> hub -> tablet -> confirm -> node audit log."""
    import os
    import signal
    import subprocess

    from edge.audit import verify
    from edge.node.demo import _enrolment_photo
    from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
    from edge.watchlist.vault import create_key_file
    from tests.conftest import EDGE, write_clip

    group = cv2.imread(str(sample_images / "t1.jpg"))
    people = sorted(engine.faces(group), key=lambda f: float(f.bbox[0]))
    enrol_img = _enrolment_photo(group, people[1].bbox)
    enrol = engine.faces(enrol_img)[0]
    x, y, w, hh = (int(v) for v in enrol.bbox)
    ref_jpeg = cv2.imencode(".jpg", enrol_img[max(0, y - hh // 3): y + hh + hh // 3,
                                              max(0, x - w // 3): x + w + w // 3])[1].tobytes()
    clip = write_clip(tmp_path / "clip.mp4",
                      [cv2.resize(group[:, 10 * i: 10 * i + 1200], (900, 664)) for i in range(10)])
    key_path = tmp_path / "wl.key"
    key = create_key_file(key_path)
    meta = WatchlistMeta(deployment_id="e2e-test", window_start=0.0, window_end=0.0)
    Watchlist(meta, {"P2": Subject("P2", "Person Two", "Wanted: test warrant")},
              [Entry("P2/1", "P2", "p2.jpg")], enrol.embedding[None],
              references={"P2/1": ref_jpeg}).save(tmp_path / "wl", key)

    h = RunningHub(hub_config(tmp_path, **{"ui.node_lost_after_s": 3}))
    (tmp_path / "node.toml").write_text(
        f'[node]\nnode_id = "node-e2e"\ncamera = "Arcade cam 1"\n'
        f'[alerts]\nendpoint = "{h.endpoint}"\n'
    )
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = ctx.new_page()
    node = None
    try:
        sign_in(page, h.url)
        node = subprocess.Popen(
            [*EDGE, "run", "--source", str(clip), "--watchlist", str(tmp_path / "wl"),
             "--key-file", str(key_path), "--config", str(tmp_path / "node.toml"), "--hold-after-end"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ),
        )
        sel = '#open article[data-alert-id]'
        try:
            deadline = time.monotonic() + 120
            while not page.locator(sel + "[data-images-at]").count():
                assert node.poll() is None and time.monotonic() < deadline
                page.wait_for_timeout(100)
        except AssertionError:
            node.kill()
            out, err = node.communicate(timeout=10)
            raise AssertionError(f"no alert card; node stdout:\n{out}\nstderr:\n{err[-3000:]}"
                                 ) from None
        cards = page.locator(sel)
        assert cards.count() == 1  # one alert per person per track
        text = cards.first.inner_text()
        assert "Person Two" in text and "Arcade cam 1" in text
        assert page.evaluate(
            f"""Array.from(document.querySelectorAll('{sel} img'))
                .every(i => i.complete && i.naturalWidth > 0)"""
        )
        alert_id = cards.first.get_attribute("data-alert-id")
        page.wait_for_timeout(1300)
        page.screenshot(path=str(ARTIFACTS / "tablet_e2e_alert.png"))
        cards.first.locator("button.confirm").tap()
        page.wait_for_selector("#decided .decision-tag.confirm", timeout=10000)
        audit_path = tmp_path / "state" / "audit.jsonl"

        def decision() -> list:
            return [r for r in read_records(audit_path) if r["kind"] == "decision"]

        (rec,) = wait_for(decision, timeout=15, what="decision in the node's audit log")
        assert rec["data"]["alert_id"] == alert_id and rec["data"]["decision"] == "confirm"
        alert_recs = [r for r in read_records(audit_path) if r["kind"] == "alert"]
        assert [r["data"]["alert_id"] for r in alert_recs] == [alert_id]
        node.send_signal(signal.SIGTERM)
        out, err = node.communicate(timeout=30)
        assert node.returncode == 0, err
        assert verify(audit_path).ok
    finally:
        if node is not None and node.poll() is None:
            node.kill()
            node.wait(10)
        ctx.close()
        h.close()


def test_camera_down_banner_sticky_until_camera_up(tmp_path: Path, browser) -> None:
    """A down camera on a node that still heartbeats: a sticky banner with its label and
    reason, kept while the officer scrolls, gone once a heartbeat says it is up again."""
    from edge.link.schema import CameraHealth

    h = RunningHub(hub_config(tmp_path, **{"ui.node_lost_after_s": 3}))
    down = CameraHealth("entrance-a", "Entrance A", "down", 0.0, 12.0, 2, 800,
                        "RTSP read timeout")
    up = CameraHealth("entrance-a", "Entrance A", "up", 25.0, 0.04, 2, 900)
    other = CameraHealth("yard", "Yard", "up", 25.0, 0.04, 0, 900)
    health = [down, other]
    sender = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-cam", None, None,
                       camera="Entrance", heartbeat_interval=0.3,
                       health=lambda: list(health)).start()
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = ctx.new_page()
    sel = '#banners .banner[data-camera="entrance-a"][data-node="node-cam"]'
    try:
        sign_in(page, h.url)
        page.wait_for_selector(sel + '[data-state="down"]', timeout=10000)
        text = page.locator(sel).inner_text()
        m = re.fullmatch(r"Camera down: Entrance A \(no frames for (\d+) s\) — RTSP read timeout",
                         text)
        assert m and int(m.group(1)) >= 12, text  # the age as reported, grown since
        assert page.locator('#banners [data-camera="yard"]').count() == 0  # up: no banner
        assert "Camera node lost" not in page.locator("#banners").inner_text()
        # a long queue of alerts to scroll through: the banner stays at the top
        probe, ref = face_jpegs()
        for i in range(6):
            sender.send(synthetic_alert("node-cam", "Entrance", i, display_name=f"P {i}"),
                        probe, ref)
        # (polled from here: the app's CSP forbids the eval that wait_for_function polls with)
        page.locator("#open article").nth(5).wait_for(timeout=10000)
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        wait_for(lambda: page.evaluate("window.scrollY") > 300, timeout=5, what="scrolled")
        box = page.locator(sel).bounding_box()
        assert box is not None and 0 <= box["y"] < 200, box
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tablet_camera_down.png"))

        health[0] = up
        page.wait_for_selector(sel, state="detached", timeout=10000)
        assert page.locator("#banners .banner.camera").count() == 0
        assert page.locator("#banners").inner_text() == ""
    finally:
        ctx.close()
        sender.close(0)
        h.close()


def test_tablet_over_https_trusting_only_the_hub_cert(tmp_path: Path, browser) -> None:
    """HTTPS end to end in Chromium: refused without trust, works once the server key is pinned
    (--ignore-certificate-errors-spki-list, the standard way to trust one test cert headless),
    Secure cookie, live alert with both images over TLS."""
    from playwright.sync_api import Error as PlaywrightError

    # the flag is per process: launch our own browsers on the fixture's playwright
    chromium = browser.browser_type

    tls = generate_tls(tmp_path / "tls", ("localhost", "127.0.0.1"))
    pin = spki_sha256_b64(load_cert(tls.server_cert))
    h = RunningHub(hub_config(tmp_path, **{"http.tls_cert": str(tls.server_cert),
                                            "http.tls_key": str(tls.server_key)}))
    assert h.url.startswith("https://")
    audit = AuditLog(tmp_path / "node" / "audit.jsonl")
    sender = ZmqSender(tmp_path / "node" / "outbox.sqlite", h.endpoint, "node-tls",
                       None, audit, camera="Gate TLS").start()
    try:
        # no trust, or another key pinned: the page load fails on the certificate
        other_pin = spki_sha256_b64(load_cert(tls.ca_cert))
        for extra in ([], [f"--ignore-certificate-errors-spki-list={other_pin}"]):
            b = chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra])
            try:
                ctx = b.new_context(ignore_https_errors=False)
                with pytest.raises(PlaywrightError, match=r"ERR_CERT_AUTHORITY_INVALID"):
                    ctx.new_page().goto(h.url + "/login")
            finally:
                b.close()
        # the hub's key pinned: a real TLS session, no certificate errors ignored otherwise
        b = chromium.launch(executable_path=str(CHROMIUM), args=[
            *CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
        try:
            ctx = b.new_context(ignore_https_errors=False,
                                viewport={"width": 1024, "height": 768})
            page = ctx.new_page()
            sign_in(page, h.url)
            assert page.url.startswith("https://")
            (cookie,) = [c for c in ctx.cookies() if c["name"] == "edge_session"]
            assert cookie["secure"] and cookie["httpOnly"]
            wait_for(lambda: sender.hub_connected, what="node connected")
            probe, ref = face_jpegs()
            alert = synthetic_alert(
                "node-tls", "Gate TLS", 1, display_name="Jordan Example",
                category="Wanted", score=0.7, threshold=0.45, subject_id="WL-0042",
                captured_at=time.time(), decided_at=time.time(),
            )
            sender.send(alert, probe, ref)
            sel = f'#open article[data-alert-id="{alert.alert_id}"]'
            page.wait_for_selector(sel + "[data-rendered-at][data-images-at]",
                                   timeout=10000)
            assert page.evaluate(
                f"""Array.from(document.querySelectorAll('{sel} img'))
                    .every(i => i.complete && i.naturalWidth > 0)"""
            )
        finally:
            b.close()
    finally:
        sender.close(0)
        h.close()
        audit.close()


def test_stopped_node_is_a_note_lost_is_a_banner_duplicates_once(tmp_path: Path, browser) -> None:
    """A node that stopped cleanly is a quiet "stopped" note with its reason; one that went
    silent is "lost"; two cameras raising the very same message show it once."""
    from edge.link.schema import CameraHealth

    h = RunningHub(hub_config(tmp_path, **{"ui.node_lost_after_s": 1}))
    twin = [CameraHealth(name, "Gate", "down", 0.0, 5.0, 0, 10, "no signal")
            for name in ("gate-1", "gate-2")]
    calm = ZmqSender(tmp_path / "a.sqlite", h.endpoint, "node-calm", None, None,
                     camera="Bridge", heartbeat_interval=0.3).start()
    gone = ZmqSender(tmp_path / "b.sqlite", h.endpoint, "node-gone", None, None,
                     camera="Yard", heartbeat_interval=0.3, health=lambda: twin).start()
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = ctx.new_page()
    try:
        sign_in(page, h.url)
        page.wait_for_selector('#banners .banner.camera[data-node="node-gone"]', timeout=10000)
        assert page.locator('#banners .banner.camera').count() == 1  # the twin message once
        assert "Camera down: Gate" in page.locator("#banners").inner_text()
        calm.close(0, reason="source ended")
        gone.close(0, reason=None)  # as a crash: no stop heartbeat
        page.wait_for_selector('#banners .banner.stopped[data-node="node-calm"]', timeout=10000)
        note = page.locator('#banners .banner.stopped').inner_text()
        assert note.startswith("Camera node stopped: Bridge (node-calm) at ") and \
            "(source ended)" in note, note
        assert "note" in (page.locator('#banners .banner.stopped').get_attribute("class") or "")
        wait_for(lambda: "Camera node lost: Yard (node-gone)" in
                 page.locator("#banners").inner_text(), timeout=10, what="lost banner")
        text = page.locator("#banners").inner_text()
        assert "Camera node lost: Bridge" not in text and text.count("Camera node lost") == 1
    finally:
        ctx.close()
        calm.close(0)
        gone.close(0)
        h.close()


def test_undo_then_final_then_outcome_on_the_tablet(tmp_path: Path, browser) -> None:
    """Tap Confirm: 'Undo (N s)' for the window, tap it: the alert is open again; decide
    again and wait: final, the outcome buttons appear; tap one: it is in the node's log."""
    h = RunningHub(hub_config(tmp_path, **{"ui.undo_s": 4}))
    audit = AuditLog(tmp_path / "node" / "audit.jsonl")
    sender = ZmqSender(tmp_path / "node" / "outbox.sqlite", h.endpoint, "node-u", None, audit,
                       camera="Gate").start()
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True)
    page = ctx.new_page()
    try:
        sign_in(page, h.url)
        probe, ref = face_jpegs()
        a = synthetic_alert("node-u", "Gate", 1, display_name="Undo Subject")
        sender.send(a, probe, ref)
        card = f'article[data-alert-id="{a.alert_id}"]'
        page.wait_for_selector(f"#open {card}", timeout=10000)
        page.click(f"{card} button.act.confirm")
        page.wait_for_selector(f"#decided {card} button.undo", timeout=5000)
        assert re.fullmatch(r"Undo \([1-4] s\)", page.locator(f"{card} button.undo").inner_text())
        page.click(f"{card} button.undo")
        page.wait_for_selector(f"#open {card} button.act.reject", timeout=5000)
        assert h.store.get_alert(a.alert_id)["decision"] is None
        page.click(f"{card} button.act.reject")
        page.wait_for_selector(f'#decided {card}[data-final="1"] .outcomes', timeout=10000)
        assert page.locator(f"{card} button.undo").count() == 0
        page.click(f'{card} button.outcome[data-outcome="wrong_person"]')
        page.wait_for_selector(f"{card} .outcome-tag", timeout=5000)
        assert "Wrong person" in page.locator(f"{card} .outcome-tag").inner_text()
        kinds = wait_for(lambda: [r["kind"] for r in read_records(audit.path)
                                  if r["kind"].startswith("decision")] == ["decision",
                                                                           "decision.outcome"],
                         what="decision then outcome in the node's audit log")
        assert kinds
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tablet_outcome.png"))
    finally:
        ctx.close()
        sender.close(0)
        audit.close()
        h.close()


def test_deployment_record_html_renders_with_its_chart(tmp_path: Path, browser) -> None:
    from edge.report.record import to_html

    cam = {"node_id": "n1", "camera": "Gate", "faces_seen": 3000, "alerts": 5, "confirmed": 2,
           "rejected": 2, "no_action": 1, "undecided": 0, "false_alert_share": 0.4,
           "outcomes": {"arrested": 1}}
    record = {"generated_at": time.time(), "deployment_id": None, "per_camera": [cam],
              "deployments": [{"deployment_id": "OP-7", "authorising_officer": "Supt. B",
                               "node_id": "n1", "camera": "Gate", "window_start": 1.8e9,
                               "window_end": 1.8e9 + 3600, "watchlist_size": 9,
                               "first_seen": 1.8e9, "last_seen": 1.8e9}],
              "window": {"start": 1.8e9, "end": 1.8e9 + 3600}, "watchlist_size": 9,
              "totals": {**cam, "false_alert_rate": 2 / 3000, "false_alert_one_in": 1500},
              "notes": "counts only"}
    page_file = tmp_path / "record.html"
    page_file.write_text(to_html(record))
    ctx = browser.new_context(viewport={"width": 900, "height": 1200})
    page = ctx.new_page()
    try:
        page.goto(page_file.as_uri())
        chart = page.locator("#chart")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 80
        assert page.evaluate("document.querySelector('#chart').naturalWidth") > 300
        assert page.locator("#faces").inner_text() == "3,000"
        assert page.locator("#decisions").inner_text().startswith("2 / 2 / 1")
        assert "1 in 1,500" in page.locator("#far").inner_text()
        assert page.locator("#officer").inner_text() == "Supt. B"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "deployment_record.png"), full_page=True)
    finally:
        ctx.close()
