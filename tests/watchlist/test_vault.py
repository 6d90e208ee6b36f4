"""Encrypted watchlist container: round trip, wrong key, tampering, atomic writes, shredding."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edge.errors import WatchlistError
from edge.watchlist import vault
from edge.watchlist.vault import (
    VaultKey,
    create_key_file,
    destroy_vault,
    read_blob,
    read_meta,
    read_vault,
    write_vault,
)

pytestmark = pytest.mark.unit

BLOBS = {
    "index": os.urandom(5000),
    "metadata": json.dumps({"subjects": ["S001"]}).encode(),
    "ref-S001__1": b"\xff\xd8" + os.urandom(3000),
    "empty": b"",
    "big": os.urandom(vault.CHUNK_SIZE * 2 + 17),  # three chunks
    "odd name/with space": b"abc",
}


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Path, VaultKey, Path]:
    key_path = tmp_path / "keys" / "deploy.key"
    key = create_key_file(key_path)
    wl = tmp_path / "lists" / "deploy-1"
    write_vault(wl, BLOBS, key, meta={"deployment_id": "D-1", "window_end": 1.5e9})
    return wl, key, key_path


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _enc(wl: Path, name: str) -> Path:
    return wl / json.loads((wl / "vault.json").read_text())["blobs"][name]["file"]


def test_round_trip_with_key_file(keyed: tuple[Path, VaultKey, Path]) -> None:
    wl, _key, key_path = keyed
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert len(key_path.read_bytes()) == 32
    again = VaultKey.from_file(key_path)
    assert read_vault(wl, again) == BLOBS
    assert read_blob(wl, again, "ref-S001__1") == BLOBS["ref-S001__1"]
    meta = read_meta(wl)
    assert meta["meta"] == {"deployment_id": "D-1", "window_end": 1.5e9}
    assert meta["blobs"] == sorted(BLOBS) and not meta["authenticated"]
    assert read_meta(wl, again)["authenticated"]
    # nothing on disk is plaintext, and the key is not beside the data
    for f in wl.iterdir():
        raw = f.read_bytes()
        assert BLOBS["index"][:64] not in raw and b'"subjects"' not in raw
        assert key_path.read_bytes() not in raw
    assert (wl / "index.enc").exists()
    with pytest.raises(WatchlistError, match="no blob 'nope'"):
        read_blob(wl, again, "nope")


def test_round_trip_with_passphrase(tmp_path: Path) -> None:
    wl = tmp_path / "wl"
    write_vault(wl, {"index": b"123"}, VaultKey.from_passphrase("correct horse battery"))
    header = json.loads((wl / "vault.json").read_text())
    assert header["kdf"]["name"] == "scrypt" and header["kdf"]["n"] == 2**15
    # a fresh key object (new random salt) still opens it: the header's salt is used
    assert read_vault(wl, VaultKey.from_passphrase("correct horse battery")) == {"index": b"123"}
    with pytest.raises(WatchlistError, match=f"wrong key for watchlist {wl}"):
        read_vault(wl, VaultKey.from_passphrase("correct horse battery!"))
    with pytest.raises(WatchlistError, match="passphrase, not a key file"):
        read_vault(wl, create_key_file(tmp_path / "k"))
    with pytest.raises(WatchlistError, match="empty"):
        VaultKey.from_passphrase("")


def test_wrong_key_refused(keyed: tuple[Path, VaultKey, Path], tmp_path: Path) -> None:
    wl, _, _ = keyed
    other = create_key_file(tmp_path / "other.key")
    with pytest.raises(WatchlistError, match=f"^wrong key for watchlist {wl}$"):
        read_vault(wl, other)
    with pytest.raises(WatchlistError, match="wrong key"):
        read_meta(wl, other)
    with pytest.raises(WatchlistError, match="key file, not a passphrase"):
        read_vault(wl, VaultKey.from_passphrase("guess"))


@pytest.mark.parametrize("name", list(BLOBS))
def test_flipped_byte_in_any_blob_refused(keyed: tuple[Path, VaultKey, Path], name: str) -> None:
    wl, key, _ = keyed
    path = _enc(wl, name)
    for offset in (0, path.stat().st_size // 2, path.stat().st_size - 1):
        original = path.read_bytes()
        _flip(path, offset)
        with pytest.raises(WatchlistError, match=f"is tampered: blob '{name}' failed auth"):
            read_vault(wl, key)
        path.write_bytes(original)
    assert read_vault(wl, key) == BLOBS


@pytest.mark.parametrize("field", ["meta", "blobs", "vault_id", "created_at", "mac", "nonce"])
def test_edited_header_refused(keyed: tuple[Path, VaultKey, Path], field: str) -> None:
    wl, key, _ = keyed
    hp = wl / "vault.json"
    header = json.loads(hp.read_text())
    if field == "meta":
        header["meta"]["window_end"] = 2.5e9
    elif field == "blobs":
        del header["blobs"]["empty"]
    elif field == "vault_id":
        header["vault_id"] = "0" * 32
    elif field == "created_at":
        header["created_at"] = "2030-01-01T00:00:00Z"
    elif field == "mac":
        header["mac"] = vault._b64(bytes(32))
    elif field == "nonce":
        header["blobs"]["index"]["nonce"] = vault._b64(bytes(16))
    hp.write_text(json.dumps(header))
    # a changed vault_id also changes the key check value, which reads as a wrong key
    expect = "wrong key" if field == "vault_id" else "is tampered: header failed authentication"
    with pytest.raises(WatchlistError, match=expect):
        read_vault(wl, key)


def test_flipped_byte_in_header_file_refused(keyed: tuple[Path, VaultKey, Path]) -> None:
    wl, key, _ = keyed
    hp = wl / "vault.json"
    raw = hp.read_bytes()
    pos = raw.index(b"D-1")  # inside the public meta
    _flip(hp, pos)
    with pytest.raises(WatchlistError, match="tampered"):
        read_vault(wl, key)
    hp.write_bytes(raw[:pos] + b"\x00" + raw[pos + 1:])
    with pytest.raises(WatchlistError, match="not a watchlist|tampered"):
        read_vault(wl, key)


def test_swapped_blobs_refused(tmp_path: Path) -> None:
    """Same-size blobs swapped on disk: sizes match, the name bound into each chunk does not."""
    key = create_key_file(tmp_path / "k")
    wl = tmp_path / "wl"
    write_vault(wl, {"index": os.urandom(999), "metadata": os.urandom(999)}, key)
    a, b = wl / "index.enc", wl / "metadata.enc"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    with pytest.raises(WatchlistError, match="blob '(index|metadata)' failed authentication"):
        read_vault(wl, key)
    # renaming a blob in the header (and its file) is refused too
    hp = wl / "vault.json"
    a.write_bytes(da)
    b.write_bytes(db)
    header = json.loads(hp.read_text())
    header["blobs"]["renamed"] = dict(header["blobs"].pop("index"), file="renamed.enc")
    hp.write_text(json.dumps(header))
    a.rename(wl / "renamed.enc")
    with pytest.raises(WatchlistError, match="tampered"):
        read_vault(wl, key)


def test_blob_from_another_vault_with_same_key_refused(tmp_path: Path) -> None:
    key = create_key_file(tmp_path / "k")
    write_vault(tmp_path / "a", {"index": b"A" * 100}, key)
    write_vault(tmp_path / "b", {"index": b"B" * 100}, key)
    (tmp_path / "a" / "index.enc").write_bytes((tmp_path / "b" / "index.enc").read_bytes())
    with pytest.raises(WatchlistError, match="blob 'index' failed authentication"):
        read_vault(tmp_path / "a", key)


def test_truncated_and_missing_files_refused(keyed: tuple[Path, VaultKey, Path]) -> None:
    wl, key, _ = keyed
    big = _enc(wl, "big")
    raw = big.read_bytes()
    big.write_bytes(raw[: vault.CHUNK_SIZE + vault.TAG_BYTES])  # cut at a chunk boundary
    with pytest.raises(WatchlistError, match="is truncated: blob 'big'"):
        read_vault(wl, key)
    big.write_bytes(raw + b"x")
    with pytest.raises(WatchlistError, match="longer than recorded"):
        read_vault(wl, key)
    big.unlink()
    with pytest.raises(WatchlistError, match=f"watchlist {wl} is truncated: blob 'big' missing"):
        read_vault(wl, key)
    (wl / "vault.json").write_bytes((wl / "vault.json").read_bytes()[:100])
    with pytest.raises(WatchlistError, match=f"not a watchlist: {wl}"):
        read_vault(wl, key)


def test_not_a_watchlist(tmp_path: Path) -> None:
    key = create_key_file(tmp_path / "k")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    for d in (tmp_path / "plain", tmp_path / "missing"):
        with pytest.raises(WatchlistError, match=f"^not a watchlist: {d}$"):
            read_vault(d, key)
        with pytest.raises(WatchlistError, match="not a watchlist"):
            destroy_vault(d)
    with pytest.raises(WatchlistError, match="not a watchlist"):
        write_vault(tmp_path / "plain", {"a": b"1"}, key)
    assert (tmp_path / "plain" / "notes.txt").read_text() == "hello"


def test_failed_write_leaves_existing_vault_intact(keyed: tuple[Path, VaultKey, Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    wl, key, _ = keyed
    before = {p.name: p.read_bytes() for p in wl.iterdir()}

    def listing() -> list[str]:
        return sorted(p.name for p in wl.parent.iterdir())

    # a blob of the wrong type
    with pytest.raises(TypeError, match="blob 'b' is str"):
        write_vault(wl, {"a": b"new", "b": "not bytes"}, key)  # type: ignore[dict-item]
    # a disk error half-way (EIO on the third fsync: two blobs already written)
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_vault(wl, {"x": b"1", "y": b"2", "z": b"3"}, key)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert calls["n"] == 3
    assert {p.name: p.read_bytes() for p in wl.iterdir()} == before
    assert listing() == ["deploy-1"]  # no temporary directory left behind
    assert read_vault(wl, key) == BLOBS
    # a failed first write leaves nothing at all
    with pytest.raises(TypeError):
        write_vault(wl.parent / "new", {"a": 5}, key)  # type: ignore[dict-item]
    assert listing() == ["deploy-1"]


def test_rewrite_replaces_atomically(keyed: tuple[Path, VaultKey, Path]) -> None:
    wl, key, _ = keyed
    write_vault(wl, {"index": b"v2"}, key, meta={"deployment_id": "D-1", "rev": 2})
    assert read_vault(wl, key) == {"index": b"v2"}
    assert sorted(p.name for p in wl.iterdir()) == ["index.enc", "vault.json"]
    assert sorted(p.name for p in wl.parent.iterdir()) == ["deploy-1"]


def test_key_file_inside_vault_refused(tmp_path: Path) -> None:
    wl = tmp_path / "wl"
    wl.mkdir()
    key = create_key_file(wl / "key")
    with pytest.raises(WatchlistError, match="inside the watchlist"):
        write_vault(wl, {"a": b"1"}, key)
    with pytest.raises(WatchlistError, match="already exists"):
        create_key_file(wl / "key")


def test_key_file_checks(tmp_path: Path) -> None:
    (tmp_path / "short.key").write_bytes(b"123")
    with pytest.raises(WatchlistError, match="expected 32 bytes, found 3"):
        VaultKey.from_file(tmp_path / "short.key")
    with pytest.raises(WatchlistError, match="not found"):
        VaultKey.from_file(tmp_path / "absent.key")
    key = create_key_file(tmp_path / "k")
    assert "k" in repr(key) and key.source is not None
    assert (tmp_path / "k").read_bytes().hex() not in repr(key)


def test_destroy_removes_everything_and_the_key(keyed: tuple[Path, VaultKey, Path]) -> None:
    wl, _key, key_path = keyed
    # a leftover temp dir from a crashed write is shredded too
    (wl.parent / f".{wl.name}.tmp-crash").mkdir()
    (wl.parent / f".{wl.name}.tmp-crash" / "index.enc").write_bytes(b"ciphertext")
    destroy_vault(wl, key_file=key_path)
    assert not wl.exists()
    assert not key_path.exists()
    assert list(wl.parent.iterdir()) == []
    with pytest.raises(WatchlistError, match="not a watchlist"):
        destroy_vault(wl)


def test_shred_overwrites_in_place(tmp_path: Path) -> None:
    """The same inode is overwritten (not a new file written beside it) before unlink."""
    p = tmp_path / "f.enc"
    p.write_bytes(b"S" * 100_000)
    fd = os.open(p, os.O_RDONLY)  # keep the inode alive to look at it after unlink
    try:
        vault._shred_file(p)
        assert not p.exists()
        after = os.pread(fd, 200_000, 0)
    finally:
        os.close(fd)
    assert len(after) == 100_000 and after == bytes(100_000)
