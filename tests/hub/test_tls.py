"""HTTPS for the hub's web app: `edge keys tls`, start-up checks, and the hub serving TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.cli import cli
from edge.errors import EdgeError
from edge.hub.config import load_hub_config
from edge.hub.service import Hub
from edge.hub.tls import (
    TlsFiles,
    check_tls,
    generate_tls,
    is_loopback_host,
    load_cert,
    spki_sha256_b64,
    verify_signed_by,
)
from edge.hub.web import HubServer
from tests.hub_helpers import PASSWORD, RunningHub, hub_config

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return generate_tls(tmp_path_factory.mktemp("tls"), ("localhost", "127.0.0.1", "hub.local"))


def ca_context(files: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(files.ca_cert))


def self_signed(tmp: Path, name: str, not_before: dt.datetime, not_after: dt.datetime,
                sans: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    gn: list[x509.GeneralName] = []
    for s in sans:
        try:
            gn.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            gn.append(x509.DNSName(s))
    cert = (x509.CertificateBuilder().subject_name(subj).issuer_name(subj)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(gn), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = tmp / f"{name}.crt", tmp / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


# ---------- generation ----------

def test_generate_sans_validity_perms_and_ca_signature(tls_dir: TlsFiles) -> None:
    srv, ca = load_cert(tls_dir.server_cert), load_cert(tls_dir.ca_cert)
    sans = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "hub.local"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    now = dt.datetime.now(dt.UTC)
    assert srv.not_valid_before_utc <= now < srv.not_valid_after_utc
    assert dt.timedelta(days=396) < srv.not_valid_after_utc - now <= dt.timedelta(days=397)
    assert verify_signed_by(srv, ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not srv.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in (tls_dir.ca_key, tls_dir.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # another CA did not sign it
    other = generate_tls(tls_dir.ca_cert.parent / "other", ("localhost",))
    assert not verify_signed_by(srv, load_cert(other.ca_cert))
    check_tls(tls_dir.server_cert, tls_dir.server_key, "hub.local")  # a good pair passes


def test_cli_keys_tls_defaults_days_and_no_overwrite(tmp_path: Path) -> None:
    d = tmp_path / "keys" / "tls"
    r = CliRunner().invoke(cli, ["keys", "tls", "--dir", str(d), "--days", "30"])
    assert r.exit_code == 0, r.output
    srv = load_cert(d / "server.crt")
    sans = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    left = srv.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < left <= dt.timedelta(days=30)
    before = (d / "server.key").read_bytes()
    r = CliRunner().invoke(cli, ["keys", "tls", "--dir", str(d)])
    assert isinstance(r.exception, EdgeError)
    assert "refusing to overwrite" in str(r.exception) and "--force" in str(r.exception)
    assert (d / "server.key").read_bytes() == before
    r = CliRunner().invoke(cli, ["keys", "tls", "--dir", str(d), "--force", "--host", "10.1.2.3"])
    assert r.exit_code == 0, r.output
    assert (d / "server.key").read_bytes() != before
    with pytest.raises(EdgeError, match="--days"):
        generate_tls(tmp_path / "x", ("localhost",), days=0)


# ---------- bad input ----------

def test_missing_unreadable_and_garbage_files(tls_dir: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(EdgeError, match="cannot read"):
        check_tls(tmp_path / "nope.crt", tls_dir.server_key, "127.0.0.1")
    with pytest.raises(EdgeError, match="cannot read"):
        check_tls(tls_dir.server_cert, tmp_path / "nope.key", "127.0.0.1")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a cert\n")
    with pytest.raises(EdgeError, match="not a PEM certificate"):
        check_tls(junk, tls_dir.server_key, "127.0.0.1")
    with pytest.raises(EdgeError, match="not a PEM private key"):
        check_tls(tls_dir.server_cert, junk, "127.0.0.1")
    with pytest.raises(EdgeError, match="both tls_cert and tls_key"):
        load_hub_config(None, {"http.tls_cert": str(tls_dir.server_cert)})


def test_key_not_matching_cert_is_refused(tls_dir: TlsFiles) -> None:
    with pytest.raises(EdgeError, match="does not match"):
        check_tls(tls_dir.server_cert, tls_dir.ca_key, "127.0.0.1")


def test_expired_and_not_yet_valid_refused(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    c, k = self_signed(tmp_path, "old", now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    with pytest.raises(EdgeError, match="expired"):
        check_tls(c, k, "localhost")
    c, k = self_signed(tmp_path, "future", now + dt.timedelta(days=1), now + dt.timedelta(days=9))
    with pytest.raises(EdgeError, match="not valid before"):
        check_tls(c, k, "localhost")


def test_host_not_in_sans_warns(tls_dir: TlsFiles, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edge.hub.tls"):
        check_tls(tls_dir.server_cert, tls_dir.server_key, "10.9.9.9")
        check_tls(tls_dir.server_cert, tls_dir.server_key, "other.local")
        check_tls(tls_dir.server_cert, tls_dir.server_key, "0.0.0.0")  # any interface: no warning
        check_tls(tls_dir.server_cert, tls_dir.server_key, "hub.local")
    warned = [r.getMessage() for r in caplog.records if "does not name" in r.getMessage()]
    assert len(warned) == 2 and "10.9.9.9" in warned[0] and "other.local" in warned[1]


def test_plain_http_off_loopback_refused(tmp_path: Path, tls_dir: TlsFiles) -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("localhost")
    assert is_loopback_host("::1") and not is_loopback_host("0.0.0.0")
    h = Hub(hub_config(tmp_path)).start()
    try:
        with pytest.raises(EdgeError, match="refusing plain HTTP on non-loopback") as ei:
            HubServer(h, "0.0.0.0", 0)
        assert "\n" not in str(ei.value)
        # the reverse-proxy exception binds (and the cookie is then Secure)
        HubServer(h, "0.0.0.0", 0, allow_plain_http=True)._sock.close()
        # with TLS, any interface is fine
        srv = HubServer(h, "0.0.0.0", 0, tls=(tls_dir.server_cert, tls_dir.server_key))
        assert srv.url.startswith("https://")
        srv._sock.close()
    finally:
        h.stop()
    cfg = load_hub_config(None, {"http.allow_plain_http": True})
    assert cfg.http.cookie_secure
    assert not load_hub_config(None, {}).http.cookie_secure
    assert load_hub_config(None, {"http.secure_cookie": True}).http.cookie_secure  # still works


def run_edge(*args: str) -> subprocess.CompletedProcess[str]:
    edge = Path(sys.executable).parent / "edge"
    return subprocess.run([str(edge), *args], capture_output=True, text=True, timeout=60)


def test_cli_hub_refuses_plain_non_loopback_with_one_line(tmp_path: Path) -> None:
    r = run_edge(
        "hub", "--http-host", "0.0.0.0", "--http-port", "0", "--bind", "tcp://127.0.0.1:0",
        "--db", str(tmp_path / "hub.sqlite"), "--officers", str(tmp_path / "o.json"),
        "--metrics-port", "0",
    )
    assert r.returncode == 2, r.stderr
    assert "refusing plain HTTP on non-loopback http.host 0.0.0.0" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_hub_refuses_expired_cert(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    c, k = self_signed(tmp_path, "old", now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    r = run_edge(
        "hub", "--http-port", "0", "--bind", "tcp://127.0.0.1:0", "--tls-cert", str(c),
        "--tls-key", str(k), "--db", str(tmp_path / "hub.sqlite"),
        "--officers", str(tmp_path / "o.json"), "--metrics-port", "0",
    )
    assert r.returncode == 2 and "expired" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---------- served for real ----------

def test_hub_serves_https_sign_in_and_secure_cookie(tmp_path: Path, tls_dir: TlsFiles) -> None:
    cfg = hub_config(tmp_path, **{"http.tls_cert": str(tls_dir.server_cert),
                                  "http.tls_key": str(tls_dir.server_key)})
    rh = RunningHub(cfg)
    try:
        assert rh.url.startswith("https://127.0.0.1:")
        ctx = ca_context(tls_dir)
        with httpx.Client(base_url=rh.url, verify=ctx, timeout=10) as c:
            r = c.post("/login", data={"officer": "pc1", "password": PASSWORD})
            assert r.status_code == 303
            cookie = r.headers["set-cookie"]
            assert "edge_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
            assert c.get("/api/me").status_code == 200
        # an untrusting client (system CAs only) fails the handshake: no data without the CA
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(rh.url + "/login", timeout=10)
        # plain HTTP on the TLS port gets nothing useful
        with pytest.raises(httpx.TransportError):
            httpx.get(rh.url.replace("https://", "http://") + "/login", timeout=5)
    finally:
        rh.close()
    assert spki_sha256_b64(load_cert(tls_dir.server_cert)).endswith("=")
