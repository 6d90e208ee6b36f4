"""Camera health in heartbeats: the wire form, strict refusal of bad ``cameras`` values, old
heartbeats still valid; the senders call the health provider at every heartbeat, clean what it
gives, keep heartbeats within 16 KiB and survive a provider that raises."""

from __future__ import annotations

import json
import logging
import queue
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from edge.link.schema import (
    CAMERA_STATES,
    HEARTBEAT,
    MAX_CAMERAS,
    MAX_CONTROL_BYTES,
    CameraHealth,
    Heartbeat,
    MessageError,
    parse_heartbeat,
)
from edge.link.sender import OutboxSender, clean_camera
from edge.link.zmq_sender import ZmqSender
from tests.hub_helpers import RunningHub, hub_config, wait_for

pytestmark = pytest.mark.unit

RUN = "b" * 32
CAM = CameraHealth("entrance-a", "Entrance A", "down", 0.0, 12.4, 3, 1520, "RTSP read timeout")
WIRE_ENTRY = (b'{"name":"entrance-a","label":"Entrance A","state":"down","fps":0.0,'
              b'"last_frame_age_s":12.4,"reconnects":3,"frames":1520,"reason":"RTSP read timeout"}')


def _beat(*cams: CameraHealth) -> Heartbeat:
    return Heartbeat("n1", "", RUN, 1.0, 0, {}, tuple(cams))


def _with_cameras(value: object) -> list[bytes]:
    body = {"node_id": "n1", "run_id": RUN, "sent_at": 1.0, "cameras": value}
    return [HEARTBEAT, json.dumps(body).encode()]


def test_wire_form_and_round_trip() -> None:
    up = CameraHealth("exit-b", "", "up", 24.8, 0.04, 0, 99)
    frames = _beat(CAM, up).to_frames()
    assert b'"cameras":[' + WIRE_ENTRY + b',' in frames[1]
    assert json.loads(frames[1])["cameras"][1] == asdict(up)
    assert parse_heartbeat(frames) == _beat(CAM, up)
    none_yet = CameraHealth("c", "C", "connecting", 0, None, 0, 0, "no frame yet")
    parsed = parse_heartbeat(_beat(none_yet).to_frames()).cameras[0]
    assert parsed.last_frame_age_s is None and isinstance(parsed.fps, float)


def test_old_heartbeats_unchanged_and_still_valid() -> None:
    frames = Heartbeat("node-1", "gate", RUN, 12.5, 2, {"faces_seen": 3}).to_frames()
    assert b"cameras" not in frames[1]  # byte-for-byte what hubs before cameras read
    assert parse_heartbeat(frames).cameras == ()
    assert parse_heartbeat(_with_cameras([])).cameras == ()
    # reason may be left out (defaults to "")
    entry = {k: v for k, v in asdict(CAM).items() if k != "reason"}
    assert parse_heartbeat(_with_cameras([entry])).cameras[0].reason == ""


def _entry(**change: object) -> dict[str, object]:
    e: dict[str, object] = asdict(CAM)
    for k, v in change.items():
        if v is KeyError:
            del e[k]
        else:
            e[k] = v
    return e


@pytest.mark.parametrize(
    "value",
    [
        {"entrance-a": "down"},
        "down",
        [asdict(CAM)] * 2,  # the same name twice
        [dict(_entry(), name=f"c{i}") for i in range(MAX_CAMERAS + 1)],
        [["entrance-a", "down"]],
        [_entry(name="")],
        [_entry(name="n" * 65)],
        [_entry(name=7)],
        [_entry(label="l" * 257)],
        [_entry(label=None)],
        [_entry(state="online")],
        [_entry(state="UP")],
        [_entry(fps=-1)],
        [_entry(fps="25")],
        [_entry(fps=True)],
        [_entry(fps=10**400)],
        [_entry(last_frame_age_s=-0.5)],
        [_entry(last_frame_age_s="old")],
        [_entry(reconnects=-1)],
        [_entry(reconnects=1.5)],
        [_entry(frames=2**53)],
        [_entry(frames=False)],
        [_entry(reason="r" * 201)],
        [_entry(reason=None)],
        [_entry(state=KeyError)],
        [_entry(last_frame_age_s=KeyError)],
        [_entry(embedding=[0.1] * 4)],  # nothing rides along
    ],
)
def test_bad_cameras_refused(value: object) -> None:
    with pytest.raises(MessageError) as ei:
        parse_heartbeat(_with_cameras(value))
    assert ei.value.reason == "field" and str(ei.value) == "bad cameras in heartbeat"


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_refused(token: bytes) -> None:
    frames = _beat(CAM).to_frames()
    frames[1] = frames[1].replace(b'"fps":0.0', b'"fps":' + token)
    with pytest.raises(MessageError):
        parse_heartbeat(frames)


def test_all_states_and_the_limits_accepted() -> None:
    cams = [replace(CAM, name=f"c{i}", state=CAMERA_STATES[i % len(CAMERA_STATES)])
            for i in range(MAX_CAMERAS)]
    assert len(parse_heartbeat(_beat(*cams).to_frames()).cameras) == MAX_CAMERAS
    longest = replace(CAM, name="n" * 64, label="L" * 256, reason="r" * 200, frames=2**53 - 1)
    assert parse_heartbeat(_beat(longest).to_frames()).cameras == (longest,)


