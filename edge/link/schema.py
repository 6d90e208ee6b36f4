"""The link's whole wire vocabulary: alert schema v1 and the control messages around it.

An alert is a prompt for a human, so it carries exactly what an officer needs to judge a
match (the matched probe crop, the watchlist reference image and a small JSON header) and
nothing else. Decoding is strict on both ends: the hub accepts traffic from the network and
the node from the hub, so any message that is malformed, oversized or carries unknown alert
fields is refused with a short reason code (used as a metric label). Error messages name
fields, never payload bytes.

Every message is a list of frames whose frame 0 is its type tag::

    edge.alert.v1          node -> hub  [tag, JSON header <= 16 KiB, probe JPEG <= 1 MiB,
                                         optional reference JPEG <= 1 MiB]
    edge.ack.v1            hub -> node  {alert_id, status: stored|duplicate}
    edge.nack.v1           hub -> node  {alert_id, reason}: permanent refusal
    edge.heartbeat.v1      node -> hub  {node_id, camera, run_id, sent_at, pending, counts,
                                         optional cameras: [camera health objects],
                                         optional audit: {seq, head},
                                         optional stopping: why (last beat of a clean stop),
                                         optional deployment: {deployment_id, authorising_officer,
                                         window_start, window_end, watchlist_size}}
    edge.heartbeat-ack.v1  hub -> node  {sent_at, hub_time}
    edge.decision.v1       hub -> node  {decision_id, alert_id, decision, officer, decided_at,
                                         optional outcome (a later message, its own id)}
    edge.decision-ack.v1   node -> hub  {decision_id}

Control bodies are one compact JSON object (<= 16 KiB). Each has a dataclass here that
encodes it (``to_frames``) and one ``parse_*`` validator that the receiving end uses, so
both ends agree on one rule per field; transports (ZeroMQ today) only move the frames.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeGuard

from edge.errors import EdgeError

SCHEMA = "edge.alert.v1"
SCHEMA_TAG = SCHEMA.encode()
MAX_HEADER_BYTES = 16 * 1024
MAX_JPEG_BYTES = 1024 * 1024
MAX_TEXT = 256
_JPEG_MAGIC = b"\xff\xd8\xff"

ALERT = SCHEMA_TAG
ACK = b"edge.ack.v1"
NACK = b"edge.nack.v1"
HEARTBEAT = b"edge.heartbeat.v1"
HEARTBEAT_ACK = b"edge.heartbeat-ack.v1"
DECISION = b"edge.decision.v1"
DECISION_ACK = b"edge.decision-ack.v1"
MAX_CONTROL_BYTES = 16 * 1024
DECISIONS = ("confirm", "reject", "no_action")
# What happened after a decision, from a fixed list: never free text (it could carry personal
# data of the person stopped or of bystanders into the audit log and the published record).
OUTCOMES = ("spoken_to", "arrested", "wrong_person", "no_further_action", "other")
ACK_STATUSES = ("stored", "duplicate")
MAX_NAME = 64  # node ids and officer names
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_REASON = 40  # nack reasons (a metric label on the node)
MAX_COUNTS = 32  # ledger counts per heartbeat
MAX_COUNT_NAME = 32
MAX_COUNT = 2**53  # counts must survive JSON as exact integers
CAMERA_STATES = ("up", "connecting", "down", "ended", "failed")
MAX_CAMERAS = 32  # camera health entries per heartbeat
MAX_CAMERA_REASON = 200

# The one id rule of the link: alert, decision and run ids are uuid4 hex.
ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def is_id(value: object) -> TypeGuard[str]:
    """True for a 32-character lowercase hex string (a uuid4 hex alert/decision/run id)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def new_alert_id() -> str:
    """A fresh uuid4 hex id: unique per alert, the key for acks and de-duplication."""
    return uuid.uuid4().hex


# -- alert schema v1 ------------------------------------------------------------------------


