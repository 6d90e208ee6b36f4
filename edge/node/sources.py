"""Frame sources: webcam index, video file, rtsp/http URL, image folder.

Every source decodes straight into a :class:`edge.privacy.FrameRing` slot, so decoded pixels
live only in buffers the privacy module zeroes. Live sources run a capture thread that keeps
only the newest frames (older waiting frames are dropped and counted), and reconnect with
exponential back-off. Files and folders are read to their end without dropping.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError
from edge.privacy import FrameRing

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}


@dataclass
class Frame:
    """One decoded frame. ``image`` is a view of a ring slot; release it via the ring."""

    index: int
    captured_at: float  # unix time the frame was captured/decoded
    slot: int
    image: np.ndarray
    name: str = ""  # file name for folder sources (not biometric)
    carried_before: int = 0  # frames decoded before this one but never converted (interval)


SOURCE_STATES = ("connecting", "up", "down", "ended", "failed")


@dataclass
class SourceStats:
    """Counts and state only: what was read, dropped and why (never any pixels).

    Written by the capture thread, read by the health monitor (single assignments: the
    monitor may see one frame's update late, never a torn value).
    """

    frames: int = 0
    carried: int = 0  # decoded only: between two detections, their pixels are never needed
    dropped_stale: int = 0
    bad_frames: int = 0
    reconnects: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    state: str = "connecting"  # one of SOURCE_STATES
    reason: str = ""  # why it is not up ("" when up)
    last_frame_at: float = 0.0  # time.monotonic() of the newest frame; 0 = none yet

    def bad(self, reason: str) -> None:
        self.bad_frames += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def got_frame(self) -> None:
        self.frames += 1
        self.last_frame_at = time.monotonic()
        if self.state != "up":
            self.up()

    def up(self) -> None:
        self.set_state("up", "")

    def set_state(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason


def describe(spec: str) -> str:
    """Kind of source a --source string means: webcam, url, folder or file."""
    if spec.isdigit():
        return "webcam"
    if "://" in spec:
        return "url"
    if Path(spec).is_dir():
        return "folder"
    return "file"


class FrameSource:
    """Base: iterate frames; the caller releases each frame's slot back to the ring.

    ``decimate = k`` (set before ``frames()``) asks for every k-th frame only: a source
    that can decodes the others without converting or copying them (a stream must still be
    decoded frame by frame) and counts them in ``stats.carried``. Others ignore it.
    """

    live: bool = False
    decimate: int = 1
    decimate_phase: int = 0  # which frame of every ``decimate`` is kept (cameras staggered)

    def __init__(self, ring: FrameRing, max_width: int = 1920) -> None:
        self.ring = ring
        self.max_width = max_width
        self.stats = SourceStats()
        self._stop = threading.Event()

    def frames(self) -> Iterator[Frame]:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        self.stop()

    def _check_shape(self, h: int, w: int) -> str | None:
        if w > self.max_width or w < 16 or h < 16:
            return f"frame size {w}x{h} outside 16..{self.max_width} px wide"
        return None


class ImageFolderSource(FrameSource):
    """Images of a folder in name order (or one image file); unreadable files are skipped
    with a counted reason."""

    def __init__(self, folder: str | Path, ring: FrameRing, max_width: int = 1920) -> None:
        super().__init__(ring, max_width)
        self.folder = Path(folder)
        if self.folder.is_file():  # one still image (VideoCapture would end it "0 frames")
            self.files = [self.folder]
            return
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        self.files = sorted(
            p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.folder}")

    def frames(self) -> Iterator[Frame]:
        self.stats.up()
        for i, path in enumerate(self.files):
            if self._stop.is_set():
                return
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                self.stats.bad("unreadable image")
                log.warning("skipped %s: unreadable or not an image", path.name)
                continue
            problem = self._check_shape(*img.shape[:2])
            if problem:
                img.fill(0)
                self.stats.bad("bad frame size")
                log.warning("skipped %s: %s", path.name, problem)
                continue
            self.ring.ensure_shape(img.shape)
            slot = self.ring.acquire()
            assert slot is not None
            buf = self.ring.slot(slot)
            np.copyto(buf, img)
            img.fill(0)  # the decoder's copy is ours too: clear it before it is freed
            self.stats.got_frame()
            yield Frame(i, time.time(), slot, buf, path.name)
        self.stats.set_state("ended", "end of folder")


@dataclass(frozen=True)
class StreamOptions:
    """How a live stream is opened: RTSP transport and FFmpeg timeouts."""

    rtsp_transport: str = "auto"  # "tcp", "udp" or "auto" (OpenCV's FFmpeg default)
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0


# OpenCV reads FFmpeg options from this variable when a capture opens; it is process-wide,
# so a camera's transport is set and restored around its own open, one open at a time
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_open_lock = threading.Lock()


def open_capture(target: int | str, opts: StreamOptions | None = None) -> cv2.VideoCapture | None:
    """An opened VideoCapture, or None. URLs get FFmpeg's timeouts and the RTSP transport."""
    if isinstance(target, int) or "://" not in target or opts is None:
        cap = cv2.VideoCapture(target)
    else:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(opts.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(opts.read_timeout_s * 1000)]
        with _open_lock:
            before = os.environ.get(_FFMPEG_OPTIONS)
            if opts.rtsp_transport != "auto" and target.lower().startswith("rtsp"):
                extra = f"rtsp_transport;{opts.rtsp_transport}"
                os.environ[_FFMPEG_OPTIONS] = f"{before}|{extra}" if before else extra
            try:
                cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
            finally:
                if before is None:
                    os.environ.pop(_FFMPEG_OPTIONS, None)
                else:
                    os.environ[_FFMPEG_OPTIONS] = before
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class CaptureSource(FrameSource):
    """OpenCV VideoCapture for a file, a webcam index or a stream URL.

    Files are read to their end (a decode thread stays a few frames ahead). Webcams and URLs
    are ``live``: a capture thread connects (a camera that is not up yet is retried like a
    dropped one), decodes continuously, keeps only the newest frame and reconnects with
    back-off. The capture thread owns its VideoCapture, so stopping never waits on FFmpeg.
    """

    def __init__(
        self,
        spec: str,
        ring: FrameRing,
        max_width: int = 1920,
        live: bool | None = None,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        max_reconnects: int = 0,
        options: StreamOptions | None = None,
    ) -> None:
        super().__init__(ring, max_width)
        self.spec = spec
        kind = describe(spec)
        self.live = kind in ("webcam", "url") if live is None else live
        self.kind = kind
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.max_reconnects = max_reconnects
        self.options = options or StreamOptions()
        self.cap: cv2.VideoCapture | None = None
        self.fps = 0.0
        if kind == "file" and not Path(spec).is_file():
            raise SourceError(f"video file not found: {spec}")
        if kind == "file" or not self.live:
            # a file that cannot be opened will not open later either: refuse it at start
            self.cap = self._open()
            if self.cap is None:
                raise SourceError(f"cannot open {kind} source {self._safe_spec()}")
            self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._queue: queue.Queue[Frame | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._latest: list[Frame] = []
        self._latest_lock = threading.Condition()
        self._ended = False

    def _safe_spec(self) -> str:
        return safe_spec(self.spec)

    def _open(self) -> cv2.VideoCapture | None:
        target: int | str = int(self.spec) if self.kind == "webcam" else self.spec
        return open_capture(target, self.options)

    def _read_into_slot(self, index: int) -> Frame | None | bool:
        """Decode one frame into a free slot. Returns a Frame, None at end/failure, False
        for a bad frame that was skipped, True for a frame decoded but not converted
        (``decimate``: the pipeline will not look at it)."""
        assert self.cap is not None
        if not self.cap.grab() or self._stop.is_set():
            return None
        if self.decimate > 1 and (index + self.decimate_phase) % self.decimate:
            self.stats.carried += 1
            self.stats.got_frame()
            return True
        shape = self.ring.shape
        if shape is None:
            ok, img = self.cap.retrieve()
            if not ok or img is None:
                self.stats.bad("decode failed")
                return False
            problem = self._check_shape(*img.shape[:2])
            if problem or img.ndim != 3 or img.shape[2] != 3:
                img.fill(0)
                self.stats.bad("bad frame size")
                log.warning("skipped frame %d: %s", index, problem or "not 3-channel")
                return False
            self.ring.ensure_shape(img.shape)
            slot = self.ring.acquire()
            assert slot is not None
            np.copyto(self.ring.slot(slot), img)
            img.fill(0)
            return Frame(index, time.time(), slot, self.ring.slot(slot))
        slot = self.ring.acquire(timeout=5.0)
        if slot is None:
            self.stats.bad("no free frame slot")
            return False
        buf = self.ring.slot(slot)
        ok, img = self.cap.retrieve(buf)
        if not ok or img is None:
            self.ring.release(slot)
            self.stats.bad("decode failed")
            return False
        if img is not buf:
            # a frame of another size (stream changed resolution): re-shape the ring
            self.ring.release(slot)
            problem = self._check_shape(*img.shape[:2])
            if problem or img.ndim != 3 or img.shape[2] != 3:
                img.fill(0)
                self.stats.bad("bad frame size")
                log.warning("skipped frame %d: %s", index, problem or "not 3-channel")
                return False
            self.ring.ensure_shape(img.shape)
            slot = self.ring.acquire(timeout=5.0)
            if slot is None:
                img.fill(0)
                self.stats.bad("no free frame slot")
                return False
            np.copyto(self.ring.slot(slot), img)
            img.fill(0)
            buf = self.ring.slot(slot)
        return Frame(index, time.time(), slot, buf)

    def frames(self) -> Iterator[Frame]:
        if not self.live:
            yield from self._file_frames()
        else:
            yield from self._live_frames()

    def _file_frames(self) -> Iterator[Frame]:
        """Decode ahead in a thread (decoding overlaps detection), never dropping a frame.

        The ring bounds how far ahead: when every slot is in use the decoder waits.
        """
        self._thread = threading.Thread(target=self._decode_ahead, name="decode", daemon=True)
        self._thread.start()
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            yield frame

    def _decode_ahead(self) -> None:
        index = 0
        consecutive_bad = 0
        self.stats.up()
        try:
            while not self._stop.is_set() and self.cap is not None:
                got = self._read_into_slot(index)
                index += 1
                if got is None:
                    self.stats.set_state("ended", "end of file")
                    return
                if got is True:
                    continue
                if got is False:
                    consecutive_bad += 1
                    if consecutive_bad > 100:
                        log.warning("source %s: 100 bad frames in a row, stopping",
                                    self._safe_spec())
                        self.stats.set_state("failed", "100 bad frames in a row")
                        return
                    continue
                consecutive_bad = 0
                self.stats.got_frame()
                self._queue.put(got)
        except Exception as exc:  # noqa: BLE001 - report, end the source cleanly
            log.error("source %s: decoder failed: %s", self._safe_spec(), type(exc).__name__)
            self.stats.set_state("failed", f"decoder failed: {type(exc).__name__}")
        finally:
            self._release_cap()
            self._queue.put(None)

    def _release_cap(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    # ---- live: capture thread keeps the newest frames only ----
    def _connect(self, reconnects: int, backoff: float) -> tuple[bool, int, float]:
        """Wait ``backoff`` and try to (re)connect. Returns (go on, reconnects, next back-off)."""
        if self.max_reconnects and reconnects >= self.max_reconnects:
            log.error("source %s: giving up after %d reconnects", self._safe_spec(), reconnects)
            self.stats.set_state("failed", f"gave up after {reconnects} reconnects")
            return False, reconnects, backoff
        if self._stop.wait(backoff):
            return False, reconnects, backoff
        reconnects += 1
        self.stats.reconnects += 1
        self.cap = self._open()
        if self.cap is None:
            log.warning("source %s: cannot connect; retrying in %.1fs", self._safe_spec(),
                        min(backoff * 2, self.reconnect_max_s))
            return True, reconnects, min(backoff * 2, self.reconnect_max_s)
        log.info("source %s: connected", self._safe_spec())
        return True, reconnects, self.reconnect_initial_s

    def _capture_loop(self) -> None:
        try:
            self._capture()
        except Exception as exc:  # noqa: BLE001 - report, end the source cleanly
            log.error("source %s: capture failed: %s", self._safe_spec(), type(exc).__name__)
            self.stats.set_state("failed", f"capture failed: {type(exc).__name__}")
        finally:
            self._release_cap()
            with self._latest_lock:
                self._ended = True
                self._latest_lock.notify_all()

    def _capture(self) -> None:
        index = 0
        backoff = self.reconnect_initial_s
        reconnects = 0
        if self.cap is None:  # a live camera connects here, not in the constructor
            self.cap = self._open()
            if self.cap is None:
                self.stats.set_state("connecting", "not reachable yet")
                log.warning("source %s: cannot connect; retrying in %.1fs", self._safe_spec(), backoff)
        if self.cap is not None and not self.fps:
            self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        # a file played "live" (benchmarks, replaying footage) is paced at its own frame rate
        pace = 1.0 / self.fps if self.kind == "file" and self.fps > 0 else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self.cap is None:
                go_on, reconnects, backoff = self._connect(reconnects, backoff)
                if not go_on:
                    break
                continue
            if pace:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + pace, time.monotonic() - pace)
            got = self._read_into_slot(index)
            index += 1
            if got is None and self._stop.is_set():
                break
            if got is None and self.kind == "file":
                self.stats.set_state("ended", "end of file")
                break  # end of a replayed file: nothing to reconnect to
            if got is None:
                self._release_cap()
                self.stats.set_state("down", "stream lost")
                log.warning("source %s lost; reconnecting in %.1fs", self._safe_spec(), backoff)
                continue
            if got is False or got is True:
                continue
            self.stats.got_frame()
            with self._latest_lock:
                # keep only the newest frame waiting: drop (and zero) older ones
                while self._latest:
                    old = self._latest.pop(0)
                    self.ring.release(old.slot)
                    self.stats.dropped_stale += 1
                self._latest.append(got)
                self._latest_lock.notify()

    def _live_frames(self) -> Iterator[Frame]:
        self._thread = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self._thread.start()
        while not self._stop.is_set():
            with self._latest_lock:
                self._latest_lock.wait_for(lambda: bool(self._latest) or self._ended, timeout=0.2)
                if self._latest:
                    frame = self._latest.pop(0)
                elif self._ended:
                    return
                else:
                    continue
            yield frame

    def close(self, timeout: float = 5.0) -> None:
        """Stop, wait up to ``timeout`` s for the capture thread, zero what it left waiting.

        A thread still inside FFmpeg (connecting, or reading a silent stream) is left to end
        on its own timeout: it owns its VideoCapture and releases it itself.
        """
        self.stop()
        self._drain()  # frees slots so a decoder waiting for one can see the stop
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._drain()
        if self._thread is None:
            self._release_cap()

    def _drain(self) -> None:
        """Zero and free frames decoded but never processed."""
        with self._latest_lock:
            for f in self._latest:
                self.ring.release(f.slot)
            self._latest.clear()
        while True:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                break
            if waiting is not None:
                self.ring.release(waiting.slot)


def safe_spec(spec: str) -> str:
    """A source string fit for logs and officers: credentials in a URL replaced by ***."""
    if "://" in spec and "@" in spec:
        scheme, rest = spec.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return spec


def open_source(
    spec: str,
    ring: FrameRing,
    max_width: int = 1920,
    live: bool | None = None,
    reconnect_initial_s: float = 0.5,
    reconnect_max_s: float = 30.0,
    max_reconnects: int = 0,
    options: StreamOptions | None = None,
) -> FrameSource:
    """Open what ``--source`` names; raises SourceError with one clear line if it can't.

    Files and folders are checked here; a live camera or URL connects (and retries) in its
    capture thread, so a camera that is not up yet at start is reported down, not fatal.
    """
    kind = describe(spec)
    if kind == "folder" or (kind == "file" and Path(spec).suffix.lower() in IMAGE_SUFFIXES
                            and Path(spec).is_file()):
        return ImageFolderSource(spec, ring, max_width)
    return CaptureSource(
        spec, ring, max_width, live, reconnect_initial_s, reconnect_max_s, max_reconnects, options
    )
