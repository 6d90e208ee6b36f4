"""A real RTSP camera on 127.0.0.1 (GStreamer's RTSP server looping the 1080p arcade clip):
OpenCV reads it over TCP and UDP, the node's live source survives the camera restarting,
and `edge run` with an RTSP camera in its config alerts on the people enrolled from it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import load_config
from edge.lab.bench.watchlists import auto_watchlist
from edge.node.sources import CaptureSource, StreamOptions
from edge.privacy import FrameRing
from edge.watchlist.index import Watchlist
from edge.watchlist.vault import create_key_file
from tests.conftest import EDGE
from tests.rtsp_helpers import RtspServer, require_rtsp, start_rtsp_server

pytestmark = pytest.mark.slow

FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    """The clip's 105 frames as the file decodes them (the server sends its H.264 as is)."""
    cap = cv2.VideoCapture(str(require_rtsp()))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    assert len(frames) == 105
    return frames


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspServer]:
    """One server for the tests that only read from it."""
    with start_rtsp_server() as server:
        yield server


@pytest.fixture()
def own_camera() -> Iterator[RtspServer]:
    """A server of the test's own, which it may kill and restart."""
    with start_rtsp_server() as server:
        yield server


def _open(url: str, transport: str | None) -> cv2.VideoCapture:
    """Open with FFmpeg's rtsp_transport set only around the open (OpenCV reads it then)."""
    before = os.environ.pop(FFMPEG_OPTIONS, None)
    try:
        if transport:
            os.environ[FFMPEG_OPTIONS] = f"rtsp_transport;{transport}"
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    finally:
        os.environ.pop(FFMPEG_OPTIONS, None)
        if before is not None:
            os.environ[FFMPEG_OPTIONS] = before


@pytest.mark.parametrize("transport", ["tcp", "udp", None])
def test_opencv_reads_the_rtsp_camera(camera, clip_frames, transport):
    """>= 50 frames of 1920x1080 at the camera's pace over the transport asked for (None:
    OpenCV's default, which is TCP); 130 frames cross the clip's loop. Over TCP every frame
    is the file's own frame, bit for bit (no re-encoding, a seamless loop); UDP on loopback
    may lose a packet now and then, which spoils frames up to the next keyframe."""
    setups = len(camera.setups)
    cap = _open(camera.url, transport)
    try:
        assert cap.isOpened(), f"cannot open {camera.url} over {transport}: {camera.stderr()}"
        n, exact, t0 = 0, 0, time.monotonic()
        while n < 130:
            ok, img = cap.read()
            if not ok:
                break
            assert img.shape == (1080, 1920, 3)
            exact += cv2.norm(img, clip_frames[n % 105], cv2.NORM_INF) == 0
            n += 1
        took = time.monotonic() - t0
    finally:
        cap.release()
    assert n == 130, f"read {n} frames, then the stream stopped"
    assert camera.setups[setups:], "the server saw no SETUP"
    given = camera.setups[-1]
    if transport == "udp":
        assert "RTP/AVP/UDP" in given or ("RTP/AVP;" in given and "client_port" in given), given
        assert exact >= 50, f"only {exact} of {n} frames intact over UDP"
    else:
        assert "RTP/AVP/TCP" in given and "interleaved" in given, given
        assert exact == n, f"{n - exact} of {n} frames differ from the file over TCP"
    # a live camera at 25 fps: 130 frames take ~5 s (less the frames buffered while opening)
    assert 3.0 < took < 15.0, f"130 frames in {took:.1f} s: not paced like a 25 fps camera"


def _consume(src: CaptureSource, ring: FrameRing, shapes: list[tuple[int, ...]]) -> None:
    for frame in src.frames():
        shapes.append(frame.image.shape)
        ring.release(frame.slot)


