"""Encrypted, authenticated directory container for a watchlist.

The watchlist code hands over named byte blobs (index, metadata, reference images); this
module stores them so that reading them needs the key, and any change on disk — a flipped
byte, a swapped or renamed blob, a truncated file, an edited header — is refused.

Layout of a vault directory::

    vault.json      public header: format, version, vault id, cipher, KDF parameters and salt,
                    key check value, blob table {name: file, per-blob random nonce, size},
                    public meta, and an HMAC over all of it
    <name>.enc      one file per blob, AES-256-GCM in 4 MiB chunks

Keys: a 32-byte master key comes from a key file (:func:`create_key_file`) or from a
passphrase through scrypt (n=2**15, r=8, p=1, random 16-byte salt in the header). The key
is never stored beside the data: :func:`write_vault` refuses a key file inside the vault.
Sub-keys are derived with HKDF-SHA256: one for the key check value (so a wrong key says
"wrong key", not "tampered"), one for the header MAC, and one per blob from the blob's
random 16-byte nonce. Each chunk's nonce is its counter plus a last-chunk flag, and its
associated data binds the format version, vault id, blob name and chunk position, so
renaming, swapping, reordering or cutting chunks and blobs fails authentication.

Known limits: the header is public, so blob names, their sizes, the KDF parameters and
``meta`` can be read without the key (keep names free of personal data); restoring a whole
older copy of a vault (rollback) cannot be detected without state kept elsewhere;
:func:`destroy_vault` overwrites files, but SSDs, journaling/copy-on-write filesystems,
snapshots and backups may keep old blocks — what makes the data unrecoverable is that the
key is gone (the key file shredded, the passphrase not kept anywhere).
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from edge.errors import WatchlistError

log = logging.getLogger(__name__)

FORMAT = "edge.watchlist.vault"
VERSION = 1
HEADER_FILE = "vault.json"
CIPHER = "AES-256-GCM"
CHUNK_SIZE = 4 << 20
KEY_BYTES = 32
SALT_BYTES = 16
BLOB_NONCE_BYTES = 16
TAG_BYTES = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# bounds for parameters read from an (unauthenticated) header: refuse absurd work factors
_SCRYPT_MAX_N, _SCRYPT_MAX_R, _SCRYPT_MAX_P = 2**20, 32, 16
MAX_HEADER_BYTES = 64 << 20
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,110}\.enc$")


# ----------------------------------------------------------------------------- keys


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: Any, nbytes: int | None = None) -> bytes:
    if not isinstance(s, str):
        raise ValueError("not base64 text")
    raw = base64.b64decode(s.encode("ascii"), validate=True)
    if nbytes is not None and len(raw) != nbytes:
        raise ValueError("wrong length")
    return raw


def _hkdf(master: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=b"edge.watchlist.vault.v1/" + info).derive(master)


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase)


class VaultKey:
    """The secret that opens a vault: a key file's 32 bytes or a passphrase (scrypt).

    A passphrase key keeps the passphrase in memory so it can re-derive the master key
    for the salt stored in any vault it opens. ``repr`` never shows key material.
    """

    def __init__(self, *, kind: str, master: bytes | None = None, passphrase: bytes | None = None,
                 salt: bytes | None = None, source: Path | None = None) -> None:
        self.kind = kind  # "keyfile" | "passphrase"
        self.source = source
        self._master = master
        self._passphrase = passphrase
        self._salt = salt
        self._derived: dict[tuple[bytes, int, int, int], bytes] = {}
        if kind == "passphrase" and salt is not None and master is not None:
            self._derived[(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)] = master

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"VaultKey({self.kind}{where})"

    @classmethod
    def from_file(cls, path: Path) -> VaultKey:
        """Load a key file made by :func:`create_key_file` (exactly 32 bytes)."""
        path = Path(path)
        try:
            st = path.stat()
            raw = path.read_bytes()
        except FileNotFoundError:
            raise WatchlistError(f"key file {path} not found") from None
        except OSError as exc:
            raise WatchlistError(f"cannot read key file {path}: {exc.strerror}") from None
        if len(raw) != KEY_BYTES:
            raise WatchlistError(
                f"key file {path} is not a watchlist key (expected {KEY_BYTES} bytes, "
                f"found {len(raw)})"
            )
        if st.st_mode & 0o077:
            log.warning("key file %s is readable by group/others (mode %o); chmod 600 it",
                        path, stat.S_IMODE(st.st_mode))
        return cls(kind="keyfile", master=raw, source=path.resolve())

    @classmethod
    def from_passphrase(cls, passphrase: str, salt: bytes | None = None) -> VaultKey:
        """A key from a passphrase; ``salt`` None means a new random salt (for a new vault)."""
        if not isinstance(passphrase, str) or not passphrase:
            raise WatchlistError("the watchlist passphrase is empty")
        pw = passphrase.encode("utf-8")
        if salt is None:
            salt = secrets.token_bytes(SALT_BYTES)
        master = _scrypt(pw, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return cls(kind="passphrase", master=master, passphrase=pw, salt=salt)

    def _kdf_header(self) -> dict[str, Any]:
        if self.kind == "keyfile":
            return {"name": "keyfile"}
        assert self._salt is not None
        return {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                "salt": _b64(self._salt)}

    def _write_master(self) -> bytes:
        assert self._master is not None
        return self._master

    def _master_for(self, kdf: Any, directory: Path) -> bytes:
        """The master key for a vault whose header names ``kdf``."""
        if not isinstance(kdf, dict) or kdf.get("name") not in ("keyfile", "scrypt"):
            raise WatchlistError(f"watchlist {directory} is tampered: unknown key derivation")
        if kdf["name"] == "keyfile":
            if self.kind != "keyfile":
                raise WatchlistError(
                    f"watchlist {directory} is locked with a key file, not a passphrase")
            return self._write_master()
        if self.kind != "passphrase":
            raise WatchlistError(
                f"watchlist {directory} is locked with a passphrase, not a key file")
        try:
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            salt = _unb64(kdf["salt"], SALT_BYTES)
        except (KeyError, TypeError, ValueError):
            raise WatchlistError(
                f"watchlist {directory} is tampered: bad key derivation parameters") from None
        if not (2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= _SCRYPT_MAX_R
                and 1 <= p <= _SCRYPT_MAX_P):
            raise WatchlistError(
                f"watchlist {directory} is tampered: key derivation parameters out of range")
        cache_key = (salt, n, r, p)
        if cache_key not in self._derived:
            assert self._passphrase is not None
            self._derived[cache_key] = _scrypt(self._passphrase, salt, n, r, p)
        return self._derived[cache_key]


def create_key_file(path: Path) -> VaultKey:
    """Write 32 random bytes to a new file, mode 0600; refuses to overwrite a file.

    Keep it away from the watchlist directory (another disk, a secrets store): the
    watchlist is only as secret as this file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise WatchlistError(f"key file {path} already exists; not overwriting it") from None
    except OSError as exc:
        raise WatchlistError(f"cannot create key file {path}: {exc.strerror}") from None
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return VaultKey(kind="keyfile", master=raw, source=path.resolve())