def test_clean_camera_fixes_numbers_and_texts_drops_bad_identity() -> None:
    dirty = CameraHealth("cam-1", "x" * 300, "down", float("nan"), -3.0, -1, 2**60, "y" * 500)
    c = clean_camera(dirty)
    assert c is not None
    assert (len(c.label), c.fps, c.last_frame_age_s, c.reconnects, len(c.reason)) == (
        256, 0.0, None, 0, 200)
    assert c.frames == 2**53 - 1
    assert clean_camera(replace(CAM, state="online")) is None
    assert clean_camera(replace(CAM, name="")) is None
    assert clean_camera({"name": "x"}) is None
    assert clean_camera(CAM) == CAM


class CaptureSender(OutboxSender):
    """A transport that only records what the base hands it (no hub answers)."""

    def __init__(self, outbox: Path, **kw: object) -> None:
        super().__init__(outbox, "n1", heartbeat_interval=0.05, **kw)  # type: ignore[arg-type]
        self.sent: queue.Queue[list[bytes]] = queue.Queue()

    def _open(self) -> None:
        pass

    def _transmit(self, frames: list[bytes]) -> bool:
        self.sent.put(frames)
        return True

    def _wait(self, timeout: float) -> list[list[bytes]]:
        time.sleep(min(timeout, 0.05))
        return []

    def _wake(self) -> None:
        pass

    def _close_link(self) -> None:
        pass

    def beats(self, n: int) -> list[Heartbeat]:
        out = []
        while len(out) < n:
            frames = self.sent.get(timeout=5)
            if frames[0] == HEARTBEAT:
                out.append(parse_heartbeat(frames))  # the hub's validator accepts each one
        return out


def test_sender_calls_provider_at_every_heartbeat(tmp_path: Path) -> None:
    current = [CAM]
    calls = []

    def health() -> list[CameraHealth]:
        calls.append(1)
        return list(current)

    s = CaptureSender(tmp_path / "o.sqlite", health=health).start()
    try:
        assert s.beats(1)[0].cameras == (CAM,)
        current[:] = [replace(CAM, state="up", reason="", fps=25.0, last_frame_age_s=0.04)]
        wait_for(lambda: s.beats(1)[0].cameras[0].state == "up", what="up in a heartbeat")
        assert len(calls) >= 2
    finally:
        s.close(0)


def test_sender_cleans_entries_and_fits_16_kib(tmp_path: Path, caplog) -> None:
    long = "\U0001f4f7" * 256  # each escapes to 12 bytes of JSON
    cams = [replace(CAM, state="bogus"), replace(CAM, name="")]
    cams += [replace(CAM, name=f"cam-{i}", label=long, reason=long[:200]) for i in range(40)]
    cams.insert(3, replace(CAM, name="cam-0"))
    s = CaptureSender(tmp_path / "o.sqlite", health=lambda: cams)
    caplog.set_level(logging.WARNING, "edge.link.sender")
    s.start()
    try:
        beats = [s.beats(1)[0] for _ in range(3)]
        frames = s.sent.get(timeout=5)
    finally:
        s.close(0)
    assert len(frames[1]) <= MAX_CONTROL_BYTES
    got = beats[-1].cameras
    assert 0 < len(got) <= MAX_CAMERAS
    assert [c.name for c in got] == [f"cam-{i}" for i in range(len(got))]
    assert all(len(c.label) <= 60 and len(c.reason) <= 60 for c in got)
    text = caplog.text
    for needle in ("bad name or state", "cam-0 twice", "first 32 cameras", "too large"):
        assert text.count(needle) == 1, needle  # each logged once, not per heartbeat


def test_provider_that_raises_is_dropped_heartbeats_go_on(tmp_path: Path, caplog) -> None:
    calls = []

    def broken() -> list[CameraHealth]:
        calls.append(1)
        raise RuntimeError("boom")

    caplog.set_level(logging.ERROR, "edge.link.sender")
    s = CaptureSender(tmp_path / "o.sqlite", health=broken).start()
    try:
        beats = s.beats(4)
    finally:
        s.close(0)
    assert calls == [1] and all(b.cameras == () for b in beats)
    assert caplog.text.count("camera health provider failed") == 1


def test_zmq_sender_delivers_health_to_a_real_hub(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    try:
        with ZmqSender(tmp_path / "o.sqlite", h.endpoint, "node-h", None, None,
                       camera="Gate", health=lambda: [CAM]) as s:
            wait_for(lambda: s.hub_connected, what="connected")

            def cams() -> list[dict]:
                return [c for n in h.hub.node_status() if n["node_id"] == "node-h"
                        for c in n["cameras"]]

            (c,) = wait_for(cams, what="camera health on the hub")
        assert c["name"] == "entrance-a" and c["state"] == "down" and c["label"] == "Entrance A"
        assert c["reason"] == "RTSP read timeout" and c["reconnects"] == 3
    finally:
        h.close()
