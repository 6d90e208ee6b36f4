"""A real RTSP server for the tests: GStreamer's gst-rtsp-server looping an H.264 clip.

Run with the system python (python3-gi lives there, not in the venv)::

    /usr/bin/python3 tests/rtsp_serve.py --port 0 --file clip.mp4 --path /arcade

The clip's H.264 access units are demuxed once (no re-encoding) and replayed in a loop
through an appsrc, with timestamps that keep growing across loops, so a client can read for
as long as it likes. Every client gets its own pipeline starting at the clip's first (and
only) keyframe. Both RTP over the RTSP TCP connection and RTP over UDP are offered.

Prints ``READY rtsp://127.0.0.1:PORT/PATH`` once it listens (PORT is the bound port, so
``--port 0`` picks a free one) and serves until SIGTERM/SIGINT (or until killed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

NONE = Gst.CLOCK_TIME_NONE


class Clip:
    """The clip's H.264 access units as the MP4 holds them (avc, SPS/PPS in the caps'
    codec_data, which rtph264pay sends in band before each keyframe), with their timing."""

    def __init__(self, path: str) -> None:
        pipe = Gst.parse_launch(
            "filesrc name=f ! qtdemux ! video/x-h264,stream-format=avc,alignment=au ! "
            "appsink name=s sync=false"
        )
        pipe.get_by_name("f").set_property("location", path)
        sink = pipe.get_by_name("s")
        pipe.set_state(Gst.State.PLAYING)
        self.units: list[tuple[bytes, int, int, bool]] = []  # data, pts, dts, keyframe
        self.caps: Gst.Caps | None = None
        while True:
            sample = sink.emit("pull-sample")
            if sample is None:
                break
            if self.caps is None:
                self.caps = sample.get_caps()
            buf = sample.get_buffer()
            ok, info = buf.map(Gst.MapFlags.READ)
            if not ok:
                continue
            data = bytes(info.data)
            buf.unmap(info)
            key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
            self.units.append((data, buf.pts, buf.dts, key))
        bus = pipe.get_bus()
        err = bus.pop_filtered(Gst.MessageType.ERROR)
        pipe.set_state(Gst.State.NULL)
        if err is not None or not self.units or self.caps is None:
            why = err.parse_error()[0].message if err is not None else "no H.264 frames"
            raise SystemExit(f"rtsp_serve: cannot read {path}: {why}")
        fps = self.caps.get_structure(0).get_fraction("framerate")
        num, den = (fps[1], fps[2]) if fps[0] and fps[1] else (25, 1)
        self.frame_ns = Gst.util_uint64_scale(Gst.SECOND, den, num)
        self.loop_ns = self.frame_ns * len(self.units)  # one pass of the clip


class Feed:
    """Pushes one client's loop of the clip into its appsrc, paced by the sinks' clock."""

    def __init__(self, clip: Clip, appsrc: Gst.Element) -> None:
        self.clip, self.appsrc, self.n = clip, appsrc, 0
        appsrc.set_property("caps", clip.caps)
        appsrc.connect("need-data", self.need_data)

    def need_data(self, src: Gst.Element, _length: int) -> None:
        units = self.clip.units
        data, pts, dts, key = units[self.n % len(units)]
        offset = (self.n // len(units)) * self.clip.loop_ns
        buf = Gst.Buffer.new_wrapped(data)
        # B-frames: pts and dts differ; both move on by one clip length per loop
        buf.pts = pts + offset if pts != NONE else NONE
        buf.dts = dts + offset if dts != NONE else NONE
        buf.duration = self.clip.frame_ns
        if not key:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        self.n += 1
        src.emit("push-buffer", buf)


class Factory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self.feeds: list[Feed] = []
        self.lock = threading.Lock()
        # appsrc is not live: the RTP sinks sync on the clock, so frames go out at 25 fps
        self.set_launch(
            "( appsrc name=src format=time is-live=false block=true max-bytes=2000000 "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.set_shared(False)  # each client starts at the keyframe
        self.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
        self.connect("media-configure", self.on_configure)

    def on_configure(self, _factory: GstRtspServer.RTSPMediaFactory,
                     media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        feed = Feed(self.clip, appsrc)
        with self.lock:
            self.feeds.append(feed)
        media.connect("unprepared", self.on_unprepared, feed)

    def on_unprepared(self, _media: GstRtspServer.RTSPMedia, feed: Feed) -> None:
        with self.lock:
            if feed in self.feeds:
                self.feeds.remove(feed)


def on_setup(_client: GstRtspServer.RTSPClient, ctx: GstRtspServer.RTSPContext) -> None:
    res, transport = ctx.request.get_header(GstRtsp.RTSPHeaderField.TRANSPORT, 0)
    print(f"SETUP transport={transport if res == GstRtsp.RTSPResult.OK else '?'}", flush=True)


def on_client(_server: GstRtspServer.RTSPServer, client: GstRtspServer.RTSPClient) -> None:
    client.connect("setup-request", on_setup)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    ap.add_argument("--file", required=True, help="an MP4 with an H.264 video track")
    ap.add_argument("--path", default="/arcade", help="mount point, e.g. /arcade")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    Gst.init(None)
    clip = Clip(args.file)
    path = args.path if args.path.startswith("/") else "/" + args.path

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(path, Factory(clip))
    # one line per SETUP on stdout, so a test can see which transport a client really got
    server.connect("client-connected", on_client)
    loop = GLib.MainLoop()
    try:
        if server.attach(None) == 0:
            raise GLib.Error("attach failed")
    except GLib.Error as exc:
        print(f"rtsp_serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    parent = os.getppid()

    def orphaned() -> bool:
        # a test run that died without stopping us: do not serve on forever
        if os.getppid() != parent:
            loop.quit()
            return False
        return True

    GLib.timeout_add_seconds(1, orphaned)
    print(f"READY rtsp://{args.host}:{server.get_bound_port()}{path} "
          f"frames={len(clip.units)} fps={Gst.SECOND / clip.frame_ns:g}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
