"""Camera health from a source's counters: up, stalled, lost, reconnected; and its metrics."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.node.camera import CameraSpec
from edge.node.health import CameraMonitor
from edge.node.metrics import CameraCollector, PipelineCollector
from edge.node.sources import SourceStats
from edge.node.stats import NodeStats

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_stalled_stream_is_down_although_the_node_runs(caplog):
    clock, src = Clock(), SourceStats()
    mon = CameraMonitor(CameraSpec("gate", "Gate 2", "rtsp://x", 0.6), src, 5.0, clock=clock)
    assert mon.state() == ("connecting", "no frame yet")
    clock.t += 6
    state, reason = mon.state()
    assert state == "down" and "no frame since start 6 s ago" in reason
    with caplog.at_level(logging.INFO, logger="edge.node.health"):
        for _ in range(50):  # 10 s of frames at 5 fps
            clock.t += 0.2
            src.frames += 1
            src.last_frame_at = clock.t
            src.up()
            mon.processed()
            mon.check()
        h = mon.health()
        assert h.state == "up" and h.label == "Gate 2" and 4.9 <= h.fps <= 5.1
        assert h.last_frame_age_s == 0.0 and h.frames == 50
        clock.t += 12  # the stream stalls: no error from the source, just no frames
        mon.check()
        h = mon.health()
        assert h.state == "down" and h.last_frame_age_s == 12.0 and h.fps == 0.0
        src.reconnects += 1
        src.last_frame_at = clock.t
        mon.processed()
        mon.check()
    assert "camera gate lost: no frames for 12 s" in caplog.text
    assert "camera gate reconnected" in caplog.text
    assert mon.health().reconnects == 1


def test_source_states_pass_through():
    clock, src = Clock(), SourceStats()
    mon = CameraMonitor(CameraSpec("a", "", "x.mp4", 0.6), src, 5.0, clock=clock)
    src.set_state("ended", "end of file")
    assert mon.state() == ("ended", "end of file")
    mon.fail("zone outside the frame")
    assert mon.state() == ("failed", "zone outside the frame")


def test_prometheus_names_per_camera():
    clock, src = Clock(), SourceStats()
    mon = CameraMonitor(CameraSpec("door", "", "0", 0.6), src, 5.0, clock=clock)
    src.reconnects = 3
    stats = NodeStats(frames=7, faces_seen=9)
    reg = CollectorRegistry()
    reg.register(CameraCollector(lambda: [mon.health()]))
    reg.register(PipelineCollector(lambda: {"door": stats}))
    text = generate_latest(reg).decode()
    assert 'edge_camera_up{camera="door"} 0.0' in text
    assert 'edge_camera_state{camera="door",state="connecting"} 1.0' in text
    assert 'edge_camera_reconnects_total{camera="door"} 3.0' in text
    assert 'edge_camera_last_frame_age_seconds{camera="door"} NaN' in text
    assert 'edge_node_frames_total{camera="door"} 7.0' in text
    assert 'edge_node_faces_seen_total{camera="door"} 9.0' in text
