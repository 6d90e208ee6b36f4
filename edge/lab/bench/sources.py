"""Video files as the node's frame source, and where the benchmark finds its video.

Three sources on top of :mod:`edge.node.sources`: a file looped to a frame count (throughput
runs), a camera stand-in that captures at the video's frame rate whatever the node does
(latency runs, the soak), and a file decoded in the node's own thread (the "no decode-ahead"
speed experiment). Plus a sample clip made from insightface's shipped photo, so the
benchmark and its tests run on any machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import EdgeError, SourceError
from edge.node.demo import sample_images_dir
from edge.node.sources import CaptureSource, Frame, FrameSource
from edge.privacy import FrameRing

ARCADE = Path("shared") / "data" / "videos" / "walking_arcade_1080p.mp4"
SAMPLE_CLIP_NAME = "edge-bench-sample.mp4"


def repo_root() -> Path:
    """The checkout this package runs from (``edge/`` sits at its top)."""
    return Path(__file__).resolve().parents[3]


def shared_data_file(rel: Path) -> Path | None:
    """``../shared/<rel>`` beside the checkout, or from the working directory, if present."""
    for base in (repo_root().parent, Path.cwd().parent, Path.cwd()):
        p = base / rel
        if p.exists():
            return p
    return None


def default_video() -> Path | None:
    """The arcade clip the goals are stated for, when ../shared/data is present."""
    return shared_data_file(ARCADE)


def make_sample_clip(path: Path, frames: int = 40, fps: float = 10.0, size: tuple[int, int] = (960, 640)
                     ) -> Path:
    """A short clip panning over insightface's shipped group photo (six real faces).

    Lets the benchmark, and its test, run on any machine: the photo comes with a
    dependency, so no camera, download or data set is needed.
    """
    group = cv2.imread(str(sample_images_dir() / "t1.jpg"), cv2.IMREAD_COLOR)
    if group is None:
        raise EdgeError("insightface's sample photo t1.jpg is missing; reinstall insightface")
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise EdgeError(f"cannot write a sample clip to {path}")
    gh, gw = group.shape[:2]
    try:
        for i in range(frames):
            z = 1.0 + 0.15 * i / max(1, frames - 1)  # slow zoom and pan: boxes move like people
            cw, ch = int(gw / z), int(gh / z)
            x0 = int((gw - cw) * (0.5 + 0.5 * np.sin(2 * np.pi * i / max(1, frames))) / 2 + (gw - cw) / 4)
            y0 = (gh - ch) // 2
            writer.write(cv2.resize(group[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA))
    finally:
        writer.release()
    return path


def video_info(path: str | Path) -> dict[str, Any]:
    """Size, frame rate and frame count of a video file."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"cannot open video {path}")
    try:
        return {
            "path": str(path),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS) or 25.0),
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        }
    finally:
        cap.release()


class LoopingVideoSource(FrameSource):
    """A video file read to its end ``passes`` times over (or ``total`` frames).

    The arcade clip is 4.2 s long; looping it gives stable rates and enough alerts for
    latency percentiles. Frame indices keep counting across passes so the tracker sees a
    scene cut, as it would when a camera is re-aimed.
    """

    def __init__(self, spec: str, ring: FrameRing, total: int, max_width: int = 1920,
                 inline_decode: bool = False) -> None:
        super().__init__(ring, max_width)
        self.spec = spec
        self.total = total
        self.inline_decode = inline_decode
        self._inner: CaptureSource | None = None

    def frames(self) -> Iterator[Frame]:
        index = 0
        while index < self.total and not self._stop.is_set():
            cls = InlineCaptureSource if self.inline_decode else CaptureSource
            self._inner = cls(self.spec, self.ring, self.max_width, live=False)
            got = 0
            try:
                for f in self._inner.frames():
                    f.index = index
                    index += 1
                    got += 1
                    self.stats.got_frame()
                    yield f
                    if index >= self.total or self._stop.is_set():
                        return
            finally:
                self._absorb()
            if got == 0:
                return

    def _absorb(self) -> None:
        if self._inner is not None:
            s = self._inner.stats
            self.stats.bad_frames += s.bad_frames
            for k, v in s.reasons.items():
                self.stats.reasons[k] = self.stats.reasons.get(k, 0) + v
            self._inner.close()
            self._inner = None

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        self._absorb()


