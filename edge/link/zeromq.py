"""ZeroMQ sockets of the node <-> hub link: a DEALER per node, one ROUTER on the hub, CURVE.

Why this shape: one connection per node carries alerts up and officer decisions down, so a
decision reaches the node that raised the alert without the hub needing to reach into the
node's network. ZeroMQ reconnects by itself; its ZMTP heartbeats (set here) and the link's
own heartbeats (``edge.link.schema``) detect dead peers.

CURVE: the hub has a key pair and an allow-list directory of node public keys (``NAME.key``,
the file stem is the node's identity); nodes know the hub's public key. Plain TCP is allowed
only on loopback, for local development, with a warning logged once. What travels over these
sockets is defined in ``edge.link.schema``; key files are read by ``edge.link.curve_keys``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth.thread
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from edge.errors import EdgeError
from edge.link.curve_keys import load_allowed_keys, load_public_key, load_secret_key

log = logging.getLogger(__name__)

OnRefused = Callable[[str], None]  # called with a short reason code, for counting

# Hard per-frame cap enforced by libzmq before Python sees anything (peer is disconnected).
MAX_FRAME_BYTES = 4 * 1024 * 1024

_warned_plain = False
_last_log: dict[str, float] = {}


def _log_limited(key: str, msg: str, *args: object) -> None:
    """Warn at most once a minute per key: a misconfigured node retries every few seconds."""
    now = time.monotonic()
    if now - _last_log.get(key, -1e9) >= 60.0:
        _last_log[key] = now
        log.warning(msg + " (further such refusals counted in metrics, logged once a minute)",
                    *args)


class TransportError(EdgeError):
    """The ZeroMQ link cannot be set up (bad endpoint, keys, or insecure configuration)."""


@dataclass(frozen=True)
class CurveConfig:
    """Node side of CURVE: the node's secret key file and the hub's public key file."""

    node_secret_key: Path
    hub_public_key: Path

    def load(self) -> tuple[bytes, bytes, bytes]:
        """(node public, node secret, hub public) Z85 keys; raises KeyFileError."""
        pub, sec = load_secret_key(Path(self.node_secret_key))
        return pub, sec, load_public_key(Path(self.hub_public_key))


@dataclass(frozen=True)
class CurveServerConfig:
    """Hub side of CURVE: the hub's secret key file and the allowed node keys directory."""

    hub_secret_key: Path
    allowed_node_keys_dir: Path


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// endpoints whose host is a loopback address."""
    try:
        parts = urlsplit(endpoint)
    except ValueError:
        return False
    if parts.scheme in ("ipc", "inproc"):
        return True
    if parts.scheme != "tcp":
        return False
    host = (parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc else parts.netloc).strip("[]")
    if ";" in host:  # "src;dst" form
        host = host.split(";")[-1]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(ai[4][0]).is_loopback
                for ai in socket.getaddrinfo(host, None)
            )
        except (OSError, ValueError):
            return False


def _plain_allowed(endpoint: str, who: str) -> None:
    global _warned_plain
    if not is_loopback(endpoint):
        raise TransportError(
            f"{who}: refusing unencrypted ZeroMQ on non-loopback endpoint {endpoint}; "
            "configure CURVE keys (edge keys generate)"
        )
    if not _warned_plain:
        _warned_plain = True
        log.warning(
            "%s: ZeroMQ link %s is NOT encrypted (no CURVE keys); acceptable on loopback only",
            who,
            endpoint,
        )


def _common_options(sock: zmq.Socket) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 3000)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)


def node_socket(ctx: zmq.Context, endpoint: str, curve: CurveConfig | None) -> zmq.Socket:
    """A DEALER connected to the hub, CURVE client when keys are given."""
    sock = ctx.socket(zmq.DEALER)
    try:
        _common_options(sock)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # don't queue onto connections not yet up
        sock.setsockopt(zmq.SNDHWM, 1000)
        if curve is not None:
            pub, sec, server = curve.load()
            sock.curve_publickey = pub
            sock.curve_secretkey = sec
            sock.curve_serverkey = server
        else:
            _plain_allowed(endpoint, "node")
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot connect to hub endpoint {endpoint}: {exc}") from None
    except BaseException:
        sock.close(0)
        raise
    return sock


