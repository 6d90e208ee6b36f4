"""Alert schema v1: the only message that leaves the pipeline.

An alert is a prompt for a human, so it carries exactly what an officer needs to judge a
match (the matched probe crop, the watchlist reference image and a small JSON header) and
nothing else. Decoding is strict: the hub accepts traffic from the network, so any frame
that is malformed, oversized or carries unknown fields is refused with a short reason code
(used as a metric label). Error messages name fields, never payload bytes.

Wire format (ZeroMQ multipart)::

    frame 0  b"edge.alert.v1"
    frame 1  UTF-8 JSON header (<= 16 KiB)
    frame 2  JPEG of the probe crop (the matched face only, <= 1 MiB)
    frame 3  optional JPEG of the matched watchlist reference image (<= 1 MiB)
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edge.errors import EdgeError

SCHEMA = "edge.alert.v1"
SCHEMA_TAG = SCHEMA.encode()
MAX_HEADER_BYTES = 16 * 1024
MAX_JPEG_BYTES = 1024 * 1024
MAX_TEXT = 256
_JPEG_MAGIC = b"\xff\xd8\xff"
_ALERT_ID = re.compile(r"^[0-9a-f]{32}$")


class AlertFormatError(EdgeError):
    """A message does not follow alert schema v1.

    ``reason`` is a short stable code (``frames``, ``tag``, ``header_size``, ``json``,
    ``field``, ``jpeg_size``, ``jpeg``, ``reference_size``, ``reference``) for counting.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def new_alert_id() -> str:
    """A fresh uuid4 hex id: unique per alert, the key for acks and de-duplication."""
    return uuid.uuid4().hex


@dataclass(kw_only=True)
class Alert:
    """Header of one alert (schema v1). Pixels travel beside it, never inside it."""

    node_id: str
    camera: str
    deployment_id: str
    track_id: int
    subject_id: str
    display_name: str
    category: str
    score: float
    threshold: float
    captured_at: float
    decided_at: float
    frame_index: int
    bbox: list[int]
    reference_image_id: str
    alert_id: str = field(default_factory=new_alert_id)
    schema: str = SCHEMA

    def to_header(self) -> dict[str, Any]:
        """The JSON-ready header dict (validated)."""
        validate(self)
        return asdict(self)


_STR_FIELDS = (
    "alert_id",
    "node_id",
    "camera",
    "deployment_id",
    "subject_id",
    "display_name",
    "category",
    "reference_image_id",
)
_INT_FIELDS = ("track_id", "frame_index")
_FLOAT_FIELDS = ("score", "threshold", "captured_at", "decided_at")
FIELD_NAMES = frozenset(f.name for f in fields(Alert))


def _bad(name: str, why: str) -> AlertFormatError:
    return AlertFormatError("field", f"alert field {name!s}: {why}")