class AlertFormatError(EdgeError):
    """A message does not follow alert schema v1.

    ``reason`` is a short stable code (``frames``, ``tag``, ``header_size``, ``json``,
    ``field``, ``jpeg_size``, ``jpeg``, ``reference_size``, ``reference``) for counting.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    # a hostile sender picks unknown field names: escape them so the error stays one line
    shown = name if name.isprintable() else ascii(name)
    return AlertFormatError("field", f"alert field {shown}: {why}")


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
    if not is_id(alert.alert_id):
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


# -- control messages -----------------------------------------------------------------------


class MessageError(Exception):
    """A control message is malformed; ``reason`` is a short code for counting."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def control(tag: bytes, body: dict[str, Any]) -> list[bytes]:
    """A control message: [tag, compact JSON]."""
    return [tag, json.dumps(body, separators=(",", ":")).encode()]


def parse_control(frames: Sequence[bytes], expect_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Decode [tag, JSON object] strictly; raises MessageError with a reason code."""
    if len(frames) != 2:
        raise MessageError("frames", "control message must have 2 frames")
    raw = bytes(frames[1])
    if len(raw) > MAX_CONTROL_BYTES:
        raise MessageError("control_size", "control message too large")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise MessageError("json", "control message is not UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise MessageError("json", "control message is not a JSON object")
    for k in expect_keys:
        if k not in body:
            raise MessageError("field", f"control message lacks {k}")
    return body


@dataclass(frozen=True)
class _Control:
    """A control body; field order is the JSON key order on the wire."""

    TAG: ClassVar[bytes]

    def to_frames(self) -> list[bytes]:
        """The multipart message [tag, compact JSON body]."""
        return control(self.TAG, asdict(self))


@dataclass(frozen=True)
class Ack(_Control):
    """Hub -> node: the alert's row is committed (``stored``) or already was (``duplicate``)."""

    TAG: ClassVar[bytes] = ACK
    alert_id: str
    status: str


@dataclass(frozen=True)
class Nack(_Control):
    """Hub -> node: the alert is refused for good (re-sending the same bytes cannot help)."""

    TAG: ClassVar[bytes] = NACK
    alert_id: str
    reason: str


@dataclass(frozen=True)
class CameraHealth:
    """One camera's health as its node sees it (heartbeat ``cameras``): names and numbers only."""

    name: str  # camera id: 1..64 chars, the node_id rule
    label: str  # human label for officers, <= MAX_TEXT chars ("" -> show name)
    state: str  # one of CAMERA_STATES
    fps: float  # frames/s processed recently, finite, >= 0
    last_frame_age_s: float | None  # seconds since the last frame; None = no frame yet
    reconnects: int  # since node start
    frames: int  # since node start
    reason: str = ""  # short text (<= MAX_CAMERA_REASON chars) why it is not up; "" when up


CAMERA_FIELDS = tuple(f.name for f in fields(CameraHealth))


@dataclass(frozen=True)
class AuditHead:
    """The last record of a node's audit log: its sequence number and hash."""

    seq: int
    head: str


@dataclass(frozen=True)
class DeploymentInfo:
    """What the node's watchlist says about its deployment (no one's face or name on it):
    the published deployment record needs it and the hub has no other source."""

    deployment_id: str
    authorising_officer: str
    window_start: float
    window_end: float
    watchlist_size: int  # subjects on the list


@dataclass(frozen=True)
class Heartbeat(_Control):
    """Node -> hub, every interval: liveness, outbox backlog, ledger counts, camera health."""

    TAG: ClassVar[bytes] = HEARTBEAT
    node_id: str
    camera: str
    run_id: str
    # Echoed back in the heartbeat-ack as received: only the sender interprets it.
    sent_at: Any
    pending: int
    counts: dict[str, int]
    cameras: tuple[CameraHealth, ...] = ()
    # (seq, hash) of the node's audit log head: anchored off the node, so a log cut short or
    # rewritten after this heartbeat no longer matches what the hub holds
    audit: AuditHead | None = None
    # set on the last heartbeat of a clean stop, with why ("source ended", "signal"): the hub
    # then shows the node stopped, not lost
    stopping: str | None = None
    deployment: DeploymentInfo | None = None

    def to_frames(self) -> list[bytes]:
        """[tag, JSON]; without the optional parts the body is the older heartbeat's."""
        body = asdict(self)
        body["cameras"] = [asdict(c) for c in self.cameras]
        for key in ("cameras", "audit", "stopping", "deployment"):
            if not body[key] and body[key] != "":
                del body[key]
        return control(self.TAG, body)


@dataclass(frozen=True)
class HeartbeatAck(_Control):
    """Hub -> node: the hub is alive. Nodes take its arrival as the signal, not its body."""

    TAG: ClassVar[bytes] = HEARTBEAT_ACK
    sent_at: Any
    hub_time: float


@dataclass(frozen=True)
class Decision(_Control):
    """Hub -> node: an officer's decision on an alert, re-sent until the node acks it."""

    TAG: ClassVar[bytes] = DECISION
    decision_id: str
    alert_id: str
    decision: str
    officer: str
    decided_at: float
    # set on the later message that carries the outcome (its own decision_id, the same
    # decision); without it the body is the older decision message byte for byte
    outcome: str | None = None

    def to_frames(self) -> list[bytes]:
        body = asdict(self)
        if self.outcome is None:
            del body["outcome"]
        return control(self.TAG, body)


@dataclass(frozen=True)
class DecisionAck(_Control):
    """Node -> hub: the decision is in the node's audit log."""

    TAG: ClassVar[bytes] = DECISION_ACK
    decision_id: str


def parse_ack(frames: Sequence[bytes]) -> Ack:
    """Validate an ``edge.ack.v1``; an unknown status is kept as ``"?"`` (a countable label)."""
    body = parse_control(frames, ("alert_id",))
    if not is_id(body["alert_id"]):
        raise MessageError("field", "bad alert_id in ack")
    status = body.get("status")
    return Ack(body["alert_id"], status if status in ACK_STATUSES else "?")


def parse_nack(frames: Sequence[bytes]) -> Nack:
    """Validate an ``edge.nack.v1``; the reason is cut to a short label."""
    body = parse_control(frames, ("alert_id", "reason"))
    if not is_id(body["alert_id"]):
        raise MessageError("field", "bad alert_id in nack")
    return Nack(body["alert_id"], str(body["reason"])[:MAX_REASON])


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT


def _is_number(value: object) -> bool:
    """A finite, non-negative JSON number (an int too large for a float is refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:
        return False


def camera_problem(c: CameraHealth) -> str | None:
    """Which field of a camera health entry breaks the wire rule, or None when it is valid."""
    if not (isinstance(c.name, str) and 0 < len(c.name) <= MAX_NAME):
        return "name"
    if not (isinstance(c.label, str) and len(c.label) <= MAX_TEXT):
        return "label"
    if c.state not in CAMERA_STATES:
        return "state"
    if not _is_number(c.fps):
        return "fps"
    if c.last_frame_age_s is not None and not _is_number(c.last_frame_age_s):
        return "last_frame_age_s"
    if not _is_count(c.reconnects):
        return "reconnects"
    if not _is_count(c.frames):
        return "frames"
    if not (isinstance(c.reason, str) and len(c.reason) <= MAX_CAMERA_REASON):
        return "reason"
    return None


def _parse_cameras(value: object) -> tuple[CameraHealth, ...]:
    """The heartbeat's ``cameras`` list, strictly: known keys only, valid values, unique names."""
    bad = MessageError("field", "bad cameras in heartbeat")
    if not isinstance(value, list) or len(value) > MAX_CAMERAS:
        raise bad
    out: list[CameraHealth] = []
    for item in value:
        # Exactly the CameraHealth keys (reason may be left out): nothing else rides along.
        if not isinstance(item, dict) or not set(CAMERA_FIELDS) - {"reason"} <= set(item) \
                or not set(item) <= set(CAMERA_FIELDS):
            raise bad
        cam = CameraHealth(**item)
        if camera_problem(cam) is not None:
            raise bad
        out.append(CameraHealth(
            cam.name, cam.label, cam.state, float(cam.fps),
            None if cam.last_frame_age_s is None else float(cam.last_frame_age_s),
            cam.reconnects, cam.frames, cam.reason,
        ))
    if len({c.name for c in out}) != len(out):
        raise bad
    return tuple(out)


def parse_heartbeat(frames: Sequence[bytes]) -> Heartbeat:
    """Validate an ``edge.heartbeat.v1``; camera, pending, counts and cameras may be absent."""
    body = parse_control(frames, ("node_id", "run_id", "sent_at"))
    node_id, run_id = body["node_id"], body["run_id"]
    camera = body.get("camera", "")
    counts = body.get("counts", {})
    pending = body.get("pending", 0)
    if not (isinstance(node_id, str) and 0 < len(node_id) <= MAX_NAME):
        raise MessageError("field", "bad node_id in heartbeat")
    if not is_id(run_id):
        raise MessageError("field", "bad run_id in heartbeat")
    if not isinstance(camera, str) or len(camera) > MAX_TEXT:
        raise MessageError("field", "bad camera in heartbeat")
    if not isinstance(counts, dict) or len(counts) > MAX_COUNTS or not all(
        isinstance(k, str) and len(k) <= MAX_COUNT_NAME and _is_count(v) for k, v in counts.items()
    ):
        raise MessageError("field", "bad counts in heartbeat")
    if not isinstance(pending, int) or isinstance(pending, bool):
        pending = 0  # informational only: a bad value is not worth refusing the heartbeat
    cameras = _parse_cameras(body.get("cameras", []))
    stopping = body.get("stopping")
    if stopping is not None and not (isinstance(stopping, str)
                                     and len(stopping) <= MAX_CAMERA_REASON):
        raise MessageError("field", "bad stopping in heartbeat")
    return Heartbeat(node_id, camera, run_id, body["sent_at"], pending, counts, cameras,
                     _parse_audit_head(body.get("audit")), stopping,
                     _parse_deployment(body.get("deployment")))


def _parse_deployment(value: object) -> DeploymentInfo | None:
    if value is None:
        return None
    names = {f.name for f in fields(DeploymentInfo)}
    if not (isinstance(value, dict) and set(value) == names
            and isinstance(value["deployment_id"], str) and 0 < len(value["deployment_id"]) <= MAX_NAME
            and isinstance(value["authorising_officer"], str)
            and len(value["authorising_officer"]) <= MAX_TEXT
            and _is_number(value["window_start"]) and _is_number(value["window_end"])
            and _is_count(value["watchlist_size"])):
        raise MessageError("field", "bad deployment in heartbeat")
    return DeploymentInfo(value["deployment_id"], value["authorising_officer"],
                          float(value["window_start"]), float(value["window_end"]),
                          value["watchlist_size"])


def _parse_audit_head(value: object) -> AuditHead | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and set(value) == {"seq", "head"} and _is_count(value["seq"])
            and isinstance(value["head"], str) and _HEX64.match(value["head"])):
        raise MessageError("field", "bad audit head in heartbeat")
    return AuditHead(value["seq"], value["head"])


