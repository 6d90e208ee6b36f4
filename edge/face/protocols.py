"""What a detector and a recogniser must do to plug into the node: the FaceBuffers contract.

Both kinds of model work on :class:`edge.privacy.FaceBuffers`, the one place where a
bystander's face data may live during a frame. An implementation never hands face data back
in arrays of its own: it writes into the buffers it is given, and anything it keeps between
calls (a scaled frame, output maps, candidate rows) is a buffer taken from
``FaceBuffers.whole`` so that the frame's zeroize clears it too.

**Detector** ``detector(frame, bufs) -> n``
  - reads ``frame`` (H x W x 3 uint8 BGR; a view of a frame-ring slot: never modify it);
  - writes the ``n`` faces it keeps, best first, into ``bufs.boxes[:n]`` (x, y, w, h in frame
    pixels), ``bufs.scores[:n]`` and ``bufs.landmarks[:n]`` (5 points: eyes, nose, mouth
    corners, in frame pixels); drops faces narrower than its ``min_face_px``;
  - sets ``bufs.n = n`` (also when 0) and returns ``n`` (at most ``bufs.max_faces``);
  - zeroes every array of its own that saw pixels or detections before returning, or uses
    ``bufs.whole(...)`` buffers, which the pipeline zeroes with the rest (the scaled frame,
    the model's input blob and output maps, candidate rows), taken from the ``bufs`` of this
    call; what the runtime keeps inside (ORT's arena, OpenCV's network blob) is listed in
    docs/PRIVACY.md;
  - raises only exceptions that carry no pixels, boxes or landmarks.

**Embedder** ``embedder(bufs, n) -> n``
  - reads the aligned crops ``bufs.crops[:n]`` (``input_size`` square, uint8 BGR);
  - may use ``bufs.blob[:n]`` as its input tensor;
  - writes L2-normalised embeddings of length ``dim`` into ``bufs.emb[:n]`` and returns ``n``;
  - binds its model's input and output to those buffers (ONNX Runtime I/O binding) or zeroes
    any copy it had to make before returning.

The pipeline owns the zeroing: after a frame's match decision it zeroes every FaceBuffers
array, including the ``whole`` ones. Models are stateless across frames apart from their
bound buffers, so one instance can serve several cameras' pipelines in turn (never two at
once: calls are not thread-safe).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edge.privacy import FaceBuffers


@runtime_checkable
class Detector(Protocol):
    """Finds faces in a frame and writes them into FaceBuffers (see the module docstring)."""

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(w, h) of the scaled frame the model read on the last frame (before padding to
        its stride); None before the first frame."""
        ...

    def __call__(self, frame: np.ndarray, bufs: FaceBuffers) -> int: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns aligned crops in FaceBuffers into L2-normalised embeddings in FaceBuffers."""

    dim: int  # embedding length
    input_size: int  # side of the square aligned crop the model reads
    providers: list[str]  # ONNX Runtime providers in use, best first

    def __call__(self, bufs: FaceBuffers, n: int) -> int: ...