class PacedVideoSource(FrameSource):
    """A camera stand-in: frame ``i`` is captured at ``t0 + i / fps`` whether or not the node
    keeps up, and only the newest waiting frame is kept (older ones are dropped and zeroed),
    exactly the policy of a live source. ``captured_at`` is the frame's capture time, before
    decoding, so capture->alert latency includes decode, waiting and processing.

    ``spec`` may list several videos: they play one after another, round and round (``benchmarks/soak.py``).
    ``decimate = k`` (set by a site for ``detector.interval = k``): only every k-th frame is
    converted and handed on, the others are decoded and counted in ``stats.carried``.
    """

    live = True

    def __init__(self, spec: str | list[str], ring: FrameRing, total: int, fps: float,
                 max_width: int = 1920) -> None:
        super().__init__(ring, max_width)
        self.specs = [spec] if isinstance(spec, str) else list(spec)
        self.spec = self.specs[0]
        self.total = total
        self.fps = fps
        self._cv = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._thread: threading.Thread | None = None
        self.captured = 0
        self.behind_s = 0.0  # worst lag of the capture thread behind the camera clock

    def _capture(self) -> None:
        cap: cv2.VideoCapture | None = None
        t0 = time.time()
        idx = 0
        fails = 0
        vi = 0
        try:
            while idx < self.total and not self._stop.is_set():
                due = t0 + idx / self.fps
                delay = due - time.time()
                if delay > 0 and self._stop.wait(delay):
                    break
                self.behind_s = max(self.behind_s, -delay)
                if cap is None:
                    spec = self.specs[vi % len(self.specs)]
                    cap = cv2.VideoCapture(spec)
                    if not cap.isOpened():
                        raise SourceError(f"cannot open video {spec}")
                    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
                    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
                    self._reshape((h, w, 3))
                if not cap.grab():  # end of file: the camera goes on with the next video/pass
                    cap.release()
                    cap = None
                    vi += 1
                    fails += 1
                    if fails > len(self.specs) + 1:
                        break
                    continue
                fails = 0
                if self.decimate > 1 and (idx + self.decimate_phase) % self.decimate:
                    # between detections (detector.interval): decoded, never converted or
                    # queued, as the product's sources do; the site counts it as carried
                    idx += 1
                    self.captured += 1
                    self.stats.carried += 1
                    self.stats.got_frame()
                    continue
                slot = self.ring.acquire(timeout=5.0)
                if slot is None:
                    self.stats.bad("no free frame slot")
                    idx += 1
                    continue
                buf = self.ring.slot(slot)
                ok, img = cap.retrieve(buf)
                if not ok or img is None or img is not buf:
                    if img is not None and img is not buf:
                        img.fill(0)
                    self.ring.release(slot)
                    self.stats.bad("decode failed")
                    idx += 1
                    continue
                frame = Frame(idx, due, slot, buf)
                idx += 1
                self.captured += 1
                self.stats.got_frame()
                with self._cv:
                    if self._latest is not None:
                        self.ring.release(self._latest.slot)
                        self.stats.dropped_stale += 1
                    self._latest = frame
                    self._cv.notify()
        finally:
            if cap is not None:
                cap.release()
            with self._cv:
                self._ended = True
                self._cv.notify_all()

    def _reshape(self, shape: tuple[int, int, int]) -> None:
        """Switch the ring to another frame size only once the node holds no slot."""
        if self.ring.shape == shape:
            return
        if self.ring.shape is not None:
            with self._cv:
                if self._latest is not None:
                    self.ring.release(self._latest.slot)
                    self.stats.dropped_stale += 1
                    self._latest = None
            ring_cv = self.ring._cv  # noqa: SLF001 - the ring has no public "all free" wait
            with ring_cv:
                ring_cv.wait_for(lambda: len(self.ring._free) == self.ring.size  # noqa: SLF001
                                 or self._stop.is_set(), timeout=10.0)
        self.ring.ensure_shape(shape)

    def frames(self) -> Iterator[Frame]:
        self._thread = threading.Thread(target=self._capture, name="paced-capture", daemon=True)
        self._thread.start()
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._latest is not None or self._ended, timeout=1.0)
                if self._latest is not None:
                    frame, self._latest = self._latest, None
                elif self._ended:
                    return
                else:
                    continue
            yield frame

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._cv:
            if self._latest is not None:
                self.ring.release(self._latest.slot)
                self._latest = None


class InlineCaptureSource(CaptureSource):
    """A video file decoded in the node's own thread, one frame at a time.

    The product's file source decodes ahead in a thread; this one does not, so the speed
    experiments can measure what that overlap buys.
    """

    def _file_frames(self) -> Iterator[Frame]:
        index = 0
        while not self._stop.is_set():
            got = self._read_into_slot(index)
            index += 1
            if got is None:
                return
            if not isinstance(got, Frame):  # a bad frame, skipped
                continue
            self.stats.got_frame()
            yield got