def validate(alert: Alert) -> Alert:
    """Check every header field's type and range; raise AlertFormatError naming the field."""
    if alert.schema != SCHEMA:
        raise _bad("schema", f"expected {SCHEMA}")
    for name in _STR_FIELDS:
        v = getattr(alert, name)
        if not isinstance(v, str):
            raise _bad(name, "must be a string")
        if name != "deployment_id" and name != "category" and not v:
            raise _bad(name, "must not be empty")
        if len(v) > MAX_TEXT:
            raise _bad(name, f"longer than {MAX_TEXT} characters")
    if not _ALERT_ID.match(alert.alert_id):
        raise _bad("alert_id", "must be 32 lowercase hex characters (uuid4 hex)")
    for name in _INT_FIELDS:
        v = getattr(alert, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(name, "must be an integer")
        if not -(2**53) < v < 2**53:
            raise _bad(name, "out of range")
    for name in _FLOAT_FIELDS:
        v = getattr(alert, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _bad(name, "must be a finite number")
    if not 0.0 <= alert.score <= 1.0:
        raise _bad("score", "must be within 0..1")
    if not 0.0 < alert.threshold < 1.0:
        raise _bad("threshold", "must be within (0, 1)")
    if alert.captured_at < 0 or alert.decided_at < 0:
        raise _bad("captured_at", "must not be negative")
    b = alert.bbox
    if (
        not isinstance(b, (list, tuple))
        or len(b) != 4
        or any(isinstance(x, bool) or not isinstance(x, int) for x in b)
    ):
        raise _bad("bbox", "must be [x, y, w, h] integers")
    if b[2] < 0 or b[3] < 0 or any(abs(x) > 1_000_000 for x in b):
        raise _bad("bbox", "width/height must be >= 0 and values sane")
    alert.bbox = [int(x) for x in b]
    return alert


def _check_jpeg(data: bytes, what: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AlertFormatError(what, f"{what} must be bytes")
    if len(data) > MAX_JPEG_BYTES:
        raise AlertFormatError(f"{what}_size", f"{what} JPEG larger than {MAX_JPEG_BYTES} bytes")
    if len(data) < 4 or bytes(data[:3]) != _JPEG_MAGIC:
        raise AlertFormatError(what, f"{what} is not a JPEG")


def encode(alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> list[bytes]:
    """Alert + probe JPEG (+ optional reference JPEG) -> multipart frames; validates first."""
    header = json.dumps(alert.to_header(), separators=(",", ":"), ensure_ascii=False).encode()
    if len(header) > MAX_HEADER_BYTES:
        raise AlertFormatError("header_size", f"alert header larger than {MAX_HEADER_BYTES} bytes")
    _check_jpeg(jpeg, "jpeg")
    frames = [SCHEMA_TAG, header, bytes(jpeg)]
    if reference_jpeg is not None:
        _check_jpeg(reference_jpeg, "reference")
        frames.append(bytes(reference_jpeg))
    return frames


def header_from_json(raw: bytes) -> Alert:
    """Parse and validate a JSON header (frame 1); unknown or missing fields are refused."""
    if len(raw) > MAX_HEADER_BYTES:
        raise AlertFormatError("header_size", f"alert header larger than {MAX_HEADER_BYTES} bytes")
    try:
        data = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise AlertFormatError("json", "alert header is not UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise AlertFormatError("json", "alert header is not a JSON object")
    unknown = set(data) - FIELD_NAMES
    if unknown:
        # Names only; a sender must not smuggle anything else (e.g. an embedding) in here.
        raise _bad(sorted(unknown)[0][:40], "unknown field")
    missing = FIELD_NAMES - set(data)
    if missing:
        raise _bad(sorted(missing)[0], "missing")
    try:
        alert = Alert(**data)
    except TypeError:
        raise AlertFormatError("field", "alert header fields do not match schema v1") from None
    return validate(alert)


def decode_with_reference(frames: list[bytes]) -> tuple[Alert, bytes, bytes | None]:
    """Frames -> (alert, probe JPEG, reference JPEG or None); raises AlertFormatError."""
    if not isinstance(frames, (list, tuple)) or len(frames) not in (3, 4):
        raise AlertFormatError("frames", "alert must have 3 or 4 frames")
    if bytes(frames[0]) != SCHEMA_TAG:
        raise AlertFormatError("tag", f"first frame is not {SCHEMA}")
    alert = header_from_json(frames[1])
    jpeg = bytes(frames[2])
    _check_jpeg(jpeg, "jpeg")
    ref: bytes | None = None
    if len(frames) == 4:
        ref = bytes(frames[3])
        _check_jpeg(ref, "reference")
    return alert, jpeg, ref


def decode(frames: list[bytes]) -> tuple[Alert, bytes]:
    """Frames -> (alert, probe JPEG); raises AlertFormatError on anything malformed."""
    alert, jpeg, _ = decode_with_reference(frames)
    return alert, jpeg


def describe(alert: Alert) -> str:
    """One readable console line (no pixels): who, where, how sure."""
    t = time.strftime("%H:%M:%S", time.localtime(alert.captured_at))
    return (
        f"ALERT {t} {alert.camera}: {alert.display_name} ({alert.category or 'no category'}) "
        f"subject={alert.subject_id} score={alert.score:.3f} thr={alert.threshold:.2f} "
        f"track={alert.track_id} id={alert.alert_id[:8]}"
    )
