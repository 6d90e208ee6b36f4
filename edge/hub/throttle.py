"""Sign-in throttling that slows guessing without handing anyone a lockout weapon.

Failures are counted per client address and per (officer name, address) pair, never per name
alone: counting per name would let anyone keep a named officer off the tablet with a few wrong
passwords a minute. Past a small free allowance each further failure doubles the wait before
that key may try again, up to a cap. A correct password from an address that has not been
guessing is therefore never refused, whoever is guessing that officer's name elsewhere.

Counts live in a small SQLite file next to the officers file so a hub restart does not hand an
attacker a fresh allowance. Keys are stored as HMACs under a random per-file salt: a name field
sometimes holds a mistyped password, and it must not sit on disk in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures(
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Rule:
    """``free`` failures cost nothing; the n-th after them waits ``base_s * 2**(n-1)``, capped."""

    free: int
    base_s: float
    cap_s: float

    def wait_s(self, failures: int) -> float:
        over = failures - self.free
        if over <= 0:
            return 0.0
        return min(self.cap_s, self.base_s * math.pow(2.0, min(over - 1, 60)))


@dataclass(frozen=True)
class ThrottlePolicy:
    # An address may mistype a few names and passwords (several officers share a tablet).
    address: Rule = Rule(free=10, base_s=1.0, cap_s=900.0)
    # One name from one address: a human needs a handful of tries, a script needs thousands.
    pair: Rule = Rule(free=3, base_s=2.0, cap_s=3600.0)
    # A key with no failure for this long starts again from zero.
    forget_after_s: float = 6 * 3600.0
    # Bound the file under a flood from many addresses: the oldest entries go first.
    max_entries: int = 100_000


def client_key(address: str) -> str:
    """The throttled unit for an address: the address itself, or its /64 for IPv6 (one
    subscriber usually holds a whole /64, so single IPv6 addresses cost an attacker nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class LoginThrottle:
    """``wait_s(name, address)`` before checking a password; ``failed``/``succeeded`` after."""

    def __init__(self, path: Path | None, policy: ThrottlePolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._salt = b""

    def _conn(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        target = ":memory:"
        if self.path is not None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
                target = str(self.path)
            except OSError as exc:
                log.warning("sign-in throttle counts kept in memory only (lost on restart): "
                            "cannot open %s: %s", self.path, exc.strerror or exc)
        db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            row = db.execute("SELECT v FROM meta WHERE k='salt'").fetchone()
            if row is None:
                salt = secrets.token_hex(32)
                db.execute("INSERT INTO meta(k, v) VALUES('salt', ?)", (salt,))
            else:
                salt = row[0]
            self._salt = bytes.fromhex(salt)
        except (sqlite3.DatabaseError, ValueError) as exc:
            # A corrupt throttle file must not stop sign-in: start afresh in memory and say so.
            db.close()
            log.warning("sign-in throttle file %s unreadable (%s); counting in memory",
                        self.path, exc)
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.executescript(_SCHEMA)
            self._salt = secrets.token_bytes(32)
        self._db = db
        return db

    def _keys(self, name: str, address: str) -> tuple[tuple[str, Rule], tuple[str, Rule]]:
        who = client_key(address)
        return ((self._mac("a\0" + who), self.policy.address),
                (self._mac("p\0" + name + "\0" + who), self.policy.pair))

    def _mac(self, text: str) -> str:
        return hmac.new(self._salt, text.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def _count(self, db: sqlite3.Connection, key: str, now: float) -> int:
        row = db.execute("SELECT count, last FROM failures WHERE key=?", (key,)).fetchone()
        if row is None or now - row[1] >= self.policy.forget_after_s:
            return 0
        return int(row[0])

    def wait_s(self, name: str, address: str) -> float:
        """Seconds this (name, address) must wait before a password is even checked; 0 = go."""
        now = self._clock()
        with self._lock:
            db = self._conn()
            wait = 0.0
            for key, rule in self._keys(name, address):
                row = db.execute("SELECT count, last FROM failures WHERE key=?",
                                 (key,)).fetchone()
                if row is None or now - row[1] >= self.policy.forget_after_s:
                    continue
                wait = max(wait, row[1] + rule.wait_s(int(row[0])) - now)
            return max(0.0, wait)

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            db = self._conn()
            for key, _rule in self._keys(name, address):
                n = self._count(db, key, now) + 1
                db.execute("INSERT INTO failures(key, count, last) VALUES(?, ?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET count=excluded.count, "
                           "last=excluded.last", (key, n, now))
            self._prune(db, now)

    def succeeded(self, name: str, address: str) -> None:
        """A right password clears the pair; the address keeps its count (it may be guessing
        other names and own one account)."""
        with self._lock:
            db = self._conn()
            _addr, (pair, _rule) = self._keys(name, address)
            db.execute("DELETE FROM failures WHERE key=?", (pair,))

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM failures WHERE last < ?", (now - self.policy.forget_after_s,))
        n = db.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
        if n > self.policy.max_entries:
            db.execute("DELETE FROM failures WHERE key IN (SELECT key FROM failures "
                       "ORDER BY last LIMIT ?)", (n - self.policy.max_entries,))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

