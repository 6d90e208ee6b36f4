"""The hub's VAPID key (RFC 8292) for web push: made by `edge keys vapid`, read by
edge.hub.push. Only `cryptography` here, so `edge keys` works without the hub extra."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.errors import EdgeError


class VapidKeyError(EdgeError):
    """A VAPID key file cannot be written."""


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def generate_vapid_key(directory: Path, force: bool = False) -> tuple[Path, str]:
    """Write ``vapid_private.pem`` (P-256, PKCS#8, mode 0600); return it and the public key
    (uncompressed point, base64url: the browser's applicationServerKey)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "vapid_private.pem"
    if path.exists() and not force:
        raise VapidKeyError(f"{path} exists (use --force to replace it; tablets then re-subscribe)")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    return path, public_key_of(key)


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