def _wait(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_node_source_survives_a_camera_restart(own_camera, transport):
    """The node's live source reads the camera; the camera dies (SIGKILL, no teardown) and
    comes back on the same port; the source reports it down, reconnects and frames flow
    again. Over UDP nothing tells the client the camera died: the read timeout does."""
    ring = FrameRing(4, lock=False)
    opts = StreamOptions(transport, open_timeout_s=3.0, read_timeout_s=2.0)
    src = CaptureSource(own_camera.url, ring, reconnect_initial_s=0.2, reconnect_max_s=1.0,
                        options=opts)
    assert src.live
    shapes: list[tuple[int, ...]] = []
    reader = threading.Thread(target=_consume, args=(src, ring, shapes), daemon=True)
    reader.start()
    try:
        _wait(lambda: src.stats.frames >= 50, 20, "50 frames from the camera")
        assert src.stats.state == "up" and src.stats.reconnects == 0
        assert set(shapes) == {(1080, 1920, 3)}
        assert own_camera.setups and (transport.upper() in own_camera.setups[-1]
                                      or "client_port" in own_camera.setups[-1])
        own_camera.kill()
        before = src.stats.frames
        lost_in = _wait(lambda: src.stats.state != "up", 10, "the source to notice the camera died")
        time.sleep(1.0)  # a camera rebooting: the source retries meanwhile (connection refused)
        assert src.stats.state in ("down", "connecting"), src.stats.state
        own_camera.start()
        back_in = _wait(lambda: src.stats.frames >= before + 50, 20,
                        "50 frames after the camera came back")
        assert src.stats.reconnects >= 1 and src.stats.state == "up"
        assert set(shapes) == {(1080, 1920, 3)}
        print(f"{transport}: lost noticed in {lost_in:.1f} s, 50 frames back in {back_in:.1f} s, "
              f"reconnects={src.stats.reconnects}")
    finally:
        t0 = time.monotonic()
        src.close()
        reader.join(5)
    assert not reader.is_alive() and time.monotonic() - t0 < 5.0, "the source did not stop"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_node_source_notices_a_silent_camera_by_its_read_timeout(own_camera, transport):
    """A camera that goes silent without closing anything (SIGSTOP: no FIN, no RST, no
    ICMP) is noticed by read_timeout_s alone; reconnecting to it while it is silent gives up
    after open_timeout_s; once it is back (restarted on the same port) frames flow again.

    Measured: OpenCV's grab() returns False only after about 3 x read_timeout_s on this
    clip, over TCP and UDP alike: each frame still held in the decoder (B-frame reordering
    keeps 2) is returned after its own read timeout, and the empty grab after one more."""
    ring = FrameRing(4, lock=False)
    opts = StreamOptions(transport, open_timeout_s=2.0, read_timeout_s=1.0)
    src = CaptureSource(own_camera.url, ring, reconnect_initial_s=0.2, reconnect_max_s=1.0,
                        options=opts)
    shapes: list[tuple[int, ...]] = []
    reader = threading.Thread(target=_consume, args=(src, ring, shapes), daemon=True)
    reader.start()
    try:
        _wait(lambda: src.stats.frames >= 50, 20, "50 frames from the camera")
        own_camera.freeze()
        lost_in = _wait(lambda: src.stats.state != "up", 3 * opts.read_timeout_s + 3.0,
                        f"the source to notice silence (read_timeout_s={opts.read_timeout_s})")
        time.sleep(opts.open_timeout_s + 1.0)  # at least one open against the silent camera
        assert src.stats.state in ("down", "connecting"), src.stats.state
        stuck = src.stats.reconnects
        assert stuck >= 1, "no reconnect attempt while the camera was silent"
        before = src.stats.frames
        own_camera.kill()
        own_camera.start()
        back_in = _wait(lambda: src.stats.frames >= before + 50, 20,
                        "50 frames after the camera came back")
        assert src.stats.state == "up" and src.stats.reconnects > stuck
        assert set(shapes) == {(1080, 1920, 3)}
        print(f"{transport}: silence noticed in {lost_in:.1f} s, {stuck} reconnect(s) while "
              f"silent, 50 frames back in {back_in:.1f} s")
    finally:
        t0 = time.monotonic()
        src.close()
        reader.join(5)
    assert not reader.is_alive() and time.monotonic() - t0 < 5.0, "the source did not stop"


# ------------------------------------------------------------------ end to end: edge run


@pytest.fixture(scope="module")
def arcade_watchlist(tmp_path_factory, models_ready) -> tuple[Path, Path, set[str]]:
    """5 people enrolled from one frame of the clip (frame 73), plus held-out real faces."""
    clip = require_rtsp()
    bw = auto_watchlist(load_config(), str(clip), n_video=5, n_lfw=0)
    tmp = tmp_path_factory.mktemp("rtsp_wl")
    key = create_key_file(tmp / "wl.key")
    Watchlist.from_blobs(bw.blobs).save(tmp / "wl", key)
    return tmp / "wl", tmp / "wl.key", set(bw.video_subjects)


def _lines(stream, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_edge_run_alerts_on_an_rtsp_camera(camera, arcade_watchlist, tmp_path, transport):
    """`edge run --config` with one [[cameras]] RTSP entry: alerts (ALERT lines on stdout)
    name the enrolled people seen by camera "arcade", nobody else; SIGTERM stops it within a
    few seconds with exit code 0."""
    wl, key, enrolled = arcade_watchlist
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[alerts]\nendpoint = "tcp://127.0.0.1:1"\n'
        '[privacy]\nlock_memory = false\n'
        '[source]\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n'
        f'[[cameras]]\nname = "arcade"\nlabel = "Arcade, test"\nsource = "{camera.url}"\n'
        f'rtsp_transport = "{transport}"\nopen_timeout_s = 5.0\nread_timeout_s = 3.0\n')
    setups = len(camera.setups)
    t0 = time.monotonic()
    proc = subprocess.Popen(EDGE + ["run", "--watchlist", str(wl), "--key-file", str(key),
                                    "--config", str(cfg)], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    err_lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, err_lines), daemon=True).start()
    alerts: list[str] = []
    found: set[str] = set()
    try:
        deadline = t0 + 45.0  # model load + every enrolled person met once (or twice, looped)
        while found != enrolled and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            if line.startswith("ALERT"):
                alerts.append(line.strip())
                found.add(line.split("subject=", 1)[1].split()[0])
        first_seen = time.monotonic() - t0
        assert proc.poll() is None, "edge run ended by itself"
        stop_t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        stopped_in = time.monotonic() - stop_t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err = "".join(iter(lambda: err_lines.get(timeout=5), None))
    assert proc.returncode == 0, err[-3000:]
    assert stopped_in < 5.0, f"stopped in {stopped_in:.1f} s"
    assert camera.setups[setups:], "the node never set up a stream with the camera"
    given = camera.setups[-1]
    assert ("interleaved" in given) == (transport == "tcp"), given
    assert alerts, f"no alert in {first_seen:.0f} s; stderr: {err[-2000:]}"
    assert all(" arcade: " in a for a in alerts), alerts
    assert found <= enrolled, f"alerted on people not enrolled from the clip: {found - enrolled}"
    assert len(found) >= 4, f"found {sorted(found)} of {sorted(enrolled)} in {first_seen:.0f} s"
    print(f"{transport}: {sorted(found)} found in {first_seen:.1f} s, {len(alerts)} alerts, "
          f"stopped in {stopped_in:.1f} s")
