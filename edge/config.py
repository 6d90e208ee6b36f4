"""Node configuration: TOML files validated at start-up.

Validation happens before any camera or model is opened so that a typo stops the node with
one line naming the bad key, instead of a surprise mid-deployment.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.errors import ConfigError
from edge.switches import TEST_DISABLE_ENV, zeroize_allowed_off

DEFAULT_CONFIG = Path(__file__).parent / "data" / "default.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSection(_Section):
    node_id: str = Field("edge-node-1", min_length=1, max_length=64)
    camera: str = Field("camera-1", min_length=1, max_length=128)
    workers: int = Field(
        0, ge=0, le=16,
        description="threads processing different cameras' frames at once; 0 = half the usable "
        "cores (1 on 2 cores), at most one per camera",
    )


RtspTransport = Literal["auto", "tcp", "udp"]
CAMERA_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# where a model runs (edge.face.device): auto = the GPU when the runtime has one, else the CPU;
# cuda = the GPU, falling back to the CPU with one warning line when there is none
Device = Literal["auto", "cpu", "cuda"]
DEVICE_HELP = "auto | cpu | cuda; without a usable GPU the model runs on the CPU (one log line says so)"


class SourceSection(_Section):
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)
    max_reconnects: int = Field(0, ge=0, description="0 = keep trying forever")
    realtime: bool | None = Field(
        None, description="None: live for cameras/URLs, file-paced off for files and folders"
    )
    max_width: int = Field(1920, ge=160, le=7680)
    rtsp_transport: RtspTransport = Field(
        "auto", description="RTSP over tcp or udp; auto = OpenCV's FFmpeg default (tcp)"
    )
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="give up one connection attempt")
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="a stream silent this long is lost")
    down_after_s: float = Field(5.0, gt=0, le=600, description="no frame this long: camera down")


class DetectorSection(_Section):
    kind: Literal["yunet", "insightface"] = "yunet"
    model: str = "yunet_2023mar"
    sha256: str | None = None
    backend: Literal["onnxruntime", "opencv", "torch"] = Field(
        "onnxruntime", description="YuNet runtime: onnxruntime (faster), OpenCV's FaceDetectorYN, or "
        "torch (the verified ONNX converted by onnx2torch; the [gpu] extra)"
    )
    device: Device = Field("auto", description=DEVICE_HELP)
    threads: int = Field(
        0, ge=0, le=64, description="detector ONNX Runtime threads; 0 = all usable cores, up to 8"
    )
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    score_threshold: float = Field(0.7, gt=0, lt=1)
    nms_threshold: float = Field(0.3, gt=0, lt=1)
    min_face_px: int = Field(32, ge=8, le=1024)
    input_width: int = Field(
        0, ge=0, le=3840, description="detector input width; 0 = derive from min_face_px"
    )
    max_faces: int = Field(32, ge=1, le=256)
    interval: int = Field(
        1, ge=1, le=25,
        description="run the detector on every k-th frame of a camera; tracks are carried "
        "between detections by their motion",
    )


class RecognizerModel(_Section):
    """One recogniser: a manifest name or a user-supplied ONNX file (path + sha256)."""

    kind: Literal["sface", "insightface", "onnx"] = "sface"
    model: str = "sface_2021dec"
    sha256: str | None = None
    max_batch: int = Field(
        0, ge=0, le=256,
        description="faces per recogniser run; 0 = 1 on CPU (batching gains nothing there and grows "
        "ONNX Runtime's memory arena by ~13 MB a face), 16 on a GPU",
    )
    threads: int = Field(0, ge=0, le=64, description="ONNX Runtime intra-op threads; 0 = half the cores")
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    weight: float = Field(
        1.0, gt=0, le=100,
        description="its share of a fused score (normalised over the models); unused with one model",
    )
    backend: Literal["onnxruntime", "torch"] = Field(
        "onnxruntime", description="onnxruntime, or torch (the verified ONNX converted by onnx2torch)")
    device: Device = Field("auto", description=DEVICE_HELP)


class RecognizerSection(RecognizerModel):
    """The recogniser, and optionally more models whose scores are fused with its own
    (``[[recognizer.fuse]]``; docs/ACCURACY.md "Recogniser choice")."""

    fuse: list[RecognizerModel] = Field(default_factory=list, max_length=3)

    @model_validator(mode="after")
    def _distinct_models(self) -> RecognizerSection:
        names = [self.model] + [m.model for m in self.fuse]
        if len(set(names)) != len(names):
            raise ValueError("recognizer.fuse names a model twice")
        return self

    def members(self) -> list[RecognizerModel]:
        """Every model whose score counts, the primary first."""
        return [RecognizerModel(**self.model_dump(exclude={"fuse"})), *self.fuse]


class QualitySection(_Section):
    enabled: bool = True
    min_face_px: int = Field(32, ge=8, le=1024)
    min_sharpness: float = Field(5.0, ge=0, description="variance of Laplacian on the aligned crop")
    max_yaw_deg: float = Field(45.0, gt=0, le=90)
    max_pitch_deg: float = Field(40.0, gt=0, le=90)


class TrackerSection(_Section):
    enabled: bool = True
    iou_threshold: float = Field(0.3, gt=0, lt=1)
    max_missed_frames: int = Field(10, ge=0, le=1000)
    min_embeddings: int = Field(1, ge=1, le=50, description="embeddings fused before a decision")
    max_embeddings: int = Field(5, ge=1, le=100, description="stop embedding a track after this many")
    reembed_every: int = Field(5, ge=1, le=1000, description="frames between re-embeddings of a track")
    embed_gated_after: int = Field(
        10, ge=0, le=1000,
        description="a track gated this many times in a row is embedded anyway (0: never)",
    )
    low_score_threshold: float = Field(
        0.5, gt=0, lt=1,
        description="the node's detector keeps faces down to this score; those below "
        "detector.score_threshold only continue a track (never start one, never embedded)",
    )
    max_missed_detections: int = Field(
        2, ge=0, le=100,
        description="a track survives this many detector runs that miss it, however many "
        "frames apart (a slow node sees a face every 12th frame, past max_missed_frames)",
    )


class MatchSection(_Section):
    threshold: float = Field(0.60, gt=0, lt=1, description="cosine similarity to alert at")
    # group-free fair score normalisation (edge.watchlist.cohort): set when the watchlist is
    # created from a consented cohort (--cohort); a node refuses a list that disagrees
    score_normalisation: Literal["off", "cohort-clusters"] = "off"
    cohort_clusters: int = Field(32, ge=2, le=1000, description="k-means clusters of the cohort")
    cohort_fmr: float = Field(1e-3, gt=0, le=0.1,
                              description="false match rate the per-cluster thresholds are set at")


class AlertsNatsSection(_Section):
    """The NATS JetStream fabric (``alerts.transport = "nats"``); paths are read at start."""

    servers: list[str] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1)
    user: str | None = None
    password_file: str | None = None
    nkey_seed_file: str | None = None
    creds_file: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout_s: float = Field(2.0, gt=0, le=60)


class AlertsSection(_Section):
    transport: Literal["zmq", "nats"] = "zmq"
    endpoint: str = "tcp://127.0.0.1:5560"
    outbox: str = "state/outbox.sqlite"
    cooldown_s: float = Field(60.0, ge=0, le=86400, description="per subject, after a track alerted")
    jpeg_quality: int = Field(90, ge=30, le=100)
    console: bool = True
    hub_public_key: str | None = None
    node_secret_key: str | None = None
    nats: AlertsNatsSection = AlertsNatsSection()


class PrivacySection(_Section):
    zeroize: bool = True
    lock_memory: bool = True
    ring_size: int = Field(4, ge=2, le=64, description="frame slots in the capture ring")

    @field_validator("zeroize")
    @classmethod
    def _zeroize_only_off_in_tests(cls, v: bool) -> bool:
        # refused here, at load, so it is one config line and not a traceback from the buffers
        if not v and not zeroize_allowed_off():
            raise ValueError(f"false is refused: a test-only switch (needs {TEST_DISABLE_ENV}=1)")
        return v


class AuditSection(_Section):
    path: str = "state/audit.jsonl"
    signing_key: str | None = Field(
        None, description="Ed25519 private key (edge keys audit) kept outside the state dir; "
        "set = every record signed")
    ledger_interval_s: float = Field(60.0, gt=0, le=86400)


class ModelsSection(_Section):
    dir: str | None = None


class MetricsSection(_Section):
    port: int = Field(0, ge=0, le=65535, description="Prometheus port; 0 = off")


class CameraSection(_Section):
    """One ``[[cameras]]`` entry: what a site declares per camera; unset keys follow the node's."""

    name: str = Field(pattern=CAMERA_NAME, description="camera id shown to officers")
    label: str = Field("", max_length=128, description="human description, e.g. 'Entrance A'")
    source: str = Field(min_length=1, max_length=2048)
    threshold: float | None = Field(None, gt=0, lt=1, description="stricter than match.threshold only")
    min_face_px: int | None = Field(None, ge=8, le=1024)
    zone: list[tuple[float, float]] | None = Field(
        None, description="polygon in frame pixels; faces whose centre is outside are never embedded"
    )
    max_fps: float | None = Field(None, gt=0, le=120)
    rtsp_transport: RtspTransport | None = None
    open_timeout_s: float | None = Field(None, gt=0, le=300)
    read_timeout_s: float | None = Field(None, gt=0, le=300)

    @field_validator("zone")
    @classmethod
    def _zone_polygon(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError("a zone needs at least 3 points [x, y]")
        if any(x < 0 or y < 0 for x, y in v):
            raise ValueError("zone points must be inside the frame (x, y >= 0)")
        return v


class Config(_Section):
    node: NodeSection = NodeSection()
    source: SourceSection = SourceSection()
    detector: DetectorSection = DetectorSection()
    recognizer: RecognizerSection = RecognizerSection()
    quality: QualitySection = QualitySection()
    tracker: TrackerSection = TrackerSection()
    match: MatchSection = MatchSection()
    alerts: AlertsSection = AlertsSection()
    privacy: PrivacySection = PrivacySection()
    audit: AuditSection = AuditSection()
    models: ModelsSection = ModelsSection()
    metrics: MetricsSection = MetricsSection()
    cameras: list[CameraSection] = Field(default_factory=list, max_length=32)

    @field_validator("tracker")
    @classmethod
    def _tracker_consistent(cls, v: TrackerSection) -> TrackerSection:
        if v.min_embeddings > v.max_embeddings:
            raise ValueError("min_embeddings must be <= max_embeddings")
        return v

    @model_validator(mode="after")
    def _cameras_consistent(self) -> Config:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.name in seen:
                raise ValueError(f"two cameras are named {cam.name!r}")
            seen.add(cam.name)
            if cam.threshold is not None and cam.threshold < self.match.threshold:
                raise ValueError(
                    f"camera {cam.name!r}: threshold {cam.threshold} is below match.threshold "
                    f"{self.match.threshold} (a camera may only be stricter)")
        return self


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def read_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A TOML file as a dict, or a one-line ConfigError naming ``what`` and the path."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None


def validation_error(what: str, path: str | Path | None, exc: ValidationError) -> ConfigError:
    """pydantic's errors as one line naming the first bad key: ``config in f.toml: a.b: msg``."""
    errors = exc.errors()
    err = errors[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    where = f" in {path}" if path else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{what}{where}: {key}: {msg}{more}")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load default.toml, overlay the user's file and overrides, validate everything at once."""
    data = read_toml(DEFAULT_CONFIG)
    if path is not None:
        data = _merge(data, read_toml(path))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise validation_error("config", path, exc) from None
