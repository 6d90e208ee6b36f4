"""Per-officer credentials for the tablet app: scrypt hashes in a 0600 JSON file.

Why per-officer: every decision on an alert is attributed to a named officer in the node's
audit log, so shared logins are not acceptable. Passwords are hashed with scrypt (memory-hard)
and a random salt; verification is constant-time and costs the same for unknown names.
Guessing is slowed per address and per (name, address) by edge.hub.throttle, never per name
alone, so nobody can lock an officer out by guessing their name from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path

from edge.errors import EdgeError
from edge.hub.throttle import LoginThrottle

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 10
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024


class OfficerError(EdgeError):
    """Officer file or name problem."""


def check_officer_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise OfficerError(
            f"bad officer name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-'"
        )
    return name


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) for ``password``."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM,
                        dklen=_DKLEN)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(dk).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored scrypt hash."""
    try:
        algo, n, r, p, salt_b64, dk_b64 = stored.split("$")
        if algo != "scrypt":
            return False
        salt, want = base64.b64decode(salt_b64), base64.b64decode(dk_b64)
        got = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                             maxmem=_MAXMEM, dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


_DUMMY_HASH = hash_password(secrets.token_hex(16))


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise OfficerError(f"cannot read officers file {path}") from None
    officers = data.get("officers") if isinstance(data, dict) else None
    if not isinstance(officers, dict):
        raise OfficerError(f"officers file {path} is malformed")
    return officers


def _write(path: Path, officers: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps({"version": 1, "officers": officers}, indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def add_officer(path: Path, name: str, password: str, replace: bool = False) -> None:
    """Add (or with ``replace`` reset) an officer's credentials."""
    check_officer_name(name)
    if len(password) < MIN_PASSWORD:
        raise OfficerError(f"password too short: at least {MIN_PASSWORD} characters")
    path = Path(path)
    officers = _read(path)
    if name in officers and not replace:
        raise OfficerError(f"officer {name!r} exists (use --replace to reset the password)")
    officers[name] = {
        "hash": hash_password(password),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write(path, officers)


def remove_officer(path: Path, name: str) -> None:
    path = Path(path)
    officers = _read(path)
    if name not in officers:
        raise OfficerError(f"no officer {name!r} in {path}")
    del officers[name]
    _write(path, officers)


class Officers:
    """Credential checks with a reload when the file changes, throttled against guessing."""

    def __init__(self, path: Path, throttle: LoginThrottle | None = None) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._officers: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        # Counts next to the officers file (the hub's state dir): they survive a restart.
        self.throttle = throttle or LoginThrottle(self.path.parent / "login-throttle.sqlite")
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._officers, self._mtime = {}, None
            return
        if mtime != self._mtime:
            self._officers = _read(self.path)
            self._mtime = mtime

    def names(self) -> list[str]:
        with self._lock:
            self._reload()
            return sorted(self._officers)

    def exists(self, name: str) -> bool:
        with self._lock:
            self._reload()
            return name in self._officers

    def check(self, name: str, password: str, client: str = "") -> tuple[bool, str]:
        """(ok, reason) where reason is ok|unknown_officer|bad_password|throttled|bad_input.

        A throttled attempt is refused before the password is looked at, so waiting is the
        only way on; ``throttle.wait_s(name, client)`` says for how long.
        """
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
            return False, "bad_input"
        if self.throttle.wait_s(name, client) > 0:
            return False, "throttled"
        with self._lock:
            self._reload()
            rec = self._officers.get(name)
        ok = verify_password(password, rec["hash"] if rec else _DUMMY_HASH) and rec is not None
        if ok:
            self.throttle.succeeded(name, client)
            return True, "ok"
        self.throttle.failed(name, client)
        return False, "unknown_officer" if rec is None else "bad_password"
