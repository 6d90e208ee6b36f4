"""The alert fabric on NATS JetStream: subjects, streams, credentials, and the frame packing.

What the node and the hub share when alerts ride NATS instead of the ZeroMQ link (the frames
themselves are still ``edge.link.schema`` messages, validated the same way at both ends).

Subjects, one branch per deployment and node, so NATS permissions can pin who may do what::

    edge.<deployment>.<node>.alert     node -> stream EDGE_ALERTS (Nats-Msg-Id = alert_id)
    edge.<deployment>.<node>.health    node -> stream EDGE_HEALTH (last heartbeat per node)
    edge.<deployment>.<node>.decision  hub  -> stream EDGE_ALERTS (Nats-Msg-Id = decision id)

Officers' decisions are events in the same stream as the alerts, after the alert they decide:
every hub that serves the deployment applies the first decision per alert in stream order, so
all of them show the same state, and the node reads its own decision subject through a durable
consumer. A message is the schema's frames packed into one payload: frames 1.. concatenated,
their lengths and frame 0 (the type tag) in headers.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.errors import ConfigError
from edge.link.schema import MAX_CONTROL_BYTES, MAX_HEADER_BYTES, MAX_JPEG_BYTES, MessageError

ALERTS_STREAM = "EDGE_ALERTS"
HEALTH_STREAM = "EDGE_HEALTH"
ROOT = "edge"
TYPE_HEADER = "Edge-Type"
LENGTHS_HEADER = "Edge-Frames"
MSG_ID_HEADER = "Nats-Msg-Id"
# The largest message the fabric carries: an alert header and two JPEGs at their limits. The
# NATS server's max_payload must be at least this (its default, 1 MiB, is too small).
MAX_MESSAGE_BYTES = MAX_HEADER_BYTES + 2 * MAX_JPEG_BYTES + 1024
MAX_FRAMES = 4
DEFAULT_DUPLICATE_WINDOW_S = 600.0  # re-sends after a reconnect within this are de-duplicated
# A subject token: node ids and deployment ids used on the fabric (no dots or wildcards).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_token(value: str, what: str) -> str:
    """``value`` if it can be one subject token (letters, digits, _ and -), else ConfigError."""
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise ConfigError(f"{what} {value!r} cannot be used on the NATS fabric: use 1-64 "
                          "letters, digits, '_' or '-'")
    return value


def subject(deployment: str, node: str, kind: str) -> str:
    """``edge.<deployment>.<node>.<kind>`` (kind: alert, health, decision)."""
    return f"{ROOT}.{deployment}.{node}.{kind}"


def parse_subject(subj: str) -> tuple[str, str, str] | None:
    """(deployment, node, kind) of a fabric subject, or None if it is not one."""
    parts = subj.split(".")
    if len(parts) != 4 or parts[0] != ROOT:
        return None
    return parts[1], parts[2], parts[3]


def node_consumer(node: str) -> str:
    """The durable consumer through which a node reads its decisions."""
    return f"node_{node}"


def hub_consumer(hub: str, deployment: str) -> str:
    """The durable consumer through which a hub reads one deployment's alerts and decisions."""
    return f"hub_{hub}_{deployment}"


def node_inbox(node: str) -> str:
    return f"_INBOX.n.{node}"


def hub_inbox(hub: str) -> str:
    return f"_INBOX.h.{hub}"


# -- packing the schema's frames into one NATS message --------------------------------------


def pack(frames: Sequence[bytes]) -> tuple[dict[str, str], bytes]:
    """Frames (tag first) -> (headers, payload)."""
    body = [bytes(f) for f in frames[1:]]
    headers = {TYPE_HEADER: bytes(frames[0]).decode("ascii"),
               LENGTHS_HEADER: ",".join(str(len(f)) for f in body)}
    return headers, b"".join(body)


def unpack(headers: Mapping[str, str] | None, payload: bytes) -> list[bytes]:
    """(headers, payload) -> frames; MessageError("frames") when they do not add up."""
    if not headers or TYPE_HEADER not in headers or LENGTHS_HEADER not in headers:
        raise MessageError("frames", "fabric message lacks its type or frame lengths")
    tag = headers[TYPE_HEADER]
    raw = headers[LENGTHS_HEADER]
    if len(tag) > 64 or len(raw) > 64:
        raise MessageError("frames", "fabric message headers too long")
    try:
        lengths = [int(x) for x in raw.split(",")] if raw else []
    except ValueError:
        raise MessageError("frames", "bad frame lengths") from None
    if len(lengths) > MAX_FRAMES - 1 or any(n < 0 for n in lengths) \
            or sum(lengths) != len(payload):
        raise MessageError("frames", "frame lengths do not match the payload")
    frames = [tag.encode("ascii", "replace")]
    at = 0
    for n in lengths:
        frames.append(bytes(payload[at:at + n]))
        at += n
    return frames


