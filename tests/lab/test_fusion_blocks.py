"""benchmarks/fusion_study.py with a fused recogniser: frame embeddings are scaled block by
block so that every dot product downstream is the node's calibrated fused score
sum_m a_m * cos_m (edge.watchlist.fusion), and nothing changes with one model. Synthetic
embeddings only: no models, no ../shared."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import fusion_study as F  # noqa: E402

from edge.config import load_config  # noqa: E402
from edge.lab.evaluation.datasets import FaceItem, FaceSet  # noqa: E402
from edge.watchlist.fusion import block_scales  # noqa: E402

BLOCKS = [("a", 0, 4), ("b", 4, 10)]


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _frames(rng: np.random.Generator, n: int, f: int) -> F.FrameData:
    """n images x f frames, each row two unit-length blocks (4 + 6 dims), as a fused engine's."""
    fd = F.empty_frames(n, f, 10)
    fd.ok[:] = True
    fd.emb[..., 0:4] = _unit(rng, n, f, 4)
    fd.emb[..., 4:10] = _unit(rng, n, f, 6)
    return fd


def _fused(x: np.ndarray, y: np.ndarray, a: list[float]) -> np.ndarray:
    """sum_m a_m * cos_m between every row of x and every row of y (unit blocks: cos = dot)."""
    return sum(am * (x[:, lo:hi] @ y[:, lo:hi].T) for am, (_, lo, hi) in zip(a, BLOCKS, strict=True))


def test_scaled_dot_products_are_the_fused_score() -> None:
    rng = np.random.default_rng(3)
    fd = _frames(rng, 6, 3)
    before = fd.emb.copy()
    a = [0.5, 0.8]
    out = F.scale_blocks(fd, a, BLOCKS)
    x, y = out.emb.reshape(-1, 10), before.reshape(-1, 10)
    np.testing.assert_allclose(x @ x.T, _fused(y, y, a), rtol=1e-5, atol=1e-6)
    # not a plain sum of cosines, and the input (possibly the on-disk cache's arrays) is kept
    assert not np.allclose(x @ x.T, y @ y.T, atol=1e-3)
    np.testing.assert_array_equal(fd.emb, before)
    for k in F.FrameData.__dataclass_fields__:
        if k != "emb":
            np.testing.assert_array_equal(getattr(out, k), getattr(fd, k))


def _face_set(n_ids: int, per_id: int) -> FaceSet:
    items = [FaceItem(Path(f"/none/p{i:03d}/p{i:03d}_{j}.jpg"), f"p{i:03d}")
             for i in range(n_ids) for j in range(per_id)]
    return FaceSet(Path("/none"), "synthetic", "identity", items)


def test_fuse_frames_uses_edge_eval_statistics_of_the_calibration_half() -> None:
    rng = np.random.default_rng(5)
    fs = _face_set(60, 2)
    fd = _frames(rng, len(fs.items), 2)
    # model b's impostor cosines spread less than a's: its block must get the larger a_m
    fd.emb[..., 4:10] = fd.emb[..., 4:10] * 0.3 + 0.7 * np.array([1, 0, 0, 0, 0, 0], np.float32)
    fd.emb[..., 4:10] /= np.linalg.norm(fd.emb[..., 4:10], axis=-1, keepdims=True)
    fuse = [{"kind": "onnx", "model": "other.onnx", "sha256": "ab" * 32, "weight": 1.0}]
    engine = SimpleNamespace(embedder=SimpleNamespace(blocks=lambda: BLOCKS),
                             cfg=load_config(overrides={"recognizer": {"fuse": fuse}}))
    sets, stats = F.fuse_frames([(fs, fd)], engine, None, "salt", "test")  # type: ignore[arg-type]
    (fs2, out), = sets
    assert fs2 is fs and stats is not None and len(stats) == 2
    assert stats[0].impostor_pairs > 100 and stats[1].impostor_std < stats[0].impostor_std
    a = [float(v) for v in block_scales(stats)]
    assert a[0] == 0.5 and a[1] > 0.5
    x, y = out.emb[:, 1], fd.emb[:, 1]
    np.testing.assert_allclose(x @ x.T, _fused(y, y, a), rtol=1e-5, atol=1e-6)


def test_one_model_changes_nothing() -> None:
    rng = np.random.default_rng(7)
    fd = F.empty_frames(5, 2, 8)
    fd.emb[:] = _unit(rng, 5, 2, 8)
    engine = SimpleNamespace(embedder=SimpleNamespace(), cfg=load_config())
    sets = [("set", fd)]
    out, stats = F.fuse_frames(sets, engine, None, "salt", "test")  # type: ignore[arg-type]
    assert stats is None and out[0][1] is fd
    one = F.scale_blocks(fd, [float(block_scales([])[0])], [("only", 0, 8)])
    np.testing.assert_array_equal(one.emb, fd.emb)