# ----------------------------------------------------------------------------- helpers


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _key_check(master: bytes, vault_id: str) -> bytes:
    return hmac.new(_hkdf(master, b"key-check"), b"key-check:" + vault_id.encode(),
                    hashlib.sha256).digest()


def _header_mac(master: bytes, header: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in header.items() if k != "mac"}
    return hmac.new(_hkdf(master, b"header-mac"), _canonical(body), hashlib.sha256).digest()


def _n_chunks(size: int) -> int:
    return max(1, -(-size // CHUNK_SIZE))


def _chunk_nonce(i: int, last: bool) -> bytes:
    return i.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _chunk_aad(vault_id: str, name: str, i: int, last: bool) -> bytes:
    return _canonical({"format": FORMAT, "version": VERSION, "vault_id": vault_id,
                       "blob": name, "chunk": i, "last": last})


def _blob_cipher(master: bytes, vault_id: str, nonce: bytes) -> AESGCM:
    return AESGCM(_hkdf(master, b"blob:" + vault_id.encode(), salt=nonce))


def _file_for(name: str) -> str:
    if _SAFE_NAME.match(name):
        return f"{name}.enc"
    return "x-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:32] + ".enc"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, chunks: list[bytes] | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        for part in [chunks] if isinstance(chunks, bytes) else chunks:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL (fs does not support it), EOPNOTSUPP
        return False
    raise OSError(err, os.strerror(err), str(b))


def _is_vault_dir(directory: Path) -> bool:
    return (directory / HEADER_FILE).is_file()


# ----------------------------------------------------------------------------- write


def write_vault(dir: Path, blobs: Mapping[str, bytes], key: VaultKey,
                meta: dict | None = None) -> None:
    """Encrypt ``blobs`` into the vault directory ``dir``, replacing any vault there.

    Atomic: everything is written and fsync'ed in a sibling temporary directory, then
    swapped in with one rename; a failure at any point leaves an existing vault untouched
    and no partial directory behind.
    """
    directory = Path(dir)
    if not isinstance(key, VaultKey):
        raise TypeError("key must be an edge.watchlist.vault.VaultKey")
    if not isinstance(blobs, Mapping):
        raise TypeError("blobs must be a mapping of name -> bytes")
    files: dict[str, str] = {}
    for name, value in blobs.items():
        if not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name:
            raise ValueError("blob names must be non-empty strings up to 255 chars")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"blob {name!r} is {type(value).__name__}, not bytes")
        fname = _file_for(name)
        if fname in files.values() or fname == HEADER_FILE:
            raise ValueError(f"blob name {name!r} collides with another blob's file name")
        files[name] = fname
    meta = dict(meta or {})
    try:
        _canonical(meta)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"vault meta is not plain JSON: {exc}") from None
    if key.source is not None and directory.resolve() in key.source.parents:
        raise WatchlistError(
            f"refusing to store the key file {key.source} inside the watchlist {directory}")
    if directory.exists() and not _is_vault_dir(directory) and any(directory.iterdir()):
        raise WatchlistError(f"refusing to overwrite {directory}: it is not a watchlist")

    parent = directory.parent if str(directory.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=parent))
    try:
        master = key._write_master()
        vault_id = uuid.uuid4().hex
        table: dict[str, dict[str, Any]] = {}
        for name, value in blobs.items():
            data = memoryview(value).cast("B")
            nonce = secrets.token_bytes(BLOB_NONCE_BYTES)
            aead = _blob_cipher(master, vault_id, nonce)
            n = _n_chunks(len(data))
            chunks = []
            for i in range(n):
                last = i == n - 1
                chunks.append(aead.encrypt(_chunk_nonce(i, last),
                                           bytes(data[i * CHUNK_SIZE:(i + 1) * CHUNK_SIZE]),
                                           _chunk_aad(vault_id, name, i, last)))
            _write_file(tmp / files[name], chunks)
            table[name] = {"file": files[name], "nonce": _b64(nonce), "size": len(data)}
        header: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "vault_id": vault_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cipher": CIPHER,
            "chunk_size": CHUNK_SIZE,
            "kdf": key._kdf_header(),
            "key_check": _b64(_key_check(master, vault_id)),
            "blobs": table,
            "meta": meta,
        }
        header["mac"] = _b64(_header_mac(master, header))
        _write_file(tmp / HEADER_FILE, json.dumps(header, indent=1, ensure_ascii=False).encode())
        _fsync_dir(tmp)
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)


