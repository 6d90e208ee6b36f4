"""Several recognisers behind one Embedder: each face is embedded by every model.

``bufs.emb[:n]`` gets the models' L2-normalised embeddings side by side (the primary's
first), so a row has one unit-length block per model. Each model writes its block into a
buffer of its own taken from ``bufs.whole`` (zeroed with the frame, like every face buffer)
and it is copied into place; nothing outlives the frame. The watchlist turns the blocks
into one calibrated score (``edge.watchlist.fusion``): the recogniser only embeds.
"""

from __future__ import annotations

import numpy as np

from edge.errors import ConfigError
from edge.face.embedders.onnx_embedder import CropEmbedder
from edge.privacy import FaceBuffers


class FusedEmbedder:
    """``__call__(bufs, n)``: every member embeds ``bufs.crops[:n]``; blocks side by side."""

    def __init__(self, members: list[CropEmbedder], names: list[str]) -> None:
        if len(members) < 2 or len(members) != len(names):
            raise ConfigError("recogniser fusion needs two or more models, each named")
        sizes = {m.input_size for m in members}
        if len(sizes) != 1:
            raise ConfigError(f"fused recognisers read different crop sizes {sorted(sizes)}: "
                              "they must share one 5-point alignment")
        self.members = members
        self.names = names
        self.dims = [m.dim for m in members]
        self.dim = sum(self.dims)
        self.input_size = members[0].input_size
        self.providers = members[0].providers

    def blocks(self) -> list[tuple[str, int, int]]:
        """(model name, first column, last column + 1) of each model's block in a row."""
        out, start = [], 0
        for name, d in zip(self.names, self.dims, strict=True):
            out.append((name, start, start + d))
            start += d
        return out

    def __call__(self, bufs: FaceBuffers, n: int) -> int:
        if n == 0:
            return 0
        for k, (member, (_, lo, hi)) in enumerate(zip(self.members, self.blocks(), strict=True)):
            part = bufs.whole(f"emb-part-{k}", (bufs.max_faces, member.dim), np.float32)
            member.embed_into(bufs, n, part)
            bufs.emb[:n, lo:hi] = part[:n]
        return n
