"""The CLI as a user meets it: subprocesses, exit codes, one-line errors, alerts on the console."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge.cli import cli
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from tests.conftest import EDGE, write_clip
from tests.privacy_helpers import FLOAT_RUN

SUBCOMMANDS = ["run", "demo", "models", "watchlist", "audit", "hub", "keys", "eval", "bench"]


def edge(*args: str, cwd=None, env=None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(EDGE + list(args), capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.mark.unit
def test_help_lists_every_command():
    r = edge("--help")
    assert r.returncode == 0
    for name in SUBCOMMANDS:
        assert f"  {name}" in r.stdout, f"`edge {name}` missing from --help"


@pytest.mark.parametrize("name", SUBCOMMANDS)
@pytest.mark.unit
def test_each_subcommand_explains_itself(name):
    # in-process (the entry point itself is run by test_help_lists_every_command)
    r = CliRunner().invoke(cli, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output and len(r.output.splitlines()) > 4


@pytest.fixture()
def scene(tmp_path, engine, sample_images):
    """Group photo clip; person 2 enrolled from a mirrored, re-lit copy (as in the demo)."""
    from edge.node.demo import _enrolment_photo
    from edge.watchlist.vault import create_key_file

    group = cv2.imread(str(sample_images / "t1.jpg"))
    people = sorted(engine.faces(group), key=lambda f: float(f.bbox[0]))
    enrol = engine.faces(_enrolment_photo(group, people[1].bbox))[0]
    clip = write_clip(tmp_path / "clip.mp4",
                      [cv2.resize(group[:, 10 * i: 10 * i + 1200], (900, 664)) for i in range(10)])

    def make(window: tuple[float, float] = (0.0, 0.0), name: str = "wl"):
        key = create_key_file(tmp_path / f"{name}.key")
        meta = WatchlistMeta(deployment_id="cli-test", window_start=window[0], window_end=window[1])
        Watchlist(meta, {"P2": Subject("P2", "Person Two", "test")}, [Entry("P2/1", "P2", "x.jpg")],
                  enrol.embedding[None]).save(tmp_path / name, key)
        return tmp_path / name, tmp_path / f"{name}.key"

    return tmp_path, clip, make


def test_run_alerts_on_enrolled_person_only(scene):
    tmp, clip, make = scene
    wl, key = make()
    cfg = tmp / "node.toml"
    cfg.write_text('[alerts]\nendpoint = "tcp://127.0.0.1:1"\n')
    r = edge("run", "--source", str(clip), "--watchlist", str(wl), "--key-file", str(key),
             "--config", str(cfg), cwd=tmp)
    assert r.returncode == 0, r.stderr
    alerts = [ln for ln in r.stdout.splitlines() if ln.startswith("ALERT")]
    assert len(alerts) == 1 and "subject=P2" in alerts[0], r.stdout
    assert "source ended" in r.stderr
    assert (tmp / "state" / "audit.jsonl").exists()
    v = edge("audit", "verify", str(tmp / "state" / "audit.jsonl"))
    assert v.returncode == 0 and "OK" in v.stdout


def test_example_deployment_config_starts_as_given(scene):
    tmp, clip, make = scene
    wl, key = make()
    cfg = Path(__file__).resolve().parents[2] / "config" / "example-deployment.toml"
    r = edge("run", "--source", str(clip), "--watchlist", str(wl), "--key-file", str(key),
             "--config", str(cfg), cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "node westminster-entrance-a" in r.stderr and "source ended" in r.stderr
    assert (tmp / "state" / "audit.jsonl").exists() and (tmp / "state" / "outbox.sqlite").exists()


def test_run_refuses_expired_watchlist(scene):
    tmp, clip, make = scene
    now = time.time()
    wl, key = make((now - 7200, now - 3600), name="old")
    r = edge("run", "--source", str(clip), "--watchlist", str(wl), "--key-file", str(key), cwd=tmp)
    assert r.returncode == 2
    assert "expired" in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr


def test_run_refuses_wrong_key(scene):
    tmp, clip, make = scene
    wl, _ = make()
    _, other_key = make(name="other")
    r = edge("run", "--source", str(clip), "--watchlist", str(wl), "--key-file", str(other_key),
             cwd=tmp)
    assert r.returncode == 2 and "wrong key" in r.stderr


def test_run_missing_video_is_one_line(scene):
    tmp, _, make = scene
    wl, key = make()
    r = edge("run", "--source", str(tmp / "nope.mp4"), "--watchlist", str(wl), "--key-file",
             str(key), cwd=tmp)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == \
        f"error: camera camera-1: video file not found: {tmp / 'nope.mp4'}"


def _huge_png(path) -> None:
    """A small PNG whose header claims 20000 x 20000 px (CRC fixed: a valid header)."""
    import struct
    import zlib
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", 20000, 20000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def test_run_single_image_files(scene, sample_images):
    tmp, _, make = scene
    wl, key = make()
    good = tmp / "one.pgm"  # the classic ORL/AT&T format, greyscale
    cv2.imwrite(str(good), cv2.cvtColor(cv2.imread(str(sample_images / "t1.jpg")),
                                        cv2.COLOR_BGR2GRAY))
    r = edge("run", "--source", str(good), "--watchlist", str(wl), "--key-file", str(key), cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "1 frames" in r.stderr and "ImageFolderSource" in r.stderr
    garbage = tmp / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really" * 50)
    huge = tmp / "huge.png"
    _huge_png(huge)
    for bad in (garbage, huge):
        r = edge("run", "--source", str(bad), "--watchlist", str(wl), "--key-file", str(key),
                 cwd=tmp)
        assert r.returncode == 2, (bad, r.stderr)
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("error: camera camera-1: not one frame could be decoded"), last
        assert "unreadable image" in last and "Traceback" not in r.stderr


def test_run_cameras_of_a_site_config_and_stop_while_one_reconnects(scene):
    """`edge run --config site.toml`: every [[cameras]] entry runs in one process; a camera
    that is never up is retried (and logged lost) while the other alerts; SIGTERM ends the
    node within 2 s although that camera is mid-reconnect, and the audit log is intact."""
    import signal

    tmp, clip, make = scene
    wl, key = make()
    cfg = tmp / "site.toml"
    cfg.write_text(
        '[alerts]\nendpoint = "tcp://127.0.0.1:1"\n'
        '[source]\nreconnect_initial_s = 0.2\nreconnect_max_s = 0.5\nopen_timeout_s = 1.0\n'
        'down_after_s = 1.0\n'
        f'[[cameras]]\nname = "door"\nlabel = "Front door"\nsource = "{clip}"\n'
        '[[cameras]]\nname = "yard"\nsource = "rtsp://127.0.0.1:1/never"\n')
    proc = subprocess.Popen(EDGE + ["run", "--watchlist", str(wl), "--key-file", str(key),
                                    "--config", str(cfg)], cwd=tmp, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()  # the file camera's alert; the node stays up for "yard"
        assert line.startswith("ALERT") and "door" in line and "subject=P2" in line, line
        time.sleep(2.5)  # "yard" reported lost after down_after_s
        assert proc.poll() is None, "the node must keep running for its other camera"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # generous on a loaded CI box (measured: well under 2 s idle); a stop that waited for the
    # camera's reconnect loop would hang until communicate's timeout
    assert took < 6.0, f"stopped in {took:.1f} s"
    assert "camera yard lost" in err
    assert "camera door: 10 frames" in err
    v = edge("audit", "verify", str(tmp / "state" / "audit.jsonl"))
    assert v.returncode == 0 and "OK" in v.stdout


def test_run_refuses_a_corrupt_model(scene):
    tmp, clip, make = scene
    wl, key = make()
    from edge.face import model_files as models

    bad = tmp / "models"
    shutil.copytree(models.models_dir(), bad)
    sface = bad / "face_recognition_sface_2021dec.onnx"
    data = bytearray(sface.read_bytes())
    data[len(data) // 2] ^= 0xFF
    sface.write_bytes(bytes(data))
    env = dict(os.environ, EDGE_MODELS_DIR=str(bad))
    r = edge("run", "--source", str(clip), "--watchlist", str(wl), "--key-file", str(key),
             cwd=tmp, env=env)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "sha256" in last


def test_run_on_image_folder_skips_corrupt_files(scene, sample_images):
    tmp, _, make = scene
    wl, key = make()
    folder = tmp / "imgs"
    folder.mkdir()
    shutil.copy(sample_images / "t1.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(folder / "c.png"), np.zeros((40, 40, 3), np.uint8))
    r = edge("-v", "run", "--source", str(folder), "--watchlist", str(wl), "--key-file", str(key),
             cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "skipped b.jpg: unreadable" in r.stderr
    assert "2 frames" in r.stderr and "bad frames 1" in r.stderr
    assert not FLOAT_RUN.search(r.stdout + r.stderr) and "[[" not in r.stderr
