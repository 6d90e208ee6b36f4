"""Frame sources: stream reconnects with back-off, files run to their end."""

from __future__ import annotations

import functools
import http.server
import threading

import cv2
import pytest

from edge.node.sources import CaptureSource, describe
from edge.privacy import FrameRing
from tests.conftest import write_clip

pytestmark = pytest.mark.unit


def test_describe_kinds(tmp_path):
    assert describe("0") == "webcam"
    assert describe("rtsp://cam/stream") == "url"
    assert describe(str(tmp_path)) == "folder"
    assert describe(str(tmp_path / "x.mp4")) == "file"


def test_file_source_reads_every_frame(tmp_path, sample_images):
    img = cv2.imread(str(sample_images / "t1.jpg"))
    clip = write_clip(tmp_path / "c.mp4", [img] * 17)
    ring = FrameRing(3, lock=False)
    src = CaptureSource(str(clip), ring)
    n = 0
    for frame in src.frames():
        assert frame.index == n
        ring.release(frame.slot)
        n += 1
    src.close()
    assert n == 17 and src.stats.dropped_stale == 0


def test_stream_reconnects_after_it_drops(tmp_path, sample_images):
    """An HTTP stream that ends is reopened with back-off; frames keep coming."""
    img = cv2.imread(str(sample_images / "t1.jpg"))
    write_clip(tmp_path / "s.mp4", [cv2.resize(img, (320, 224))] * 8)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))

    class Quiet(handler.func):  # type: ignore[misc,name-defined]
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        Quiet, directory=str(tmp_path)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/s.mp4"
        ring = FrameRing(4, lock=False)
        src = CaptureSource(url, ring, live=True, reconnect_initial_s=0.05, max_reconnects=2)
        got = 0
        for frame in src.frames():
            ring.release(frame.slot)
            got += 1
        src.close()
    finally:
        srv.shutdown()
    assert src.stats.reconnects == 2
    assert src.stats.frames >= 16, "the stream was read again after each reconnect"
    assert got >= 3


def test_file_played_live_is_paced_and_keeps_newest(tmp_path, sample_images):
    """realtime=true replays a file at its frame rate, dropping frames a slow consumer misses."""
    import time

    img = cv2.imread(str(sample_images / "t1.jpg"))
    clip = write_clip(tmp_path / "c.mp4", [cv2.resize(img, (320, 224))] * 20, fps=20.0)
    ring = FrameRing(4, lock=False)
    src = CaptureSource(str(clip), ring, live=True)
    t0 = time.monotonic()
    got = 0
    for frame in src.frames():
        time.sleep(0.12)  # a consumer slower than 20 fps
        ring.release(frame.slot)
        got += 1
    src.close()
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 3.0, "20 frames at 20 fps take about a second"
    assert src.stats.reconnects == 0
    assert src.stats.dropped_stale > 0 and got < 20
