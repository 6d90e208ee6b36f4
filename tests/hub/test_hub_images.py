"""The hub stores only real JPEGs: decoded, within size limits, nothing after the image;
a bad one is refused with a reason (counted, nacked), nothing stored, the hub goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zmq

from edge.hub.images import MAX_SIDE, check_jpeg, jpeg_size
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.schema import ACK, NACK, AlertFormatError, encode
from tests.hub_helpers import RunningHub, hub_config, metric

pytestmark = pytest.mark.unit

GOOD = synthetic_jpeg(3, 120)


def _with_size(jpeg: bytes, w: int, h: int) -> bytes:
    """The same JPEG with its SOF header claiming another frame size."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + h.to_bytes(2, "big") + w.to_bytes(2, "big") + jpeg[i + 9:]


def test_jpeg_size_reads_the_frame_header() -> None:
    assert jpeg_size(GOOD) == (120, 120)
    assert jpeg_size(synthetic_jpeg(1, 64)) == (64, 64)
    assert jpeg_size(b"\xff\xd8\xff<html>hello</html>") is None
    assert jpeg_size(b"\xff\xd8") is None


@pytest.mark.parametrize("data, why", [
    (b"\xff\xd8\xff<html><script>alert(1)</script></html>", "no frame header"),
    (GOOD[:len(GOOD) // 2], "does not end"),
    (GOOD + b"<html>after the image</html>", "does not end"),
    (_with_size(GOOD, 60000, 60000), "60000x60000"),
    (_with_size(GOOD, 0, 120), "0x120"),
    (b"\xff\xd8\xff\xdb\x00\x43" + bytes(60) + b"\xff\xd9", "no frame header"),
    (GOOD[:2] + b"\xff\xc0\x00\x11\x08\x00\x78\x00\x78" + bytes(10) + b"\xff\xd9",
     "not a decodable"),
])
def test_bad_images_refused_with_one_line(data: bytes, why: str) -> None:
    with pytest.raises(AlertFormatError) as e:
        check_jpeg(data, "jpeg")
    assert why in str(e.value) and "\n" not in str(e.value) and e.value.reason == "jpeg"


def test_good_images_pass() -> None:
    check_jpeg(GOOD)
    check_jpeg(synthetic_jpeg(2, MAX_SIDE // 8))


def test_hub_nacks_a_fake_jpeg_stores_nothing_and_goes_on(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    try:
        d.connect(h.endpoint)
        fake = synthetic_alert("n-1", "cam", 1)
        d.send_multipart(encode(fake, b"\xff\xd8\xff" + b"<html>not a picture</html>" * 20))
        assert d.poll(10000)
        tag, body = d.recv_multipart()
        assert tag == NACK and json.loads(body) == {"alert_id": fake.alert_id, "reason": "jpeg"}
        bad_ref = synthetic_alert("n-1", "cam", 2)
        d.send_multipart(encode(bad_ref, GOOD, GOOD + b"trailing"))
        assert d.poll(10000)
        tag, body = d.recv_multipart()
        assert tag == NACK and json.loads(body)["reason"] == "reference"
        good = synthetic_alert("n-1", "cam", 3)
        d.send_multipart(encode(good, GOOD, GOOD))
        assert d.poll(10000) and d.recv_multipart()[0] == ACK
        stored = [a["alert_id"] for a in h.store.list_alerts()]
        assert stored == [good.alert_id]
        reg = h.hub.metrics.registry
        assert metric(reg, "edge_hub_messages_refused_total", {"reason": "jpeg"}) == 1
        assert metric(reg, "edge_hub_messages_refused_total", {"reason": "reference"}) == 1
    finally:
        d.close()
        ctx.term()
        h.close()
