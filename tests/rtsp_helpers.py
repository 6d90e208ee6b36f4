"""A real RTSP server (tests/rtsp_serve.py, GStreamer) on 127.0.0.1 for tests.

The server needs Debian's python3-gi and gst-rtsp-server, which live in the system python,
not in the venv, so it runs as a ``/usr/bin/python3`` subprocess. Tests that use it skip
with a clear reason when those packages or ../shared/data are missing.

    server = start_rtsp_server()      # the arcade clip on a free port, mount /arcade
    server.url                        # rtsp://127.0.0.1:PORT/arcade
    server.kill(); server.start()     # a camera that dies and comes back on the same port
    server.freeze()                   # a camera gone silent (SIGSTOP): no close, no reset
    server.stop()
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import shared_path

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVE = Path(__file__).with_name("rtsp_serve.py")
ARCADE = ("videos", "walking_arcade_1080p.mp4")  # 1920x1080, 25 fps, 105 frames, H.264
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
# what the server's pipelines are made of: demux the clip, replay and packetise its H.264
ELEMENTS = ("filesrc", "qtdemux", "appsrc", "appsink", "rtph264pay", "rtpbin", "udpsink",
            "udpsrc")
_PROBE = (
    "import gi, sys\n"
    "gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
    "from gi.repository import Gst, GstRtspServer\n"
    "Gst.init(None)\n"
    f"missing = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None]\n"
    "print(' '.join(missing)); sys.exit(1 if missing else 0)\n"
)


@functools.cache
def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here (one line), or None when it can."""
    why = f"needs Debian's {PACKAGES} (scripts/install.sh installs them as root)"
    if not SYSTEM_PYTHON.is_file():
        return f"{why}: {SYSTEM_PYTHON} is absent"
    try:
        r = subprocess.run([str(SYSTEM_PYTHON), "-c", _PROBE], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{why}: {SYSTEM_PYTHON} failed: {exc}"
    if r.returncode == 0:
        return None
    if r.stdout.strip():
        return f"{why}: GStreamer elements missing: {r.stdout.strip()}"
    last = (r.stderr.strip().splitlines() or ["?"])[-1]
    return f"{why}: {SYSTEM_PYTHON} cannot load gi/GstRtspServer: {last}"


def require_rtsp() -> Path:
    """The arcade clip, or skip: no ../shared/data, or no GStreamer RTSP server here."""
    clip = shared_path(*ARCADE)
    why = rtsp_unavailable()
    if why:
        pytest.skip(why)
    return clip


class RtspServer:
    """tests/rtsp_serve.py as a subprocess: start, stop (SIGTERM), kill (SIGKILL), restart.

    The first start binds a free port (``--port 0``); later starts reuse that port, as a
    camera that reboots does. ``setups`` collects the server's ``SETUP transport=...`` lines:
    the transport each client was really given.
    """

    def __init__(self, clip: Path, path: str = "/arcade", port: int = 0) -> None:
        self.clip, self.path, self.port = clip, path, port
        self.proc: subprocess.Popen[str] | None = None
        self.setups: list[str] = []
        self._ready = threading.Event()
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()

    @property
    def url(self) -> str:
        assert self.port, "start the server first"
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, timeout: float = 20.0) -> RtspServer:
        """Start and wait for its READY line; raise with its stderr if it does not come."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._ready.clear()
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                [str(SYSTEM_PYTHON), str(SERVE), "--port", str(self.port), "--file",
                 str(self.clip), "--path", self.path],
                stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
                env={**os.environ, "GST_DEBUG": os.environ.get("GST_DEBUG", "1")})
            threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
            while not self._ready.wait(0.05):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    break
            if self._ready.is_set():
                return self
            if self.proc.poll() is None:
                self.kill()
                raise RuntimeError(f"RTSP server not ready in {timeout:.0f} s: {self.stderr()}")
            # the port of a server just killed may still be held for a moment: try again
            if time.monotonic() > deadline or "cannot listen" not in self.stderr():
                raise RuntimeError(f"RTSP server exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.2)

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("READY "):
                self.port = int(line.split()[1].rsplit(":", 1)[1].split("/", 1)[0])
                self._ready.set()
            elif line.startswith("SETUP "):
                self.setups.append(line.split("transport=", 1)[1])

    def stderr(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read()
        self._stderr.seek(0, os.SEEK_END)
        return text.strip()[-2000:]

    def kill(self) -> None:
        """Die at once (SIGKILL), like a camera losing power: no RTSP teardown."""
        self._end(signal.SIGKILL)

    def freeze(self) -> None:
        """Go silent without closing anything (SIGSTOP), like a camera whose cable is pulled:
        only a client's read timeout can tell."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop (SIGTERM), killing it if it does not end within ``timeout`` s."""
        self._end(signal.SIGTERM, timeout)

    def _end(self, sig: signal.Signals, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        if sig != signal.SIGKILL:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server must run to see SIGTERM
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, timeout: float = 20.0) -> RtspServer:
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        self.stop()
        self._stderr.close()

    def __enter__(self) -> RtspServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_rtsp_server(path: str = "/arcade") -> RtspServer:
    """The arcade clip served on a free 127.0.0.1 port (skips when that cannot be done here)."""
    return RtspServer(require_rtsp(), path).start()