# -- connecting -----------------------------------------------------------------------------


def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url if "://" in url else "nats://" + url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class NatsSettings:
    """How one process connects to the fabric (node or hub); files are read at connect."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    user: str | None = None
    password_file: Path | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    connect_timeout_s: float = 2.0
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse what can only be a mistake: plain text off loopback, half a TLS pair."""
        if not self.servers:
            raise ConfigError("nats: no servers given")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("nats: set both tls_cert and tls_key, or neither")
        if self.password_file and not self.user:
            raise ConfigError("nats: password_file needs user")
        if self.tls_ca is None:
            plain = [s for s in self.servers if not s.startswith("tls://")
                     and not _is_loopback_url(s)]
            if plain:
                raise ConfigError(f"nats: refusing unencrypted NATS to {plain[0]} (not "
                                  "loopback); set tls_ca (and tls_cert/tls_key if the server "
                                  "asks for a client certificate)")

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` (reads the password and TLS files)."""
        self.check()
        kw: dict[str, Any] = {"servers": list(self.servers),
                              "connect_timeout": self.connect_timeout_s}
        if self.name:
            kw["name"] = self.name
        if self.user:
            kw["user"] = self.user
            if self.password_file is not None:
                kw["password"] = _read_secret(self.password_file, "nats password_file")
        if self.nkey_seed_file is not None:
            _readable(self.nkey_seed_file, "nats nkey_seed_file")
            kw["nkeys_seed"] = str(self.nkey_seed_file)
        if self.creds_file is not None:
            _readable(self.creds_file, "nats creds_file")
            kw["user_credentials"] = str(self.creds_file)
        if self.tls_ca is not None:
            kw["tls"] = self.ssl_context()
        kw.update(self.extra)
        return kw

    def ssl_context(self) -> ssl.SSLContext:
        """A client context verifying the server against ``tls_ca`` (+ client certificate)."""
        assert self.tls_ca is not None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.tls_ca))
            if self.tls_cert is not None and self.tls_key is not None:
                ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"nats TLS files cannot be used: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


def _readable(path: Path, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None


def _read_secret(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc})") from None


def error_reason(exc: BaseException | str) -> str:
    """A short metric label for a NATS error (auth, permission, tls, timeout, ...)."""
    text = str(exc).lower()
    name = type(exc).__name__.lower() if not isinstance(exc, str) else ""
    if "authorization" in text or "authentication" in text or "auth" in name:
        return "auth"
    if "permissions violation" in text or "permission" in text:
        return "permission"
    if isinstance(exc, ssl.SSLError) or "certificate" in text or "[ssl" in text \
            or "tls" in name:
        return "tls"  # a CA mismatch, an expired or missing certificate, a failed handshake
    if "maximum payload" in text or "maxpayload" in name:
        return "max_payload"
    if "no response from stream" in text or "nostreamresponse" in name or "no responders" in text:
        return "no_stream"
    if "timeout" in text or "timeout" in name:
        return "timeout"
    return "other"


# -- streams and permissions (the operator's side) ------------------------------------------


def stream_configs(replicas: int = 1, max_age_s: float = 31 * 86400.0,
                   duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
                   ) -> list[dict[str, Any]]:
    """The two streams, as ``js.add_stream`` keyword arguments.

    EDGE_ALERTS keeps alerts and decisions for the hubs' retention (its SQLite is rebuilt from
    it); EDGE_HEALTH keeps only the last heartbeat of each node for an hour: health is a live
    signal, and the ack of its publish is how a node knows the fabric answers.
    """
    return [
        {"name": ALERTS_STREAM, "subjects": [f"{ROOT}.*.*.alert", f"{ROOT}.*.*.decision"],
         "num_replicas": replicas, "max_age": max_age_s, "duplicate_window": duplicate_window_s,
         "max_msg_size": MAX_MESSAGE_BYTES},
        {"name": HEALTH_STREAM, "subjects": [f"{ROOT}.*.*.health"], "num_replicas": replicas,
         "max_age": 3600.0, "max_msgs_per_subject": 1, "duplicate_window": 60.0,
         "max_msg_size": MAX_CONTROL_BYTES + 1024},
    ]


@dataclass(frozen=True)
class NodeAccount:
    """One node's fabric identity: it may publish only its own alerts and health."""

    node: str
    deployment: str
    user: str | None = None
    password: str | None = None
    nkey: str | None = None  # the public NKey (U...) instead of user/password


@dataclass(frozen=True)
class HubAccount:
    """One hub's fabric identity: it may read (and decide on) only ``deployments``."""

    hub: str
    deployments: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    nkey: str | None = None
    manage_streams: bool = False  # may create/update the two streams (create_streams)


def node_permissions(node: str, deployment: str) -> dict[str, Any]:
    """What a node may do: publish its alert and health subjects, read its decisions."""
    c = node_consumer(node)
    dec = subject(deployment, node, "decision")
    return {
        "publish": {"allow": [
            subject(deployment, node, "alert"), subject(deployment, node, "health"),
            f"$JS.API.CONSUMER.CREATE.{ALERTS_STREAM}.{c}.{dec}",
            f"$JS.API.CONSUMER.INFO.{ALERTS_STREAM}.{c}",
            f"$JS.API.CONSUMER.MSG.NEXT.{ALERTS_STREAM}.{c}",
            f"$JS.ACK.{ALERTS_STREAM}.{c}.>",
        ]},
        "subscribe": {"allow": [node_inbox(node) + ".>"]},
    }


def hub_permissions(hub: str, deployments: Iterable[str], manage_streams: bool = False
                    ) -> dict[str, Any]:
    """What a hub may do: read and decide on its deployments, nothing of the others."""
    pub = [f"$JS.API.STREAM.MSG.DELETE.{ALERTS_STREAM}"]  # a rejected alert's probe goes
    sub = [hub_inbox(hub) + ".>"]
    for dep in deployments:
        c = hub_consumer(hub, dep)
        pub += [
            subject(dep, "*", "decision"),
            f"$JS.API.CONSUMER.CREATE.{ALERTS_STREAM}.{c}.{ROOT}.{dep}.>",
            f"$JS.API.CONSUMER.DELETE.{ALERTS_STREAM}.{c}",
            f"$JS.API.CONSUMER.INFO.{ALERTS_STREAM}.{c}",
            f"$JS.API.CONSUMER.MSG.NEXT.{ALERTS_STREAM}.{c}",
            f"$JS.ACK.{ALERTS_STREAM}.{c}.>",
        ]
        sub.append(subject(dep, "*", "health"))
    if manage_streams:
        for s in (ALERTS_STREAM, HEALTH_STREAM):
            pub += [f"$JS.API.STREAM.CREATE.{s}", f"$JS.API.STREAM.UPDATE.{s}",
                    f"$JS.API.STREAM.INFO.{s}"]
    return {"publish": {"allow": pub}, "subscribe": {"allow": sub}}


def _user_entry(user: str | None, password: str | None, nkey: str | None,
                permissions: dict[str, Any]) -> dict[str, Any]:
    if nkey:
        return {"nkey": nkey, "permissions": permissions}
    if not user or password is None:
        raise ConfigError("an account needs user and password, or an nkey")
    return {"user": user, "password": password, "permissions": permissions}


def authorization(nodes: Iterable[NodeAccount], hubs: Iterable[HubAccount],
                  admin: tuple[str, str] | None = None) -> str:
    """The ``authorization { ... }`` block of a nats-server config for these accounts.

    Everything not allowed is denied: a node cannot publish as another node or as a hub, a hub
    cannot create a consumer on a deployment it does not serve. ``admin`` (user, password) may
    do anything (stream set-up, monitoring tools); leave it out in production configs.
    """
    users = [_user_entry(n.user, n.password, n.nkey,
                         node_permissions(check_token(n.node, "node"),
                                          check_token(n.deployment, "deployment")))
             for n in nodes]
    users += [_user_entry(h.user, h.password, h.nkey,
                          hub_permissions(check_token(h.hub, "hub"),
                                          [check_token(d, "deployment") for d in h.deployments],
                                          h.manage_streams))
              for h in hubs]
    if admin is not None:
        users.append({"user": admin[0], "password": admin[1]})
    body: dict[str, Any] = {"users": users}  # nkey and password users share the list
    # NATS config accepts JSON for a block's body
    return "authorization " + json.dumps(body, indent=2)