def parse_decision(frames: Sequence[bytes]) -> Decision:
    """Validate an ``edge.decision.v1`` (ids, one of DECISIONS, officer name, a number)."""
    body = parse_control(frames, ("decision_id",))
    did = body.get("decision_id")
    aid = body.get("alert_id")
    decision = body.get("decision")
    officer = body.get("officer")
    decided_at = body.get("decided_at")
    if not is_id(did):
        raise MessageError("field", "bad decision_id")
    if not is_id(aid):
        raise MessageError("field", "bad alert_id in decision")
    if decision not in DECISIONS:
        raise MessageError("decision", "bad decision value")
    if not (isinstance(officer, str) and 0 < len(officer) <= MAX_NAME):
        raise MessageError("field", "bad officer")
    if isinstance(decided_at, bool) or not isinstance(decided_at, (int, float)):
        raise MessageError("field", "bad decided_at")
    outcome = body.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise MessageError("decision", "bad outcome value")
    return Decision(did, aid, decision, officer, float(decided_at), outcome)


def parse_decision_ack(frames: Sequence[bytes]) -> DecisionAck:
    """Validate an ``edge.decision-ack.v1``."""
    body = parse_control(frames, ("decision_id",))
    if not is_id(body["decision_id"]):
        raise MessageError("field", "bad decision_id in decision-ack")
    return DecisionAck(body["decision_id"])
