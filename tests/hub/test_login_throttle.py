"""Sign-in throttling: guessing gets slow fast, nobody can lock an officer out from elsewhere,
counts survive a restart, keys are not stored in clear. The figures are printed (-s) and go
into docs/SECURITY.md."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from edge.hub.officers import Officers, add_officer
from edge.hub.throttle import LoginThrottle, ThrottlePolicy, client_key

pytestmark = pytest.mark.unit

PASSWORD = "correct horse battery"
GUESSES = 1000


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def _attack(th: LoginThrottle, clock: Clock, names: list[str], address: str) -> float:
    """An attacker who waits exactly as long as told before each guess; returns the seconds."""
    start = clock.t
    for i in range(GUESSES):
        clock.t += th.wait_s(names[i % len(names)], address)
        th.failed(names[i % len(names)], address)
    return clock.t - start


def test_one_address_guessing_one_name_is_slowed_to_days(tmp_path: Path) -> None:
    clock = Clock()
    th = LoginThrottle(tmp_path / "t.sqlite", clock=clock)
    spent = _attack(th, clock, ["pc1"], "203.0.113.9")
    print(f"\n{GUESSES} guesses at one name from one address: {spent / 3600:.0f} h")
    assert spent >= 24 * 3600


def test_one_address_guessing_many_names_is_slowed_too(tmp_path: Path) -> None:
    clock = Clock()
    th = LoginThrottle(tmp_path / "t.sqlite", clock=clock)
    spent = _attack(th, clock, [f"pc{i}" for i in range(GUESSES)], "203.0.113.9")
    print(f"\n{GUESSES} guesses at {GUESSES} names from one address: {spent / 3600:.0f} h")
    assert spent >= 24 * 3600


def test_a_whole_ipv6_64_counts_as_one_address(tmp_path: Path) -> None:
    clock = Clock()
    th = LoginThrottle(tmp_path / "t.sqlite", clock=clock)
    spent = 0.0
    for i in range(200):  # a new address of the same /64 for every guess
        addr = f"2001:db8:1:2::{i + 1:x}"
        spent += th.wait_s("pc1", addr)
        clock.t += th.wait_s("pc1", addr)
        th.failed("pc1", addr)
    assert spent >= 3600
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("testclient") == "testclient"


def test_real_officer_signs_in_at_once_during_an_attack_and_counts_survive_restart(
        tmp_path: Path) -> None:
    off = tmp_path / "hub-state" / "officers.json"
    add_officer(off, "pc1", PASSWORD)
    clock = Clock()
    db = tmp_path / "hub-state" / "login-throttle.sqlite"
    officers = Officers(off, LoginThrottle(db, clock=clock))
    for _ in range(30):  # the attacker guesses pc1's password from its own address
        clock.t += officers.throttle.wait_s("pc1", "198.51.100.66")
        assert officers.check("pc1", "wrong password!", "198.51.100.66")[0] is False
    assert officers.check("pc1", PASSWORD, "198.51.100.66") == (False, "throttled")
    # the officer, on the tablet's address, is not refused, not even delayed
    assert officers.throttle.wait_s("pc1", "192.0.2.10") == 0
    assert officers.check("pc1", PASSWORD, "192.0.2.10") == (True, "ok")
    # after a restart the attacker does not get a fresh allowance
    officers.throttle.close()
    again = Officers(off, LoginThrottle(db, clock=clock))
    assert again.check("pc1", PASSWORD, "198.51.100.66") == (False, "throttled")
    assert again.throttle.wait_s("pc1", "198.51.100.66") > 600
    # quiet long enough, and the address starts from zero
    clock.t += ThrottlePolicy().forget_after_s + 1
    assert again.check("pc1", PASSWORD, "198.51.100.66") == (True, "ok")
    again.throttle.close()


def test_officers_default_throttle_file_sits_next_to_the_officers_file(tmp_path: Path) -> None:
    off = tmp_path / "state" / "officers.json"
    add_officer(off, "pc1", PASSWORD)
    o = Officers(off)
    assert o.check("nobody", "x" * 12, "c")[1] == "unknown_officer"
    f = tmp_path / "state" / "login-throttle.sqlite"
    assert f.exists() and (f.stat().st_mode & 0o077) == 0
    o.throttle.close()


def test_keys_are_not_stored_in_clear(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    th = LoginThrottle(db)
    th.failed("my-secret-password-typed-as-name", "203.0.113.9")
    th.close()
    raw = db.read_bytes()
    assert b"my-secret-password" not in raw and b"203.0.113.9" not in raw
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 1
        assert c.execute("SELECT COUNT(*) FROM failures").fetchone()[0] == 2


def test_corrupt_or_unwritable_throttle_file_does_not_stop_sign_in(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, "edge.hub.throttle")
    bad = tmp_path / "t.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    th = LoginThrottle(bad)
    th.failed("pc1", "a")
    assert th.wait_s("pc1", "a") == 0  # still counting, from zero, in memory
    assert "unreadable" in caplog.text and len(caplog.records) == 1
    assert bad.read_bytes().startswith(b"not a database")  # never overwritten: it is evidence
    nowhere = LoginThrottle(Path("/proc/nonexistent/t.sqlite"))
    for _ in range(12):
        nowhere.failed("pc1", "a")
    assert nowhere.wait_s("pc1", "a") > 0  # throttling still works without the file


def test_rows_bounded_under_a_flood_of_addresses(tmp_path: Path) -> None:
    th = LoginThrottle(tmp_path / "t.sqlite", ThrottlePolicy(max_entries=50))
    for i in range(100):
        th.failed("pc1", f"10.0.{i // 250}.{i % 250}")
    assert th._conn().execute("SELECT COUNT(*) FROM failures").fetchone()[0] <= 50
