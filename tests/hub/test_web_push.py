"""Web push to a locked tablet: a real HTTP push endpoint on 127.0.0.1 (RFC 8030) receives what
the hub sends; the test decrypts it as the browser would (RFC 8291, aes128gcm, with the
subscription's own private key and auth secret) and checks the VAPID JWT (RFC 8292) against
the hub's public key. The payload names the camera only. Endpoints off the allow-list are
refused, a 410 removes the subscription, signing out stops pushes."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.cli import cli
from edge.hub.config import load_hub_config
from edge.hub.push import PushError, parse_subscription
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.schema import CameraHealth
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

H = {"X-Edge-Request": "1"}
SUBJECT = "mailto:control-room@example.org"


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class PushService:
    """A minimal RFC 8030 push resource: records each POST; /gone/... answers 410."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body})
                self.send_response(410 if self.path.startswith("/gone") else 201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """What a browser's PushManager holds for one subscription."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        raw = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        self.json = {"endpoint": endpoint, "keys": {"p256dh": _b64(raw), "auth": _b64(self.auth)}}

    def decrypt(self, body: bytes) -> dict[str, Any]:
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth,
                                           version="aes128gcm"))


def _check_vapid(headers: dict[str, str], hub_public: str, origin: str) -> None:
    auth = headers["authorization"]
    assert auth.startswith("vapid t=")
    parts = dict(p.strip().split("=", 1) for p in auth[len("vapid "):].split(","))
    assert parts["k"] == hub_public
    head, claims, sig = parts["t"].split(".")
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64d(hub_public))
    raw = _b64d(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    assert json.loads(_b64d(head))["alg"] == "ES256"
    c = json.loads(_b64d(claims))
    assert c["aud"] == origin and c["sub"] == SUBJECT
    assert time.time() < c["exp"] <= time.time() + 24 * 3600  # RFC 8292: at most 24 h


@pytest.fixture()
def setup(tmp_path: Path):  # noqa: ANN201
    r = CliRunner().invoke(cli, ["keys", "vapid", "--dir", str(tmp_path / "push")])
    assert r.exit_code == 0, r.output
    public = r.output.split("): ")[-1].strip()
    svc = PushService()
    cfg = hub_config(tmp_path, **{
        "push.enabled": True, "push.vapid_private_key": str(tmp_path / "push" / "vapid_private.pem"),
        "push.subject": SUBJECT, "push.allowed_endpoint_hosts": ["127.0.0.1"]})
    h = RunningHub(cfg)
    sender = ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-1", None, camera="gate-2",
                       heartbeat_interval=0.2,
                       health=lambda: [CameraHealth("gate-2", "Gate 2, facing the station", "up",
                                                    12.0, 0.1, 0, 10)]).start()
    yield h, svc, sender, public
    sender.close(timeout=2)
    h.close()
    svc.close()


def _alert(sender: ZmqSender, n: int) -> None:
    sender.send(synthetic_alert("node-1", "gate-2", n), synthetic_jpeg(n, 96))
    wait_for(lambda: sender.pending() == 0, what="delivery")


def test_push_reaches_a_subscribed_tablet_encrypted_signed_and_without_the_name(setup) -> None:
    h, svc, sender, public = setup
    c = h.client("pc1")
    assert c.get("/api/push/key").json() == {"public_key": public}
    tablet = Browser(f"{svc.origin}/push/tablet-1")
    r = c.post("/api/push/subscribe", json=tablet.json, headers=H)
    assert r.status_code == 201, r.text
    wait_for(lambda: h.hub.cameras.label_of("node-1", "gate-2"), what="camera label")
    _alert(sender, 3)
    got = wait_for(lambda: svc.received, what="a push")[0]
    assert got["path"] == "/push/tablet-1"
    hd = got["headers"]
    assert hd["content-encoding"] == "aes128gcm" and int(hd["ttl"]) == 300
    _check_vapid(hd, public, svc.origin)
    # the push service sees only ciphertext: no name, no camera in the clear
    assert b"Test Subject" not in got["body"] and b"Gate" not in got["body"]
    msg = tablet.decrypt(got["body"])
    assert msg["title"] == "New watchlist alert"
    assert "Gate 2, facing the station" in msg["body"]
    text = json.dumps(msg)
    for secret in ("Test Subject", "s3", "0.62", "test", "jpg"):
        assert secret not in text, secret  # name, subject id, score, category, images
    reg = h.hub.metrics.registry
    wait_for(lambda: metric(reg, "edge_hub_push_sent_total") == 1, what="sent counted")
    assert metric(reg, "edge_hub_push_subscriptions") == 1


def test_gone_subscription_removed_and_sign_out_stops_pushes(setup) -> None:
    h, svc, sender, _ = setup
    c = h.client("pc1")
    gone, kept = Browser(f"{svc.origin}/gone/1"), Browser(f"{svc.origin}/push/2")
    for b in (gone, kept):
        assert c.post("/api/push/subscribe", json=b.json, headers=H).status_code == 201
    assert len(h.store.push_subscriptions()) == 2
    _alert(sender, 1)
    wait_for(lambda: len(svc.received) == 2, what="two pushes")
    wait_for(lambda: len(h.store.push_subscriptions()) == 1, what="410 removes it")
    assert h.store.push_subscriptions()[0][0] == kept.json["endpoint"]
    assert metric(h.hub.metrics.registry, "edge_hub_push_failed_total", {"reason": "gone"}) == 1
    assert c.post("/logout").status_code == 303
    assert h.store.push_subscriptions() == []
    _alert(sender, 2)
    time.sleep(0.5)
    assert len(svc.received) == 2  # nothing after sign-out


def test_subscribe_refusals(setup) -> None:
    h, svc, _, _ = setup
    ok = Browser(f"{svc.origin}/push/x").json
    anon = h.client(None)
    assert anon.get("/api/push/key").status_code == 401
    assert anon.post("/api/push/subscribe", json=ok, headers=H).status_code == 401
    c = h.client("pc1")
    assert c.post("/api/push/subscribe", json=ok).status_code == 403  # no CSRF header
    for bad, why in [
        ({**ok, "endpoint": "http://10.0.0.5:8080/admin"}, "not an allowed push service"),
        ({**ok, "endpoint": "https://fcm.googleapis.com.evil.example/x"}, "not an allowed"),
        ({**ok, "keys": {"p256dh": "AAAA", "auth": ok["keys"]["auth"]}}, "P-256"),
        ({**ok, "keys": {"p256dh": ok["keys"]["p256dh"], "auth": "AAAA"}}, "16 bytes"),
        ([1, 2], "JSON object"),
    ]:
        r = c.post("/api/push/subscribe", json=bad, headers=H)
        assert r.status_code == 400 and why in r.json()["detail"], (bad, r.text)
    assert h.store.push_subscriptions() == []


def test_endpoint_rules_and_config() -> None:
    allowed = load_hub_config(None, {}).push.allowed_endpoint_hosts
    keys = Browser("https://x").json["keys"]
    for url in ("https://fcm.googleapis.com/fcm/send/abc",
                "https://updates.push.services.mozilla.com/wpush/v2/abc",
                "https://web.push.apple.com/QX", "https://db5p.notify.windows.com/w/?token=1"):
        assert parse_subscription({"endpoint": url, "keys": keys}, allowed).endpoint == url
    for url in ("http://fcm.googleapis.com/fcm/send/abc", "https://evil.example/fcm.googleapis.com",
                "https://user@fcm.googleapis.com/x", "https://127.0.0.1/x", "ftp://x"):
        with pytest.raises(PushError):
            parse_subscription({"endpoint": url, "keys": keys}, allowed)
    with pytest.raises(Exception, match="vapid_private_key and subject"):
        load_hub_config(None, {"push.enabled": True})
    with pytest.raises(Exception, match="mailto:"):
        load_hub_config(None, {"push.subject": "admin@example.org"})


def test_push_off_by_default(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    try:
        c = h.client("pc1")
        assert c.get("/api/push/key").status_code == 404  # the app then stays with in-page alerts
        assert c.post("/api/push/subscribe", json={}, headers=H).status_code == 404
    finally:
        h.close()
