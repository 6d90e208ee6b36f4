"""CURVE key pairs for node <-> hub links.

Files use pyzmq's certificate format (``NAME.key`` public, ``NAME.key_secret`` secret) so
``zmq.auth`` tools read them. The secret file is created with mode 0600 from the first byte
(no window where another user could read it). A node's key name is its ``node_id``: the hub
uses the file name of an allowed public key as the node's authenticated identity.
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import zmq
import zmq.auth

from edge.errors import EdgeError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KeyFileError(EdgeError):
    """A key file is missing, unreadable or malformed."""


def _key_text(kind: str, public: bytes, secret: bytes | None) -> str:
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines = [
        f"#   ****  Generated on {now} by edge keys  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
    ]
    if secret is not None:
        lines.append("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.")
    else:
        lines.append("#   Public: copy to the peer (hub: allowed node keys dir; node: hub key).")
    lines += ["", "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def check_name(name: str) -> str:
    """Key names become file names and node identities: keep them plain."""
    if not _NAME.match(name):
        raise EdgeError(
            f"bad key name {name!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(start with a letter or digit)"
        )
    return name


def generate_keypair(name: str, directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Create ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``."""
    check_name(name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public_path = directory / f"{name}.key"
    secret_path = directory / f"{name}.key_secret"
    if not force:
        for p in (public_path, secret_path):
            if p.exists():
                raise EdgeError(f"key file exists: {p} (use --force to replace it)")
    public, secret = zmq.curve_keypair()
    for path, text, mode in (
        (secret_path, _key_text("**Secret**", public, secret), 0o600),
        (public_path, _key_text("Public", public, None), 0o644),
    ):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT mode is masked by umask; be exact
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return public_path, secret_path


def load_public_key(path: Path) -> bytes:
    """Z85 public key from a ``.key`` (or ``.key_secret``) file."""
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError):
        raise KeyFileError(f"cannot read CURVE public key from {path}") from None
    if len(public) != 40:
        raise KeyFileError(f"malformed CURVE public key in {path}")
    return public


def load_secret_key(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a ``.key_secret`` file; refuses loose permissions."""
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        raise KeyFileError(f"CURVE secret key file not found: {path}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"CURVE secret key {path} is readable by others (mode {mode:o}); chmod 600 it"
        )
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError):
        raise KeyFileError(f"cannot read CURVE secret key from {path}") from None
    if secret is None or len(secret) != 40 or len(public) != 40:
        raise KeyFileError(f"{path} holds no valid CURVE secret key")
    return public, secret


def load_allowed_keys(directory: Path) -> dict[bytes, str]:
    """Allow-list: Z85 public key -> name (file stem) for every ``*.key`` in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(f"allowed node keys directory not found: {directory}")
    allowed: dict[bytes, str] = {}
    for p in sorted(directory.glob("*.key")):
        allowed[load_public_key(p)] = p.stem
    return allowed
