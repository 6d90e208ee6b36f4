"""Fabric encryption and per-node identities against a real nats-server on 127.0.0.1: mutual
TLS (a throwaway CA made here), a node's alert over tls:// to a hub reading over TLS, refusals
of a wrong CA and of a client without a certificate (the alert stays in the outbox), and NKey
users (a node publishes only as itself; an unknown seed is refused)."""

from __future__ import annotations

import datetime
import ipaddress
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.config import load_config
from edge.errors import EdgeError
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.metrics import LinkMetrics
from edge.link.nats_fabric import HubAccount, NatsSettings, NodeAccount
from edge.link.nats_sender import NatsSender
from edge.node.app import nats_settings
from tests.hub_helpers import RunningHub, hub_config, metric, wait_for
from tests.nats_helpers import Fabric, need_nats_server

pytestmark = pytest.mark.unit

DEP = "dep-test"
JPEG = synthetic_jpeg(3)


@pytest.fixture(scope="module")
def nats_bin() -> str:
    return need_nats_server()


# -- a throwaway PKI ---------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class CA:
    """A self-signed CA in ``root`` that issues server and client certificates."""

    def __init__(self, root: Path, cn: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self.key, hashes.SHA256()))
        self.pem = _write_cert(self.cert, root / "ca.pem")

    def issue(self, cn: str, server: bool) -> tuple[Path, Path]:
        """(cert.pem, key.pem): for 127.0.0.1/localhost if ``server``, else a client's."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False)
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                 critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        return (_write_cert(cert, self.root / f"{cn}.pem"),
                _write_key(key, self.root / f"{cn}.key"))


def _tls_fabric(tmp_path: Path) -> tuple[Fabric, CA, dict[str, tuple[Path, Path]]]:
    """One nats-server with mutual TLS (verify: true) and JetStream; client pairs by name."""
    ca = CA(tmp_path / "pki", "edge test fabric CA")
    srv_cert, srv_key = ca.issue("nats-server", server=True)
    pairs = {n: ca.issue(n, server=False) for n in ("admin", "hub-a", "node-1")}
    admin = NatsSettings(tls_ca=ca.pem, tls_cert=pairs["admin"][0],
                         tls_key=pairs["admin"][1]).ssl_context()
    block = (f'tls {{ cert_file: "{srv_cert}", key_file: "{srv_key}", ca_file: "{ca.pem}", '
             "verify: true, timeout: 2 }")
    return Fabric(tmp_path / "nats", 1, extra=block, admin_tls=admin).start(), ca, pairs


def node_sender(tmp: Path, nats: dict[str, Any], node: str, metrics: LinkMetrics) -> NatsSender:
    """The node's sender as ``alerts.transport = "nats"`` builds it from its config."""
    cfg = load_config(None, {"node": {"node_id": node},
                             "alerts": {"transport": "nats", "nats": nats}})
    tmp.mkdir(parents=True, exist_ok=True)
    return NatsSender(tmp / "outbox.sqlite", nats_settings(cfg), node, DEP, metrics=metrics,
                      ack_timeout=1.0, max_backoff=1.0, heartbeat_interval=0.5).start()


def fabric_hub(tmp: Path, fabric: Fabric, **over: Any) -> RunningHub:
    settings = {"transport": "nats", "nats.servers": list(fabric.urls), "nats.hub_name": "a",
                "nats.deployments": [DEP], "ui.undo_s": 0}
    settings.update(over)
    return RunningHub(hub_config(tmp / "hub-a", **settings))


