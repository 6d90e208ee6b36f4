"""Hub configuration (TOML, validated at start so a typo stops the hub with one line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.config import read_toml, validation_error
from edge.errors import ConfigError
from edge.link.nats_fabric import NatsSettings, check_token
from edge.link.zeromq import CurveServerConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZmqSection(_Section):
    bind: str = Field("tcp://127.0.0.1:5560", min_length=6)
    hub_secret_key: str | None = Field(None, description="hub .key_secret file; None = no CURVE")
    allowed_node_keys_dir: str | None = Field(None, description="dir of allowed NODE.key files")

    @model_validator(mode="after")
    def _both_or_none(self) -> ZmqSection:
        if bool(self.hub_secret_key) != bool(self.allowed_node_keys_dir):
            raise ValueError("set both hub_secret_key and allowed_node_keys_dir, or neither")
        return self


class HttpSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tls_cert: str | None = Field(None, description="server certificate PEM; set = HTTPS")
    tls_key: str | None = Field(None, description="its private key PEM (unencrypted, 0600)")
    allow_plain_http: bool = Field(
        False, description="serve plain HTTP on a non-loopback host: ONLY behind a "
        "TLS-terminating reverse proxy on the same host (the cookie is then Secure)")
    secure_cookie: bool = Field(
        False, description="mark the session cookie Secure without TLS here (reverse proxy); "
        "always on when tls_cert is set")
    session_hours: float = Field(12.0, gt=0, le=24)

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSection:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("set both tls_cert and tls_key, or neither")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def cookie_secure(self) -> bool:
        """Secure under TLS, behind a declared TLS proxy, or when asked for explicitly."""
        return self.tls or self.allow_plain_http or self.secure_cookie


class StoreSection(_Section):
    path: str = "hub-state/hub.sqlite"
    officers_file: str = "hub-state/officers.json"


class RetentionSection(_Section):
    days: float = Field(31, gt=0, le=31, description="may be set lower, never higher")
    purge_rejected_probe: bool = True
    purge_interval_s: float = Field(600.0, ge=1, le=86400)


class UiSection(_Section):
    node_lost_after_s: float = Field(5.0, ge=1, le=3600)
    undo_s: float = Field(10.0, ge=0, le=60, description="a decision can be undone this long "
                          "before it is final, counted and sent to the node")
    expected_nodes: list[str] = Field(default_factory=list)


# The push services of Chrome/Android, Firefox, Safari/iOS and Edge (a leading dot: any host
# under that domain). Endpoints elsewhere are refused: the hub must not POST where a browser
# (or a hostile account) tells it to.
PUSH_SERVICE_HOSTS = ["fcm.googleapis.com", "updates.push.services.mozilla.com",
                      "web.push.apple.com", ".push.apple.com", ".notify.windows.com"]


class PushSection(_Section):
    enabled: bool = False
    vapid_private_key: str | None = Field(None, description="P-256 PEM from `edge keys vapid`")
    subject: str | None = Field(None, description="mailto: or https: contact for the push "
                                "service (RFC 8292)")
    ttl_s: int = Field(300, ge=0, le=86400, description="a push older than this is dropped "
                       "by the push service")
    timeout_s: float = Field(10.0, gt=0, le=60)
    allowed_endpoint_hosts: list[str] = Field(default_factory=lambda: list(PUSH_SERVICE_HOSTS))

    @model_validator(mode="after")
    def _complete(self) -> PushSection:
        if self.enabled and not (self.vapid_private_key and self.subject):
            raise ValueError("push.enabled needs vapid_private_key and subject")
        if self.subject is not None and not self.subject.startswith(("mailto:", "https://")):
            raise ValueError("push.subject must start with mailto: or https://")
        return self


class MetricsSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9101, ge=0, le=65535, description="0 = off")


class NatsSection(_Section):
    """The NATS JetStream fabric (``transport = "nats"``): several hubs, many deployments."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    hub_name: str = Field("hub-1", description="this hub's fabric identity (its consumers)")
    deployments: list[str] = Field(default_factory=list, description="deployments it serves")
    user: str | None = None
    password_file: str | None = None
    nkey_seed_file: str | None = None
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout_s: float = Field(2.0, gt=0, le=60)
    create_streams: bool = Field(False, description="create the two streams if missing "
                                 "(needs credentials that may)")
    replicas: int = Field(1, ge=1, le=5, description="stream replicas when creating them")
    rejected_stream_grace_s: float = Field(
        600.0, ge=0, le=86400, description="a rejected alert (its probe) is deleted from the "
        "stream this long after the decision: a hub away for longer never sees it")

    def settings(self) -> NatsSettings:
        def p(v: str | None) -> Path | None:
            return Path(v) if v else None

        return NatsSettings(
            servers=tuple(self.servers), user=self.user, password_file=p(self.password_file),
            nkey_seed_file=p(self.nkey_seed_file), creds_file=p(self.creds_file),
            tls_ca=p(self.tls_ca), tls_cert=p(self.tls_cert), tls_key=p(self.tls_key),
            connect_timeout_s=self.connect_timeout_s, name=f"hub {self.hub_name}")


class HubConfig(_Section):
    transport: Literal["zmq", "nats"] = "zmq"
    nats: NatsSection = NatsSection()
    zmq: ZmqSection = ZmqSection()
    http: HttpSection = HttpSection()
    store: StoreSection = StoreSection()
    retention: RetentionSection = RetentionSection()
    ui: UiSection = UiSection()
    metrics: MetricsSection = MetricsSection()
    push: PushSection = PushSection()

    @model_validator(mode="after")
    def _fabric(self) -> HubConfig:
        if self.transport == "nats":
            if not self.nats.deployments:
                raise ValueError("transport nats needs nats.deployments (the ones it serves)")
            try:
                check_token(self.nats.hub_name, "nats.hub_name")
                for d in self.nats.deployments:
                    check_token(d, "deployment")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def curve(self) -> CurveServerConfig | None:
        """CURVE server settings, or None for plain (loopback-only) transport."""
        if not self.zmq.hub_secret_key:
            return None
        return CurveServerConfig(
            Path(self.zmq.hub_secret_key), Path(self.zmq.allowed_node_keys_dir or "")
        )


def load_hub_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None
                    ) -> HubConfig:
    """Read a hub TOML file (all keys optional), apply overrides, validate."""
    data: dict[str, Any] = read_toml(path, "hub config") if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if "." not in dotted:  # a top-level key (transport)
            data[dotted] = value
            continue
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    try:
        return HubConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error("hub config", path, exc) from None
