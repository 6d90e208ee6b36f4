"""From a likely match to an alert: the per-subject cool-down and the alert's content.

Only a track whose fused score reaches the threshold gets here. What leaves is the schema-v1
:class:`~edge.link.schema.Alert`, the matched face's crop (with any other face inside it
blanked) and the watchlist photo it matched, for the officer to compare side by side.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import Config
from edge.link.schema import Alert
from edge.node.sources import Frame
from edge.watchlist.index import Watchlist


class AlertBuilder:
    """Builds alerts for one camera and holds its per-subject cool-down."""

    def __init__(self, cfg: Config, watchlist: Watchlist, threshold: float,
                 camera: str | None = None) -> None:
        self.cfg = cfg
        self.camera = camera or cfg.node.camera
        self.watchlist = watchlist
        self.threshold = threshold
        self._last_alert: dict[str, float] = {}  # subject -> time of its last alert

    def cooling(self, subject_id: str, decided_at: float) -> bool:
        """True when this subject alerted less than ``alerts.cooldown_s`` ago."""
        last = self._last_alert.get(subject_id)
        return last is not None and decided_at - last < self.cfg.alerts.cooldown_s

    def build(self, frame: Frame, box_f: np.ndarray, others: np.ndarray, track_id: int,
              subject_id: str, entry_idx: int, score: float,
              decided_at: float) -> tuple[Alert, bytes, bytes | None]:
        """The alert, its probe JPEG and the matched reference JPEG; starts the cool-down."""
        self._last_alert[subject_id] = decided_at
        match = self.watchlist.match_of(entry_idx, score)
        box = [int(round(float(v))) for v in box_f]
        alert = Alert(
            node_id=self.cfg.node.node_id,
            camera=self.camera,
            deployment_id=self.watchlist.meta.deployment_id,
            track_id=track_id,
            subject_id=subject_id,
            display_name=match.subject.display_name,
            category=match.subject.category,
            score=round(score, 4),
            threshold=self.threshold,
            captured_at=frame.captured_at,
            decided_at=decided_at,
            frame_index=frame.index,
            bbox=box,
            reference_image_id=match.entry.entry_id,
        )
        jpeg = probe_jpeg(frame.image, box, self.cfg.alerts.jpeg_quality, others=others)
        return alert, jpeg, self.watchlist.references.get(match.entry.entry_id)


def probe_jpeg(image: np.ndarray, box: list[int], quality: int = 90, margin: float = 0.25,
               max_side: int = 320, others: np.ndarray | None = None) -> bytes:
    """The matched face with a little context, for the officer's side-by-side comparison.

    Any other detected face that falls inside the crop is blanked first: a bystander next
    to a matched person must not travel with the alert.
    """
    h, w = image.shape[:2]
    x, y, bw, bh = box
    mx, my = int(bw * margin), int(bh * margin)
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(w, x + bw + mx), min(h, y + bh + my)
    crop = image[y0:y1, x0:x1].copy()
    try:
        for ob in others if others is not None else []:
            ox, oy, ow, oh = (int(round(float(v))) for v in ob)
            if [ox, oy, ow, oh] == [x, y, bw, bh]:
                continue
            # the other face's box, grown a little, in crop coordinates
            gx, gy = int(ow * 0.15), int(oh * 0.15)
            ax0, ay0 = max(0, ox - gx - x0), max(0, oy - gy - y0)
            ax1, ay1 = min(x1 - x0, ox + ow + gx - x0), min(y1 - y0, oy + oh + gy - y0)
            if ax1 > ax0 and ay1 > ay0:
                crop[ay0:ay1, ax0:ax1] = 127
        scale = min(1.0, max_side / max(crop.shape[:2]))
        out = crop
        if scale < 1.0:
            out = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if out is not crop:
            out.fill(0)
    finally:
        crop.fill(0)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
