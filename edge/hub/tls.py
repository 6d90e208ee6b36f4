"""TLS for the hub's web app: a small private CA and server certificate, and start-up checks.

The certificates are made with the ``cryptography`` library (no openssl subprocess). The CA
exists so tablets can trust one root (``ca.crt``) while the server certificate is renewed; its
key never needs to leave the machine that ran ``edge keys tls``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.errors import EdgeError

log = logging.getLogger(__name__)

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file created 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to an existing file


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate_tls(directory: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS, days: int = 397,
                 force: bool = False) -> TlsFiles:
    """Write ca.crt/ca.key and server.crt/server.key (SANs = ``hosts``) into ``directory``."""
    if not hosts:
        raise EdgeError("edge keys tls: give at least one --host")
    if not 1 <= days <= 3650:
        raise EdgeError(f"edge keys tls: --days must be 1..3650, got {days}")
    sans = []
    for h in hosts:
        if not h or any(c.isspace() for c in h):
            raise EdgeError(f"edge keys tls: bad host name {h!r}")
        sans.append(_san(h))
    files = TlsFiles(directory / CA_CERT, directory / CA_KEY, directory / SERVER_CERT,
                     directory / SERVER_KEY)
    existing = [str(p) for p in vars(files).values() if Path(p).exists()]
    if existing and not force:
        raise EdgeError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    directory.mkdir(parents=True, exist_ok=True)

    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge hub private CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(files.ca_key, _key_pem(ca_key))
    _write_private(files.server_key, _key_pem(srv_key))
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    # server.crt holds the leaf only; clients trust ca.crt
    files.server_cert.write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    return files


def load_cert(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgeError(f"TLS certificate {path}: cannot read ({exc.strerror})") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise EdgeError(f"TLS certificate {path}: not a PEM certificate") from None


def _load_key(path: Path) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgeError(f"TLS key {path}: cannot read ({exc.strerror})") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise EdgeError(f"TLS key {path}: encrypted keys are not supported") from None
    except ValueError:
        raise EdgeError(f"TLS key {path}: not a PEM private key") from None


def spki_sha256_b64(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo (Chromium's SPKI pin form)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _host_in_sans(cert: x509.Certificate, host: str) -> bool:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        return ip in ext.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    host = host.lower().rstrip(".")
    for name in ext.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host or (name.startswith("*.") and host.split(".", 1)[-1] == name[2:]
                            and "." in host):
            return True
    return False


def check_tls(cert_path: Path, key_path: Path, host: str) -> x509.Certificate:
    """Refuse an unusable cert/key pair with one line; warn when ``host`` is not in its SANs."""
    cert = load_cert(cert_path)
    key = _load_key(key_path)
    pub = key.public_key() if hasattr(key, "public_key") else None
    cert_pub = cert.public_key()
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if pub is None or pub.public_bytes(*der) != cert_pub.public_bytes(*der):
        raise EdgeError(f"TLS key {key_path} does not match certificate {cert_path}")
    now = _now()
    if now < cert.not_valid_before_utc:
        raise EdgeError(f"TLS certificate {cert_path} is not valid before "
                        f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)")
    if now >= cert.not_valid_after_utc:
        raise EdgeError(f"TLS certificate {cert_path} expired on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (edge keys tls --force)")
    if host not in ("0.0.0.0", "::", "") and not _host_in_sans(cert, host):
        log.warning("TLS certificate %s does not name http.host %s: browsers will refuse it "
                    "(edge keys tls --host %s)", cert_path, host, host)
    return cert


def verify_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca`` issued and signed ``cert`` (tests; an operator's sanity check)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback IPs (names are not resolved: a name is not loopback)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
