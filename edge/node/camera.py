"""One camera as the pipeline sees it: its name, label, stricter settings and zone.

A site's ``[[cameras]]`` entries become :class:`CameraSpec`s; a single ``--source`` run is
one spec named ``node.camera``. Everything here is configuration and geometry: no pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import CameraSection, Config
from edge.node.sources import StreamOptions


@dataclass(frozen=True)
class Zone:
    """A polygon in frame pixels: faces whose box centre falls outside it are never embedded."""

    points: tuple[tuple[float, float], ...]

    def check(self, height: int, width: int) -> str | None:
        """Why the zone does not fit a ``width`` x ``height`` frame, or None when it does."""
        xs = [p[0] for p in self.points]
        ys = [p[1] for p in self.points]
        if max(xs) > width or max(ys) > height:
            return (f"zone reaches ({max(xs):g}, {max(ys):g}), outside the {width}x{height} "
                    f"frame")
        if cv2.contourArea(self._contour()) < 1.0:
            return "zone has no area"
        return None

    def inside(self, boxes: np.ndarray) -> np.ndarray:
        """Per x,y,w,h box: True when its centre is inside (or on the edge of) the polygon."""
        contour = self._contour()
        cx = boxes[:, 0] + boxes[:, 2] / 2
        cy = boxes[:, 1] + boxes[:, 3] / 2
        return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0
                         for x, y in zip(cx, cy, strict=True)], bool)

    def _contour(self) -> np.ndarray:
        return np.array(self.points, np.float32).reshape(-1, 1, 2)


@dataclass(frozen=True)
class CameraSpec:
    """What one camera's pipeline needs to know about its camera."""

    name: str
    label: str
    source: str
    threshold: float
    min_face_px: int | None = None  # stricter face-size gate than quality.min_face_px
    zone: Zone | None = None
    max_fps: float | None = None
    stream: StreamOptions = StreamOptions()

    @property
    def shown(self) -> str:
        """The name officers read: the label when there is one."""
        return self.label or self.name


def camera_specs(cfg: Config, source: str | None = None) -> list[CameraSpec]:
    """The cameras to run: ``--source`` as one camera named ``node.camera``, else ``[[cameras]]``."""
    if source is not None:
        return [CameraSpec(cfg.node.camera[:64], cfg.node.camera, source, cfg.match.threshold,
                           stream=_stream(cfg, None))]
    return [spec_of(cfg, cam) for cam in cfg.cameras]


def spec_of(cfg: Config, cam: CameraSection) -> CameraSpec:
    return CameraSpec(
        name=cam.name,
        label=cam.label,
        source=cam.source,
        threshold=cam.threshold if cam.threshold is not None else cfg.match.threshold,
        min_face_px=cam.min_face_px,
        zone=Zone(tuple(cam.zone)) if cam.zone else None,
        max_fps=cam.max_fps,
        stream=_stream(cfg, cam),
    )


def _stream(cfg: Config, cam: CameraSection | None) -> StreamOptions:
    src = cfg.source
    return StreamOptions(
        rtsp_transport=(cam.rtsp_transport if cam and cam.rtsp_transport else src.rtsp_transport),
        open_timeout_s=(cam.open_timeout_s if cam and cam.open_timeout_s else src.open_timeout_s),
        read_timeout_s=(cam.read_timeout_s if cam and cam.read_timeout_s else src.read_timeout_s),
    )
