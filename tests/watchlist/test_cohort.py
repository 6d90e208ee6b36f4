"""Cohort-cluster (fair) score normalisation: the fit, the exact normalised search, the stored
list, the refusals, the zeroed probe side, and `edge watchlist build --cohort` end to end.

Unit tests use synthetic unit vectors; the end-to-end test embeds LFW photos as the consented
cohort (../shared, skipped without it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import EDGE
from enrol_helpers import people_and_strangers, walk_by_clip

from edge.config import load_config
from edge.errors import WatchlistError
from edge.lab.evaluation.run import CALIBRATION, REPORT, Pool, cohort_normalised_pools
from edge.privacy import FaceBuffers
from edge.watchlist import cohort, lifecycle
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta

NORM_TOML = ('[match]\nscore_normalisation = "cohort-clusters"\ncohort_clusters = 2\n'
             "cohort_fmr = 0.05\nthreshold = 0.45\n")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _two_group_cohort(rng: np.random.Generator, n: int = 150, d: int = 16) -> np.ndarray:
    """Group "tight": faces close to one direction (look-alike strangers, impostors score
    high); group "spread": faces near the opposite direction but far apart."""
    axis = np.zeros(d, np.float32)
    axis[0] = 1.0
    tight = _unit(axis * 3.0 + rng.normal(size=(n, d)) * 0.35)
    spread = _unit(-axis * 3.0 + rng.normal(size=(n, d)) * 1.5)
    return np.concatenate([tight, spread])


def _list(emb: np.ndarray) -> Watchlist:
    n = len(emb)
    subjects = {f"S{i}": Subject(f"S{i}", f"Person {i}") for i in range(n)}
    entries = [Entry(f"r{i}", f"S{i}", f"{i}.jpg") for i in range(n)]
    return Watchlist(WatchlistMeta(deployment_id="t"), subjects, entries, emb)


@pytest.mark.unit
def test_a_cluster_of_look_alikes_gets_a_lower_offset_than_a_spread_one():
    rng = np.random.default_rng(3)
    c = cohort.fit(_two_group_cohort(rng), 2, 0.01, "synthetic")
    assert c.k == 2 and all(m >= cohort.MIN_MEMBERS for m in c.members)
    tight = int(np.argmax(c.centroids[:, 0]))  # the centroid near +axis
    # its within-cluster impostors run hot: threshold above the global one, score pulled down
    assert c.half_offsets[tight] < 0 < c.half_offsets[1 - tight]
    assert c.global_threshold == pytest.approx(
        cohort.top_threshold(cohort.pair_scores(_two_group_cohort(np.random.default_rng(3)), None),
                             0.01))
    summary = c.summary()
    assert summary["clusters"] == 2 and "centroids" not in summary


@pytest.mark.unit
def test_thresholds_leave_at_most_the_rate_above_them():
    scores = np.arange(1000, dtype=np.float32) / 1000
    t = cohort.top_threshold(scores, 0.01)
    assert int((scores >= t).sum()) == 10


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_normalised_search_is_the_score_plus_both_sides_half_offsets(kind):
    rng = np.random.default_rng(5)
    c = cohort.fit(_two_group_cohort(rng), 2, 0.01, "synthetic")
    gallery = _two_group_cohort(rng, n=20)
    wl = _list(gallery)
    wl.meta.index_type = kind
    wl.set_cohort(c)
    assert wl.meta.index_type == kind and wl.index.d == 18
    probes = _two_group_cohort(rng, n=6)
    sims, ids = np.zeros((12, 1), np.float32), np.zeros((12, 1), np.int64)
    wl.search(probes, sims, ids)

    def off(rows: np.ndarray) -> np.ndarray:
        return c.half_offsets[np.argmax(rows @ c.centroids.T, axis=1)]

    brute = probes @ gallery.T + off(probes)[:, None] + off(gallery)[None, :]
    assert (ids[:, 0] == np.argmax(brute, axis=1)).all()
    np.testing.assert_allclose(sims[:, 0], brute.max(axis=1), atol=1e-5)
    # the offsets change the ranking somewhere, or this test would not show they are applied
    assert (np.argmax(brute, axis=1) != np.argmax(probes @ gallery.T, axis=1)).any() or \
        not np.allclose(sims[:, 0], (probes @ gallery.T).max(axis=1), atol=1e-3)

    back = Watchlist.from_blobs(wl.to_blobs())
    s2, i2 = np.zeros_like(sims), np.zeros_like(ids)
    back.search(probes, s2, i2)
    assert (i2 == ids).all() and np.allclose(s2, sims)
    assert back.stats()["normalisation"]["clusters"] == 2


@pytest.mark.unit
def test_the_probe_side_lives_in_the_frames_buffers_and_is_zeroed_with_them():
    rng = np.random.default_rng(6)
    c = cohort.fit(_two_group_cohort(rng), 2, 0.01, "synthetic")
    wl = _list(_two_group_cohort(rng, n=10))
    wl.set_cohort(c)
    bufs = FaceBuffers(8, 16, lock=False)
    probes = _two_group_cohort(rng, n=2)
    bufs.emb[:4] = probes
    bufs.n = 4
    wl.search(bufs.emb[:4], bufs.sims, bufs.ids, bufs.whole)
    assert bufs.whole("cohort_probe", (8, 18), np.float32).any()
    assert bufs.whole("cohort_sims", (8, 2), np.float32).any()
    bufs.zeroize()
    assert bufs.is_clear()


@pytest.mark.unit
def test_too_small_a_cohort_and_corrupt_clusters_are_refused_in_one_line():
    rng = np.random.default_rng(7)
    with pytest.raises(WatchlistError, match="the cohort has 30 usable faces") as e:
        cohort.fit(_two_group_cohort(rng, n=15), 2, 0.001, "synthetic")
    assert "\n" not in str(e.value)
    wl = _list(_two_group_cohort(rng, n=5))
    wl.set_cohort(cohort.fit(_two_group_cohort(rng), 2, 0.01, "synthetic"))
    blobs = wl.to_blobs()
    with pytest.raises(WatchlistError, match="cohort clusters are corrupt"):
        Watchlist.from_blobs({**blobs, "cohort": b"not npz"})
    with pytest.raises(WatchlistError, match="missing its cohort clusters"):
        Watchlist.from_blobs({k: v for k, v in blobs.items() if k != "cohort"})


@pytest.mark.unit
def test_clusters_too_small_to_be_many_people_are_dropped():
    rng = np.random.default_rng(8)
    base = _two_group_cohort(rng)
    odd = _unit(np.eye(16, dtype=np.float32)[5:8] * 5 + rng.normal(size=(3, 16)) * 0.01)
    c = cohort.fit(np.concatenate([base, odd]), 3, 0.01, "synthetic")
    assert all(m >= cohort.MIN_MEMBERS for m in c.members) and sum(c.members) == len(base) + 3


@pytest.mark.unit
def test_a_node_refuses_a_list_scored_another_way(tmp_path):
    rng = np.random.default_rng(9)
    plain = _list(_two_group_cohort(rng, n=5))
    normed = _list(_two_group_cohort(rng, n=5))
    normed.set_cohort(cohort.fit(_two_group_cohort(rng), 2, 0.01, "synthetic"))
    on = tmp_path / "on.toml"
    on.write_text(NORM_TOML)
    with pytest.raises(WatchlistError, match="built without a cohort"):
        lifecycle.check_normalisation(plain, load_config(on))
    with pytest.raises(WatchlistError, match="score_normalisation is off"):
        lifecycle.check_normalisation(normed, load_config())
    lifecycle.check_normalisation(normed, load_config(on))
    lifecycle.check_normalisation(plain, load_config())


@pytest.mark.unit
def test_edge_evals_normalised_pools_score_each_pair_with_both_half_offsets():
    rng = np.random.default_rng(10)
    emb = {h: _two_group_cohort(rng, n=100) for h in (CALIBRATION, REPORT)}
    pools = {h: Pool(emb=e, ok=np.ones(len(e), bool),
                     identity=np.array([f"{h}{i}" for i in range(len(e))], dtype=object),
                     from_id_set=np.zeros(len(e), bool), names=[str(i) for i in range(len(e))],
                     groups={}, primary=[]) for h, e in emb.items()}
    normed, c = cohort_normalised_pools(pools, pools, None, 2, 0.01)
    r = normed[REPORT]
    d = c.half_offsets[np.argmax(emb[REPORT] @ c.centroids.T, axis=1)]
    want = emb[REPORT] @ emb[REPORT].T + d[:, None] + d[None, :]
    np.testing.assert_allclose(r.emb @ r.rhs.T, want, atol=1e-5)


def test_watchlist_build_with_a_cohort_then_the_normalised_node_alerts(
        models_ready, engine, sample_images, tmp_path):
    from edge.node.app import build_node
    from edge.node.sources import open_source
    from edge.watchlist.vault import VaultKey

    cfg_file = tmp_path / "norm.toml"
    cfg_file.write_text(NORM_TOML)
    # consented strangers: one photo each of 40 LFW people (2 clusters at FMR 0.05 need 21)
    people, cohort_dir, crops = people_and_strangers(engine, sample_images, tmp_path, "cohort")
    key = tmp_path / "k.key"
    build = EDGE + ["watchlist", "build", str(people), "-o", str(tmp_path / "wl"),
                    "--key-file", str(key), "--min-face-px", "20", "--min-sharpness", "0",
                    "--max-yaw", "90", "--max-pitch", "90"]
    # the switch and the cohort go together: either alone is a one-line refusal
    r = subprocess.run(build + ["--cohort", str(cohort_dir)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "--cohort is for match.score_normalisation" in r.stderr
    r = subprocess.run(build + ["--config", str(cfg_file)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "give --cohort" in r.stderr
    assert not (tmp_path / "wl").exists()
    r = subprocess.run(build + ["--config", str(cfg_file), "--cohort", str(cohort_dir)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "score normalisation: 2 cohort clusters" in r.stderr
    wl = Watchlist.load(tmp_path / "wl", VaultKey.from_file(key))
    assert wl.cohort is not None and wl.cohort.cohort_size == 40 and wl.index.d == 130
    shown = subprocess.run(EDGE + ["watchlist", "show", str(tmp_path / "wl"), "--key-file", str(key)],
                           capture_output=True, text=True, timeout=60)
    assert "normalised by 2 cohort clusters" in shown.stdout
    # nothing of the cohort is stored but centroids: no cohort image, no per-face row
    assert wl.cohort.centroids.shape == (2, 128)
    cfg = load_config(cfg_file)
    lifecycle.check_model(wl, cfg)
    with pytest.raises(WatchlistError):
        lifecycle.check_model(wl, load_config())
    clip = walk_by_clip(crops[1], tmp_path)
    node = build_node(cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={"console": False})}),
                      wl)
    node.run(open_source(str(clip), node.ring))
    assert node.stats.alerts == 1 and node.bufs.is_clear()
    assert not [p for p in Path(tmp_path).glob("**/*") if p.suffix in (".npy", ".npz")]