def test_mutual_tls_delivers_and_refuses_wrong_ca_and_missing_cert(
        tmp_path: Path, nats_bin: str, caplog: pytest.LogCaptureFixture) -> None:
    fabric, ca, pairs = _tls_fabric(tmp_path)
    assert all(u.startswith("tls://127.0.0.1:") for u in fabric.urls)
    hub = None
    senders: list[NatsSender] = []
    try:
        hub_cert, hub_key = pairs["hub-a"]
        hub = fabric_hub(tmp_path, fabric, **{"nats.tls_ca": str(ca.pem),
                                              "nats.tls_cert": str(hub_cert),
                                              "nats.tls_key": str(hub_key)})
        good_m = LinkMetrics()
        cert, key = pairs["node-1"]
        tls = {"servers": list(fabric.urls), "tls_ca": str(ca.pem), "tls_cert": str(cert),
               "tls_key": str(key)}
        good = node_sender(tmp_path / "good", tls, "node-1", good_m)
        senders.append(good)
        a1 = synthetic_alert("node-1", n=1, deployment_id=DEP)
        good.send(a1, JPEG)
        wait_for(lambda: good.pending() == 0, 20, "alert acked over TLS")
        wait_for(lambda: hub.store.alert_ids() == [a1.alert_id], 20, "alert on the hub (TLS)")
        c = hub.client()
        got = c.get("/api/alerts?limit=50").json()["alerts"]
        c.close()
        assert [x["alert_id"] for x in got] == [a1.alert_id]  # once
        assert good.hub_connected

        # a node trusting another CA: it refuses the server, says so in one line, keeps the alert
        other = CA(tmp_path / "other-pki", "some other CA")
        caplog.clear()
        caplog.set_level(logging.WARNING, logger="edge")
        wrong_m = LinkMetrics()
        wrong = node_sender(tmp_path / "wrong-ca", {**tls, "tls_ca": str(other.pem)}, "node-1",
                            wrong_m)
        senders.append(wrong)
        a2 = synthetic_alert("node-1", n=2, deployment_id=DEP)
        wrong.send(a2, JPEG)
        wait_for(lambda: metric(wrong_m.registry, "edge_node_fabric_errors_total",
                                {"reason": "tls"}) >= 1, 20, "wrong CA counted as tls")
        assert wrong.pending() == 1 and not wrong.hub_connected
        lines = [r for r in caplog.records if "NATS fabric" in r.getMessage()
                 and "certificate verify failed" in r.getMessage()]
        assert lines, [r.getMessage() for r in caplog.records]
        for r in lines:
            assert "\n" not in r.getMessage() and r.exc_info is None  # one line, no traceback

        # a node without a client certificate: the server (verify: true) refuses it
        bare_m = LinkMetrics()
        bare = node_sender(tmp_path / "no-cert", {"servers": list(fabric.urls),
                                                  "tls_ca": str(ca.pem)}, "node-1", bare_m)
        senders.append(bare)
        bare.send(synthetic_alert("node-1", n=3, deployment_id=DEP), JPEG)
        wait_for(lambda: metric(bare_m.registry, "edge_node_fabric_errors_total",
                                {"reason": "tls"}) >= 1, 20, "missing client certificate refused")
        assert bare.pending() == 1 and not bare.hub_connected

        assert hub.store.alert_ids() == [a1.alert_id]  # nothing else arrived
        good.send(synthetic_alert("node-1", n=4, deployment_id=DEP), JPEG)
        wait_for(lambda: len(hub.store.alert_ids()) == 2, 20, "good node still delivers")

        # a hub trusting another CA stops at start with one line, as wrong credentials do
        with pytest.raises(EdgeError, match="TLS handshake failed"):
            fabric_hub(tmp_path / "hub-wrong-ca", fabric, **{
                "nats.tls_ca": str(other.pem), "nats.tls_cert": str(hub_cert),
                "nats.tls_key": str(hub_key)})
    finally:
        for x in senders:
            x.close(timeout=0)
        if hub is not None:
            hub.close()
        fabric.stop()


def _user_seed(path: Path) -> str:
    """A fresh NKey user seed written to ``path`` (0600); its public key (U...)."""
    nkeys = pytest.importorskip("nkeys", reason="nkeys is needed for NATS NKey users")
    from nacl.signing import SigningKey

    seed = nkeys.encode_seed(bytes(SigningKey.generate()), nkeys.PREFIX_BYTE_USER)
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    public: str = nkeys.from_seed(bytearray(seed)).public_key.decode()
    assert public.startswith("U")
    return public


def test_nkey_node_publishes_only_as_itself(tmp_path: Path, nats_bin: str) -> None:
    seeds = {n: tmp_path / f"{n}.nk" for n in ("node-1", "node-2", "stranger")}
    pub = {n: _user_seed(p) for n, p in seeds.items()}
    nodes = [NodeAccount("node-1", DEP, nkey=pub["node-1"]),
             NodeAccount("node-2", "other", nkey=pub["node-2"])]
    (tmp_path / "hub.pw").write_text("pw-hub-a\n")
    fabric = Fabric(tmp_path / "nats", 1, nodes=nodes,
                    hubs=[HubAccount("a", (DEP,), "hub-a", "pw-hub-a")]).start()
    hub = None
    senders: list[NatsSender] = []
    try:
        hub = fabric_hub(tmp_path, fabric, **{"nats.user": "hub-a",
                                              "nats.password_file": str(tmp_path / "hub.pw")})
        servers = list(fabric.urls)
        good_m = LinkMetrics()
        good = node_sender(tmp_path / "good", {"servers": servers,
                                               "nkey_seed_file": str(seeds["node-1"])},
                           "node-1", good_m)
        senders.append(good)
        a1 = synthetic_alert("node-1", n=1, deployment_id=DEP)
        good.send(a1, JPEG)
        wait_for(lambda: hub.store.alert_ids() == [a1.alert_id], 20, "NKey node's alert stored")

        # node-2's seed used to publish as node-1: the server refuses the subject, counted
        imp_m = LinkMetrics()
        imp = node_sender(tmp_path / "imp", {"servers": servers,
                                             "nkey_seed_file": str(seeds["node-2"])},
                          "node-1", imp_m)
        senders.append(imp)
        imp.send(synthetic_alert("node-1", n=2, deployment_id=DEP), JPEG)
        wait_for(lambda: metric(imp_m.registry, "edge_node_fabric_errors_total",
                                {"reason": "permission"}) >= 1, 20, "impersonation refused")
        assert imp.pending() == 1

        # a seed the server does not know: never connected, counted as auth, alert kept
        bad_m = LinkMetrics()
        bad = node_sender(tmp_path / "bad", {"servers": servers,
                                             "nkey_seed_file": str(seeds["stranger"])},
                          "node-1", bad_m)
        senders.append(bad)
        bad.send(synthetic_alert("node-1", n=3, deployment_id=DEP), JPEG)
        wait_for(lambda: metric(bad_m.registry, "edge_node_fabric_errors_total",
                                {"reason": "auth"}) >= 1, 20, "unknown NKey refused")
        assert bad.pending() == 1 and not bad.hub_connected
        assert hub.store.alert_ids() == [a1.alert_id]
    finally:
        for x in senders:
            x.close(timeout=0)
        if hub is not None:
            hub.close()
        fabric.stop()
