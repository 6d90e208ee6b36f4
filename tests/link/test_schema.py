"""Alert schema v1: round trip, strict refusal of malformed input, no payload in errors."""

from __future__ import annotations

import json

import pytest

from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link.schema import (
    MAX_HEADER_BYTES,
    MAX_JPEG_BYTES,
    SCHEMA_TAG,
    Alert,
    AlertFormatError,
    decode,
    decode_with_reference,
    describe,
    encode,
)

pytestmark = pytest.mark.unit

JPEG = synthetic_jpeg(1)
REF = synthetic_jpeg(2)


def test_round_trip_with_and_without_reference() -> None:
    a = synthetic_alert("node-7", "gate 3", 5)
    frames = encode(a, JPEG)
    assert len(frames) == 3 and frames[0] == SCHEMA_TAG
    b, jpeg = decode(frames)
    assert b == a and jpeg == JPEG
    frames = encode(a, JPEG, REF)
    assert len(frames) == 4
    b, jpeg, ref = decode_with_reference(frames)
    assert b == a and jpeg == JPEG and ref == REF
    header = json.loads(frames[1])
    assert header["schema"] == "edge.alert.v1"
    assert set(header) == {
        "schema", "alert_id", "node_id", "camera", "deployment_id", "track_id", "subject_id",
        "display_name", "category", "score", "threshold", "captured_at", "decided_at",
        "frame_index", "bbox", "reference_image_id",
    }
    assert "gate 3" in describe(a)


def test_alert_ids_are_unique_uuid4_hex() -> None:
    ids = {synthetic_alert().alert_id for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 for i in ids)


def _frames_with(**header_changes: object) -> list[bytes]:
    frames = encode(synthetic_alert(), JPEG)
    h = json.loads(frames[1])
    for k, v in header_changes.items():
        if v is KeyError:
            del h[k]
        else:
            h[k] = v
    frames[1] = json.dumps(h).encode()
    return frames


@pytest.mark.parametrize(
    ("frames_fn", "reason"),
    [
        (lambda: [SCHEMA_TAG, b"{}"], "frames"),
        (lambda: [SCHEMA_TAG] + [b"x"] * 6, "frames"),
        (lambda: [b"edge.alert.v0", *encode(synthetic_alert(), JPEG)[1:]], "tag"),
        (lambda: [SCHEMA_TAG, b"\xff\xfe not json", JPEG], "json"),
        (lambda: [SCHEMA_TAG, b"[1, 2]", JPEG], "json"),
        (lambda: [SCHEMA_TAG, b"{" * 100000, JPEG], "header_size"),
        (lambda: [SCHEMA_TAG, b"[" * 5000 + b"]" * 5000, JPEG], "json"),
        (lambda: _frames_with(embedding=[0.1] * 128), "field"),
        (lambda: _frames_with(score=KeyError), "field"),
        (lambda: _frames_with(score="0.9"), "field"),
        (lambda: _frames_with(score=1.5), "field"),
        (lambda: _frames_with(threshold=0), "field"),
        (lambda: _frames_with(track_id=True), "field"),
        (lambda: _frames_with(track_id=1.5), "field"),
        (lambda: _frames_with(alert_id="../../etc/passwd"), "field"),
        (lambda: _frames_with(node_id=""), "field"),
        (lambda: _frames_with(display_name="x" * 300), "field"),
        (lambda: _frames_with(bbox=[1, 2, 3]), "field"),
        (lambda: _frames_with(bbox=[1, 2, -3, 4]), "field"),
        (lambda: _frames_with(schema="edge.alert.v2"), "field"),
        (lambda: [*encode(synthetic_alert(), JPEG)[:2], b"GIF89a..."], "jpeg"),
        (lambda: [*encode(synthetic_alert(), JPEG)[:2], b""], "jpeg"),
        (lambda: [*encode(synthetic_alert(), JPEG)[:2],
                  b"\xff\xd8\xff" + b"\0" * MAX_JPEG_BYTES], "jpeg_size"),
        (lambda: [*encode(synthetic_alert(), JPEG), b"\xff\xd8\xff" + b"\0" * MAX_JPEG_BYTES],
         "reference_size"),
        (lambda: [*encode(synthetic_alert(), JPEG), b"not a jpeg"], "reference"),
    ],
)
def test_malformed_is_refused_with_reason(frames_fn, reason: str) -> None:
    with pytest.raises(AlertFormatError) as ei:
        decode_with_reference(frames_fn())
    assert ei.value.reason == reason


def test_nan_and_infinity_refused() -> None:
    frames = encode(synthetic_alert(), JPEG)
    frames[1] = frames[1].replace(b'"score":0.62', b'"score":NaN')
    with pytest.raises(AlertFormatError):
        decode(frames)


def test_errors_never_carry_payload() -> None:
    marker = "SECRETPAYLOAD"
    frames = _frames_with(**{marker + "_field": marker * 20})
    with pytest.raises(AlertFormatError) as ei:
        decode(frames)
    assert marker * 2 not in str(ei.value)
    frames = _frames_with(display_name=marker * 30)
    with pytest.raises(AlertFormatError) as ei:
        decode(frames)
    assert marker not in str(ei.value)
    frames = [SCHEMA_TAG, encode(synthetic_alert(), JPEG)[1], b"\x00" + marker.encode() * 10]
    with pytest.raises(AlertFormatError) as ei:
        decode(frames)
    assert marker not in str(ei.value) and marker not in repr(ei.value)


def test_encode_validates() -> None:
    a = synthetic_alert()
    a.score = float("nan")
    with pytest.raises(AlertFormatError):
        encode(a, JPEG)
    with pytest.raises(AlertFormatError):
        encode(synthetic_alert(), b"not a jpeg")
    with pytest.raises(AlertFormatError):
        encode(synthetic_alert(display_name="y" * 300), JPEG)
    big = synthetic_alert()
    assert len(encode(big, JPEG)[1]) < MAX_HEADER_BYTES


def test_alert_is_keyword_only_dataclass() -> None:
    with pytest.raises(TypeError):
        Alert("node", "cam")  # type: ignore[misc]


@pytest.mark.parametrize("name", ["\n", "a\r\nb", "\x1b[2J", "ok_name"])
def test_an_unknown_field_name_of_a_hostile_sender_stays_one_line(name: str) -> None:
    frames = encode(synthetic_alert("node-7", "gate 3", 5), JPEG)
    header = json.loads(frames[1])
    header[name] = None
    with pytest.raises(AlertFormatError) as err:
        decode([SCHEMA_TAG, json.dumps(header).encode(), JPEG])
    text = str(err.value)
    assert err.value.reason == "field" and "unknown field" in text
    assert text.isprintable() and "\n" not in text and "\x1b" not in text
