"""Ed25519 keys that authenticate audit records (the ``cryptography`` library does the crypto).

A hash chain alone proves nothing against someone who can write the file: they delete a
record, edit a count and recompute every ``seq``/``prev``/``hash`` with the same public
function. A signature over each record's hash needs the node's private key, which lives outside
the state directory (``audit.signing_key``, a 0600 PEM file beside the watchlist key), so a
rewrite without it is caught by ``edge audit verify --public-key``.

The key id (first 16 hex digits of the SHA-256 of the raw public key) is inside the hashed
record, so which key signed what is chained too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.errors import EdgeError

PRIVATE_FILE = "audit.key"
PUBLIC_FILE = "audit.pub"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_b64(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_from_b64(text: str) -> Ed25519PublicKey:
    """The raw 32-byte key in base64 (as a rotation record carries it), or ValueError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("public key is not base64") from None
    if len(raw) != 32:
        raise ValueError("public key is not 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


class AuditSigner:
    """Signs record hashes with one node's private key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = key_id(self.public)

    def sign(self, record_hash: str) -> str:
        return base64.b64encode(self._private.sign(record_hash.encode("ascii"))).decode()

    @classmethod
    def from_file(cls, path: Path) -> AuditSigner:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise EdgeError(f"audit signing key {path} not found "
                            "(make one with `edge keys audit --dir DIR`)") from None
        except OSError as exc:
            raise EdgeError(f"cannot read audit signing key {path}: {exc.strerror}") from None
        if path.stat().st_mode & 0o077:
            raise EdgeError(f"audit signing key {path} is readable by others; chmod 600 it")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise EdgeError(f"audit signing key {path} is not an unencrypted PEM private key"
                            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EdgeError(f"audit signing key {path} is not an Ed25519 key")
        return cls(key)


def verify_signature(public: Ed25519PublicKey, record_hash: str, sig: str) -> bool:
    try:
        public.verify(base64.b64decode(sig, validate=True), record_hash.encode("ascii"))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def load_public_key(path: Path) -> Ed25519PublicKey:
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise EdgeError(f"audit public key {path} not found") from None
    except (ValueError, TypeError):
        raise EdgeError(f"audit public key {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EdgeError(f"audit public key {path} is not an Ed25519 key")
    return key


def generate_signing_key(directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Write audit.key (PKCS8 PEM, 0600) and audit.pub (PEM) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    priv_path, pub_path = directory / PRIVATE_FILE, directory / PUBLIC_FILE
    if not force and (priv_path.exists() or pub_path.exists()):
        raise EdgeError(f"{priv_path} exists; pass --force to replace it (the old key then "
                        "no longer signs: rotate with `edge audit rotate-key` instead)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = priv_path.with_name(priv_path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, priv_path)
    pub_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path