def _swap_in(tmp: Path, directory: Path) -> None:
    """Put the complete ``tmp`` at ``directory``; the old vault (if any) ends up deleted."""
    if not directory.exists():
        os.rename(tmp, directory)
        return
    if _renameat2_exchange(tmp, directory):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old vault
        return
    old = directory.parent / f".{directory.name}.old-{secrets.token_hex(4)}"
    os.rename(directory, old)
    try:
        os.rename(tmp, directory)
    except BaseException:
        os.rename(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- read


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_header(directory: Path) -> dict[str, Any]:
    """Parse and shape-check the public header; no authentication yet."""
    path = directory / HEADER_FILE
    if not directory.is_dir() or not path.is_file():
        raise WatchlistError(f"not a watchlist: {directory}")
    try:
        if path.stat().st_size > MAX_HEADER_BYTES:
            raise WatchlistError(f"watchlist {directory} is tampered: header too large")
        # NaN/Infinity are not JSON and cannot be MAC'ed canonically: refused like bad JSON
        header = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        raise WatchlistError(f"not a watchlist: {directory} (header is not JSON)") from None
    except OSError as exc:
        raise WatchlistError(f"cannot read watchlist {directory}: {exc.strerror}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WatchlistError(f"not a watchlist: {directory}")
    if header.get("version") != VERSION:
        raise WatchlistError(
            f"watchlist {directory} has format version {header.get('version')!r}; "
            f"this node reads version {VERSION}")
    ok = (isinstance(header.get("vault_id"), str) and isinstance(header.get("blobs"), dict)
          and isinstance(header.get("meta"), dict) and isinstance(header.get("mac"), str)
          and isinstance(header.get("key_check"), str) and isinstance(header.get("kdf"), dict)
          and header.get("cipher") == CIPHER
          and header.get("chunk_size") == CHUNK_SIZE)
    if ok:
        for name, ent in header["blobs"].items():
            if not (isinstance(ent, dict) and isinstance(ent.get("file"), str)
                    and _SAFE_FILE.match(ent["file"]) and ent["file"] == _file_for(name)
                    and isinstance(ent.get("size"), int) and ent["size"] >= 0
                    and isinstance(ent.get("nonce"), str)):
                ok = False
                break
    if not ok:
        raise WatchlistError(f"watchlist {directory} is tampered: header is malformed")
    return header


def _open(directory: Path, key: VaultKey) -> tuple[dict[str, Any], bytes]:
    """Header authenticated with ``key`` and the master key, or a clear WatchlistError."""
    header = _load_header(directory)
    master = key._master_for(header["kdf"], directory)
    try:
        check = _unb64(header["key_check"])
        mac = _unb64(header["mac"])
    except ValueError:
        raise WatchlistError(f"watchlist {directory} is tampered: header is malformed") from None
    if not hmac.compare_digest(check, _key_check(master, header["vault_id"])):
        raise WatchlistError(f"wrong key for watchlist {directory}")
    if not hmac.compare_digest(mac, _header_mac(master, header)):
        raise WatchlistError(f"watchlist {directory} is tampered: header failed authentication")
    return header, master


def _decrypt_blob(directory: Path, header: dict[str, Any], master: bytes, name: str) -> bytes:
    ent = header["blobs"][name]
    path = directory / ent["file"]
    size = ent["size"]
    n = _n_chunks(size)
    expected = size + n * TAG_BYTES
    try:
        with open(path, "rb") as fh:
            raw = fh.read(expected + 1)
    except FileNotFoundError:
        raise WatchlistError(
            f"watchlist {directory} is truncated: blob {name!r} missing") from None
    except OSError as exc:
        raise WatchlistError(
            f"cannot read watchlist {directory}: blob {name!r}: {exc.strerror}") from None
    if len(raw) < expected:
        raise WatchlistError(
            f"watchlist {directory} is truncated: blob {name!r} has {len(raw)} of "
            f"{expected} bytes")
    if len(raw) > expected:
        raise WatchlistError(
            f"watchlist {directory} is tampered: blob {name!r} is longer than recorded")
    try:
        nonce = _unb64(ent["nonce"], BLOB_NONCE_BYTES)
    except ValueError:
        raise WatchlistError(f"watchlist {directory} is tampered: header is malformed") from None
    aead = _blob_cipher(master, header["vault_id"], nonce)
    parts = []
    step = CHUNK_SIZE + TAG_BYTES
    try:
        for i in range(n):
            last = i == n - 1
            parts.append(aead.decrypt(_chunk_nonce(i, last), raw[i * step:(i + 1) * step],
                                      _chunk_aad(header["vault_id"], name, i, last)))
    except InvalidTag:
        raise WatchlistError(
            f"watchlist {directory} is tampered: blob {name!r} failed authentication") from None
    return parts[0] if n == 1 else b"".join(parts)


def read_vault(dir: Path, key: VaultKey) -> dict[str, bytes]:
    """Decrypt and authenticate every blob; any change on disk raises WatchlistError."""
    directory = Path(dir)
    header, master = _open(directory, key)
    return {name: _decrypt_blob(directory, header, master, name) for name in header["blobs"]}


def read_blob(dir: Path, key: VaultKey, name: str) -> bytes:
    """Decrypt one blob (e.g. a single reference image) without touching the others."""
    directory = Path(dir)
    header, master = _open(directory, key)
    if name not in header["blobs"]:
        raise WatchlistError(f"watchlist {directory} has no blob {name!r}")
    return _decrypt_blob(directory, header, master, name)


def read_meta(dir: Path, key: VaultKey | None = None) -> dict[str, Any]:
    """The public header fields (no secrets). With ``key`` they are authenticated first.

    Without a key the values are unauthenticated: fine for display, not for decisions
    such as the deployment window (pass the key for those).
    """
    directory = Path(dir)
    header = _open(directory, key)[0] if key is not None else _load_header(directory)
    kdf = dict(header["kdf"]) if isinstance(header.get("kdf"), dict) else {}
    kdf.pop("salt", None)
    return {
        "format": header["format"],
        "version": header["version"],
        "vault_id": header["vault_id"],
        "created_at": header.get("created_at"),
        "cipher": header["cipher"],
        "kdf": kdf,
        "blobs": sorted(header["blobs"]),
        "sizes": {n: e["size"] for n, e in header["blobs"].items()},
        "meta": header["meta"],
        "authenticated": key is not None,
    }


# ----------------------------------------------------------------------------- destroy


def _shred_file(path: Path) -> None:
    """Overwrite with random bytes, then zeros (each fsync'ed), then unlink."""
    if path.is_symlink() or not path.is_file():
        path.unlink(missing_ok=True)
        return
    size = path.stat().st_size
    block = 1 << 20
    with open(path, "r+b", buffering=0) as fh:
        for pattern in ("random", "zeros"):
            fh.seek(0)
            left = size
            zeros = bytes(min(block, max(size, 1)))
            while left > 0:
                n = min(block, left)
                fh.write(secrets.token_bytes(n) if pattern == "random" else zeros[:n])
                left -= n
            fh.flush()
            os.fsync(fh.fileno())
    path.unlink()


def _shred_tree(directory: Path, last: str | None = None) -> None:
    """Shred every file below ``directory`` (``last`` at the very end), then remove it."""
    for root, dirs, names in os.walk(directory, topdown=False):
        for n in names:
            if not (n == last and Path(root) == directory):
                _shred_file(Path(root) / n)
        for d in dirs:
            p = Path(root) / d
            if p.is_symlink():
                p.unlink()
            else:
                p.rmdir()
    if last is not None and (directory / last).exists():
        _shred_file(directory / last)
    directory.rmdir()


def destroy_vault(dir: Path, key_file: Path | None = None) -> None:
    """Crypto-shred a vault: the key file first, then every blob, then the header.

    Each file is overwritten with random bytes and then zeros (fsync'ed) before it is
    unlinked. Leftover temporary directories of failed writes are shredded too. See the
    module docstring for what overwriting cannot promise on modern storage.
    """
    directory = Path(dir)
    if not directory.is_dir() or not _is_vault_dir(directory):
        raise WatchlistError(f"not a watchlist: {directory}")
    if key_file is not None:
        kf = Path(key_file)
        if not kf.is_file():
            raise WatchlistError(f"key file {kf} not found; nothing was destroyed")
        _shred_file(kf)
        _fsync_dir(kf.parent)
    parent = directory.parent if str(directory.parent) else Path(".")
    for pattern in (f".{directory.name}.tmp-*", f".{directory.name}.old-*"):
        for leftover in parent.glob(pattern):
            if leftover.is_dir() and not leftover.is_symlink():
                _shred_tree(leftover)
    # the header last: a crash mid-way leaves a directory `destroy` recognises and re-runs
    _shred_tree(directory, last=HEADER_FILE)
    _fsync_dir(parent)