class _AllowList:
    """ZAP credentials provider: accepts allowed node keys, counts refusals."""

    def __init__(self, allowed: dict[bytes, str], on_refused: OnRefused | None = None) -> None:
        self.allowed = allowed
        self.on_refused = on_refused

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.allowed
        if not ok:
            # The key is public material, but log only a prefix: enough to find the node.
            _log_limited("key:" + key[:8].decode(),
                         "refused ZeroMQ connection: unknown CURVE key %s...", key[:8].decode())
            if self.on_refused is not None:
                self.on_refused("unknown_key")
        return ok


class _Authenticator(zmq.auth.thread.ThreadAuthenticator):
    """ZAP thread whose User-Id is the node name (the allowed key file's stem)."""

    allow_list: _AllowList

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.allow_list.allowed.get(z85.encode(client_public_key), "unknown")


class HubSocket:
    """The hub's ROUTER (+ ZAP authenticator + handshake monitor)."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        curve: CurveServerConfig | None,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.ctx = ctx
        self.auth: _Authenticator | None = None
        self.allow: _AllowList | None = None
        self.curve = curve
        self.on_refused = on_refused
        sock = ctx.socket(zmq.ROUTER)
        self.monitor: zmq.Socket[bytes] | None = None
        try:
            _common_options(sock)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone node raises
            sock.setsockopt(zmq.SNDHWM, 1000)
            if curve is not None:
                pub, sec = load_secret_key(Path(curve.hub_secret_key))
                allowed = load_allowed_keys(Path(curve.allowed_node_keys_dir))
                if not allowed:
                    log.warning("no node keys in %s: every node will be refused",
                                curve.allowed_node_keys_dir)
                self.allow = _AllowList(allowed, on_refused)
                self.auth = _Authenticator(ctx)
                self.auth.allow_list = self.allow
                self.auth.start()
                self.auth.configure_curve_callback("edge", self.allow)
                sock.curve_server = True
                sock.curve_publickey = pub
                sock.curve_secretkey = sec
                sock.zap_domain = b"edge"
            else:
                _plain_allowed(endpoint, "hub")
            self.monitor = sock.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            )
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind hub endpoint {endpoint}: {exc}") from None
        except BaseException:
            self._close_aux()
            sock.close(0)
            raise
        self.sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def reload_allowed(self) -> int:
        """Re-read the allowed node keys directory (new nodes without a restart)."""
        if self.curve is None or self.allow is None:
            return 0
        self.allow.allowed = load_allowed_keys(Path(self.curve.allowed_node_keys_dir))
        return len(self.allow.allowed)

    def handle_monitor(self) -> None:
        """Drain handshake-failure events and count them (wrong hub key, plain client...)."""
        while self.monitor is not None:
            try:
                ev = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = ev.get("event")
            if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                reason = "auth"
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                reason = "protocol"
            else:
                reason = "handshake"
            if reason != "auth":  # auth refusals are counted by the allow-list already
                _log_limited(reason, "refused ZeroMQ connection at handshake (%s)", reason)
                if self.on_refused is not None:
                    self.on_refused(reason)

    def peer_name(self, frame: zmq.Frame) -> str | None:
        """Authenticated node name of the sender (CURVE), None without CURVE."""
        if self.curve is None:
            return None
        try:
            return str(frame.get("User-Id"))
        except zmq.ZMQError:
            return "unknown"

    def _close_aux(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.monitor is not None:
            self.monitor.close(0)
            self.monitor = None

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._close_aux()
        self.sock.close(0)

