"""Synthetic alerts for tests and benchmarks: generated pictures, never anyone's face."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import cv2
import numpy as np

from edge.link.schema import Alert


def synthetic_jpeg(seed: int = 0, size: int = 112) -> bytes:
    """A JPEG of coloured noise + gradient (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    img[:, :, 0] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def synthetic_alert(node_id: str = "node-1", camera: str = "camera-1", n: int = 0,
                    **over: Any) -> Alert:
    """A schema-valid alert header for subject ``s{n}``; ``over`` replaces any field."""
    now = time.time()
    alert = Alert(
        node_id=node_id, camera=camera, deployment_id="dep-test", track_id=n,
        subject_id=f"s{n % 7}", display_name=f"Test Subject {n % 7}", category="test",
        score=0.62, threshold=0.45, captured_at=now, decided_at=now, frame_index=n,
        bbox=[10, 20, 64, 64], reference_image_id=f"s{n % 7}/0",
    )
    return dataclasses.replace(alert, **over)
