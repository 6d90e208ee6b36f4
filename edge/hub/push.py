"""Web push to officers' tablets (RFC 8030 delivery, RFC 8291 payload encryption, RFC 8292
VAPID), so a locked or backgrounded tablet still hears of a new alert.

A push travels through the browser vendor's push service (Google, Mozilla, Apple), outside the
deployment. The payload is therefore the least that makes an officer pick up the tablet: a
fixed title and the camera. Never the subject's name or category, the score or an image; those
stay behind the signed-in app. It is end-to-end encrypted to the tablet as well.

Subscriptions belong to a sign-in session: a tablet that signs out, or whose session expires,
gets no more pushes. Endpoints are limited to the configured push-service hosts over HTTPS (a
hostile officer account must not make the hub POST to internal addresses), redirects are not
followed, and a 404/410 from the push service removes the subscription (RFC 8030 §7.3).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from edge.errors import EdgeError
from edge.hub.config import PushSection
from edge.hub.metrics import HubMetrics
from edge.hub.store import HubStore
from edge.hub.tls import is_loopback_host
from edge.hub.vapid import b64url_decode, public_key_of

log = logging.getLogger(__name__)

MAX_ENDPOINT = 1024
QUEUE_MAX = 256  # alerts waiting to be pushed; beyond it a push is dropped (counted)


class PushError(EdgeError):
    """Web push cannot be set up (key file) or a subscription is refused."""


@dataclass(frozen=True)
class Subscription:
    """A browser's PushSubscription (endpoint + its ECDH public key and auth secret)."""

    endpoint: str
    p256dh: str
    auth: str

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def load_vapid(path: Path) -> Vapid:
    try:
        vapid = Vapid.from_file(private_key_file=str(path))
    except FileNotFoundError:
        raise PushError(f"push.vapid_private_key: {path} not found (make one with "
                        "`edge keys vapid`)") from None
    except Exception as exc:  # py_vapid raises several types for a bad PEM
        raise PushError(f"push.vapid_private_key: {path} is not a P-256 private key "
                        f"({type(exc).__name__})") from None
    if not isinstance(vapid.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            vapid.private_key.curve, ec.SECP256R1):
        raise PushError(f"push.vapid_private_key: {path} is not a P-256 private key")
    return vapid


def host_allowed(host: str, allowed: list[str]) -> bool:
    """``host`` is listed, or ends with a listed ``.suffix``."""
    host = host.lower().rstrip(".")
    for a in allowed:
        a = a.lower()
        if (a.startswith(".") and host.endswith(a)) or host == a:
            return True
    return False


def parse_subscription(data: Any, allowed_hosts: list[str]) -> Subscription:
    """A PushSubscription JSON (``subscription.toJSON()``) checked, or PushError saying why."""
    if not isinstance(data, dict):
        raise PushError("subscription must be a JSON object")
    endpoint, keys = data.get("endpoint"), data.get("keys")
    if not isinstance(endpoint, str) or not 0 < len(endpoint) <= MAX_ENDPOINT:
        raise PushError(f"endpoint must be a URL of at most {MAX_ENDPOINT} characters")
    try:
        u = urlsplit(endpoint)
        host, port = u.hostname or "", u.port
    except ValueError:
        raise PushError("endpoint is not a URL") from None
    del port  # parsed only to refuse a malformed port
    if u.username or u.password or not host:
        raise PushError("endpoint is not a push service URL")
    if not host_allowed(host, allowed_hosts):
        raise PushError(f"endpoint host {host!r} is not an allowed push service "
                        "(push.allowed_endpoint_hosts)")
    if u.scheme != "https" and not (u.scheme == "http" and is_loopback_host(host)):
        raise PushError("endpoint must be https")
    if not isinstance(keys, dict):
        raise PushError("keys must hold p256dh and auth")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    try:
        if not isinstance(p256dh, str) or not isinstance(auth, str) or len(p256dh) > 120:
            raise ValueError
        point, secret = b64url_decode(p256dh), b64url_decode(auth)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except (ValueError, TypeError):
        raise PushError("keys.p256dh must be a P-256 public key (base64url)") from None
    if len(secret) != 16:
        raise PushError("keys.auth must be 16 bytes (base64url)")
    return Subscription(endpoint, p256dh, auth)


def alert_payload(card: dict[str, Any], camera_label: str | None) -> dict[str, str]:
    """What a push carries: camera only (never name, category, score or image)."""
    camera = camera_label or str(card.get("camera") or "a camera")
    return {"title": "New watchlist alert", "body": f"Camera: {camera}. Open the app to decide.",
            "tag": "edge-alert"}


class PushNotifier:
    """Queues new alerts and pushes them to every live subscription from one thread."""

    def __init__(self, cfg: PushSection, store: HubStore, metrics: HubMetrics) -> None:
        if cfg.vapid_private_key is None or cfg.subject is None:
            raise PushError("push.enabled needs push.vapid_private_key and push.subject")
        self.cfg = cfg
        self.store = store
        self.metrics = metrics
        self.vapid = load_vapid(Path(cfg.vapid_private_key))
        assert isinstance(self.vapid.private_key, ec.EllipticCurvePrivateKey)
        self.public_key = public_key_of(self.vapid.private_key)
        self._q: queue.Queue[dict[str, str] | None] = queue.Queue(QUEUE_MAX)
        self._http = requests.Session()
        self._http.max_redirects = 0  # a redirect is a failure, never followed
        self._thread = threading.Thread(target=self._run, name="hub-push", daemon=True)

    def start(self) -> PushNotifier:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self._http.close()

    def subscribe(self, data: Any, session_token: str, officer: str) -> Subscription:
        sub = parse_subscription(data, self.cfg.allowed_endpoint_hosts)
        self.store.add_push_subscription(session_token, officer, sub.endpoint, sub.p256dh,
                                         sub.auth)
        self.metrics.push_subscriptions.set(len(self.store.push_subscriptions()))
        return sub

    def notify(self, card: dict[str, Any], camera_label: str | None = None) -> None:
        """Called for each new alert (never blocks the hub's router)."""
        try:
            self._q.put_nowait(alert_payload(card, camera_label))
        except queue.Full:
            self.metrics.push_failed.labels("queue_full").inc()

    def _run(self) -> None:
        while True:
            payload = self._q.get()
            if payload is None:
                return
            try:
                subs = self.store.push_subscriptions()
            except Exception as exc:  # store closed while stopping
                log.warning("web push: cannot read subscriptions (%s)", type(exc).__name__)
                continue
            for s in subs:
                self._send(Subscription(*s), payload)

    def _send(self, sub: Subscription, payload: dict[str, str]) -> None:
        host = urlsplit(sub.endpoint).hostname
        try:
            webpush(sub.info(), json.dumps(payload), vapid_private_key=self.vapid,
                    vapid_claims={"sub": self.cfg.subject}, ttl=self.cfg.ttl_s,
                    timeout=self.cfg.timeout_s, requests_session=self._http)
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (404, 410):  # the browser unsubscribed or the subscription expired
                self.store.delete_push_subscription(sub.endpoint)
                self.metrics.push_failed.labels("gone").inc()
                self.metrics.push_subscriptions.set(len(self.store.push_subscriptions()))
                log.info("web push: subscription at %s gone (%s), removed", host, status)
            else:
                self.metrics.push_failed.labels("refused").inc()
                log.warning("web push to %s refused (HTTP %s)", host, status)
            return
        except requests.RequestException as exc:
            self.metrics.push_failed.labels("network").inc()
            log.warning("web push to %s failed: %s", host, type(exc).__name__)
            return
        self.metrics.push_sent.inc()
