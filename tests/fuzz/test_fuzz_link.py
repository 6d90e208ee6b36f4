"""Every link message parser, fed outside bytes: it returns a message or raises its own format
error with a short reason code. Nothing else escapes, nothing hangs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.hub.images import check_jpeg
from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from edge.link import schema
from edge.link.schema import AlertFormatError, CameraHealth, MessageError
from tests.fuzz.strategies import dumps, json_values, mutated

pytestmark = pytest.mark.unit

JPEG = synthetic_jpeg(1, 64)
HEADER = synthetic_alert("n1", "cam", 1).to_header()
CAM = dataclasses.asdict(CameraHealth("entrance-a", "Entrance A", "down", 0.0, 12.0, 3, 10, "x"))
RUN = "c" * 32
ID = "d" * 32

PARSERS: dict[str, tuple[Callable[[Sequence[bytes]], Any], bytes, dict[str, Any]]] = {
    "ack": (schema.parse_ack, schema.ACK, {"alert_id": ID, "status": "stored"}),
    "nack": (schema.parse_nack, schema.NACK, {"alert_id": ID, "reason": "jpeg"}),
    "heartbeat": (schema.parse_heartbeat, schema.HEARTBEAT,
                  {"node_id": "n1", "camera": "c", "run_id": RUN, "sent_at": 1.0,
                   "pending": 0, "counts": {"faces_seen": 3}, "cameras": [CAM],
                   "audit": {"seq": 3, "head": "a" * 64}, "stopping": "source ended",
                   "deployment": {"deployment_id": "OP-1", "authorising_officer": "Insp. X",
                                  "window_start": 1.0, "window_end": 2.0,
                                  "watchlist_size": 3}}),
    "decision": (schema.parse_decision, schema.DECISION,
                 {"decision_id": ID, "alert_id": ID, "decision": "confirm", "officer": "pc1",
                  "decided_at": 1.0, "outcome": "arrested"}),
    "decision-ack": (schema.parse_decision_ack, schema.DECISION_ACK, {"decision_id": ID}),
}


def _expect_clean(parse: Callable[[Sequence[bytes]], Any], frames: Sequence[bytes]) -> None:
    try:
        parse(frames)
    except (MessageError, AlertFormatError) as exc:
        assert exc.reason and len(exc.reason) <= schema.MAX_REASON and "\n" not in str(exc)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(frames=st.lists(st.binary(max_size=300), max_size=4))
def test_control_parsers_raw_frames(name: str, frames: list[bytes]) -> None:
    _expect_clean(PARSERS[name][0], frames)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(data=st.data())
def test_control_parsers_mutated_bodies(name: str, data: st.DataObject) -> None:
    parse, tag, valid = PARSERS[name]
    parse([tag, dumps(valid)])  # the unmutated message parses
    body = data.draw(mutated(valid))
    extra = data.draw(st.lists(st.binary(max_size=20), max_size=2))
    _expect_clean(parse, [tag, dumps(body), *extra])


@given(body=json_values)
def test_control_parsers_any_json(body: Any) -> None:
    for parse, tag, _valid in PARSERS.values():
        _expect_clean(parse, [tag, dumps(body)])


@given(cams=st.lists(mutated(CAM), max_size=4))
def test_heartbeat_cameras_mutated(cams: list[dict[str, Any]]) -> None:
    parse, tag, valid = PARSERS["heartbeat"]
    _expect_clean(parse, [tag, dumps({**valid, "cameras": cams})])


@given(frames=st.lists(st.binary(max_size=400), max_size=5))
def test_alert_decoder_raw_frames(frames: list[bytes]) -> None:
    _expect_clean(schema.decode_with_reference, frames)


@given(data=st.data())
def test_alert_decoder_mutated_header(data: st.DataObject) -> None:
    header = data.draw(mutated(HEADER))
    raw = data.draw(st.sampled_from([dumps(header), json.dumps(header).encode()[:-1], b"[]"]))
    tail = data.draw(st.lists(st.sampled_from([JPEG, JPEG[:50], b"\xff\xd8\xff<html>"]),
                              min_size=1, max_size=2))
    _expect_clean(schema.decode_with_reference, [schema.SCHEMA_TAG, raw, *tail])


@given(data=st.one_of(st.binary(max_size=600), st.binary(max_size=200).map(
    lambda b: b"\xff\xd8" + b), st.integers(0, len(JPEG)).map(lambda i: JPEG[:i])))
def test_hub_image_check(data: bytes) -> None:
    try:
        check_jpeg(data)
    except AlertFormatError as exc:
        assert exc.reason == "jpeg" and "\n" not in str(exc)
