"""Watchlist index at scale: build time, search latency, recall@1 and memory, 1k .. 1M entries.

Why: the node must answer "who is this?" within a frame budget at any watchlist size, and an
approximate index may silently miss the right subject. This measures both on *real* SFace
embeddings so the flat -> HNSW cut-over (``edge.watchlist.index.HNSW_ABOVE``) rests on numbers.

Data (needs ../shared/data; the product never does):
- real faces: every LFW (lfw_pairs_150) and UTKFace (utkface_adult_balanced) image, detected,
  aligned and embedded with the product's own pipeline (``edge.face.photos.FaceEngine``);
- queries: one held-out LFW image for each of up to ``--queries`` identities that have >= 2
  images (never in any gallery, nor are its augmentations); the gallery is ordered so the
  identities' other images come first, so small galleries hold the queries' mates;
- padding: embeddings of augmented real faces (gallery images only): random horizontal
  flip, rotation +-12 deg and scale 0.9-1.1 about the eyes, landmark jitter (N(0, 1.5% of
  the eye distance) per point, like a second detection of the same face), contrast x0.6-1.4
  and brightness +-40, Gaussian blur sigma 0.5-2 (p=0.5), JPEG re-compression q30-80
  (p=0.3); then aligned and embedded like a real face. Up to ``--max-augmented`` of them
  (default 20k: each costs one SFace inference, ~25-60 ms on 2 busy cores, so 100k would
  take over an hour; pass --max-augmented 100000 if you have the time);
- beyond the real + augmented pool: random perturbations of pool embeddings,
  e' = normalise(e + sigma * g), g ~ N(0, I/128), sigma = 1.0 (cos(e, e') ~ 0.7, about the
  mean same-person similarity on LFW); the measured mean cosine is written to the output,
  and each size's composition (real / augmented / perturbed) is in the JSON.

Embeddings are cached under ~/.cache/edge/index_scale/ (keyed by the models' sha256); the
first run computes them (tens of minutes on 2 cores), later runs only measure.

Measured per size (default 1k, 10k, 20k, 30k, 40k, 50k, 100k; ``--max-size 1000000`` adds 1M):
flat and HNSW (the product's parameters) build time; single-query search latency p50/p99
through ``Watchlist.search`` (as the node calls it); HNSW recall@1 against the exact flat
answer (all queries, and the alert-relevant ones whose exact top-1 score >= the configured
threshold); index bytes per entry. Also detect+align+embed time per 1k images and the full
``edge watchlist create`` path (checks, reference crops, encryption) per 1k images.

    python benchmarks/index_scale.py [--max-size 100000] [--out out/]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import load_config  # noqa: E402
from edge.face.align import align_one  # noqa: E402
from edge.face.photos import FaceEngine  # noqa: E402
from edge.watchlist import index as wlmod  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge" / "index_scale"
AUG_CHUNK = 2048
PERTURB_SIGMA = 1.0
PAD_RETRY = 0.25
DEFAULT_SIZES = (1_000, 10_000, 20_000, 30_000, 40_000, 50_000, 100_000, 1_000_000)
LATENCY_BUDGET_MS = 1.0  # the goal: watchlist search <= 1 ms


def log(msg: str) -> None:
    print(f"[index_scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- real faces


def list_images(data: Path) -> tuple[list[Path], list[int], list[str]]:
    """All LFW + UTKFace images; src 0 = LFW, 1 = UTKFace; identity ('' for UTKFace)."""
    lfw = data / "lfw_pairs_150"
    ident = {}
    with open(lfw / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            ident[row["image"]] = row["identity"]
    paths, srcs, ids = [], [], []
    for p in sorted((lfw / "images").iterdir()):
        if p.name in ident:
            paths.append(p)
            srcs.append(0)
            ids.append(ident[p.name])
    for p in sorted((data / "utkface_adult_balanced" / "images").iterdir()):
        if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
            paths.append(p)
            srcs.append(1)
            ids.append("")
    return paths, srcs, ids


def model_tag(cfg) -> str:
    """Cache key: the detector's and recogniser's sha256 (embeddings depend on both)."""
    from edge.face import model_files as models

    man = models.load_manifest()
    rec = cfg.recognizer.sha256 or man[cfg.recognizer.model].sha256
    det = cfg.detector.sha256 or man[cfg.detector.model].sha256
    return hashlib.sha256((rec + det).encode()).hexdigest()[:16]


def real_embeddings(engine: FaceEngine, data: Path, cache: Path, tag: str) -> dict:
    """Detect + align + embed every real image once; cached."""
    path = cache / f"real_{tag}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return {k: z[k] for k in z.files}
    paths, srcs, ids = list_images(data)
    n = len(paths)
    log(f"embedding {n} real faces (LFW + UTKFace); cached in {path}")
    emb = np.zeros((n, engine.dim), np.float32)
    lmk = np.zeros((n, 5, 2), np.float32)
    ok = np.zeros(n, bool)
    nfaces = np.zeros(n, np.int16)
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            continue
        faces = engine.faces(img)
        if not faces:
            faces = engine.faces(img, pad=PAD_RETRY)
        nfaces[i] = len(faces)
        if faces:
            emb[i] = faces[0].embedding
            lmk[i] = faces[0].landmarks
            ok[i] = True
        if (i + 1) % 500 == 0:
            el = time.perf_counter() - t0
            log(f"  {i + 1}/{n} ({el / (i + 1) * 1000:.0f} ms/image)")
    elapsed = time.perf_counter() - t0
    out = {
        "emb": emb, "lmk": lmk, "ok": ok, "nfaces": nfaces,
        "src": np.array(srcs, np.int8), "ident": np.array(ids), "path": np.array([str(p) for p in paths]),
        "seconds": np.array(elapsed), "nproc": np.array(os.cpu_count() or 0),
    }
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


# ----------------------------------------------------------------------------- augmentation


def augment(img: np.ndarray, lmk: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of a real face and its landmarks (see module docstring)."""
    h, w = img.shape[:2]
    lmk = lmk.astype(np.float64).copy()
    if rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
        lmk[:, 0] = (w - 1) - lmk[:, 0]
        lmk = lmk[[1, 0, 2, 4, 3]]
    centre = tuple(float(v) for v in (lmk[0] + lmk[1]) / 2)
    m = cv2.getRotationMatrix2D(centre, float(rng.uniform(-12, 12)), float(rng.uniform(0.9, 1.1)))
    img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    lmk = np.hstack([lmk, np.ones((5, 1))]) @ m.T
    eye = float(np.hypot(*(lmk[1] - lmk[0]))) or 1.0
    lmk += rng.normal(0.0, 0.015 * eye, lmk.shape)
    img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.6, 1.4)), beta=float(rng.uniform(-40, 40)))
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 81))])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, lmk.astype(np.float32)


def aug_sequence(real: dict, seed: int = 7) -> np.ndarray:
    """Deterministic order of (source row) for augmented faces: every usable real row once,
    in a fixed shuffled order, then again (version 2), and so on."""
    rows = np.flatnonzero(real["ok"])
    rng = np.random.default_rng(seed)
    return rng.permutation(rows)


def augmented_embeddings(engine: FaceEngine, real: dict, cache: Path, tag: str, count: int,
                         allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` augmented embeddings whose source row is in ``allowed`` (cached in chunks).

    Returns (embeddings, source rows).
    """
    order = aug_sequence(real)
    allowed_set = np.zeros(len(real["ok"]), bool)
    allowed_set[allowed] = True
    embs, srcs = [], []
    have = 0
    chunk = 0
    bufs = engine.bufs
    t0 = time.perf_counter()
    done_new = 0
    while have < count:
        path = cache / f"aug_{tag}_{chunk:04d}.npz"
        ts = np.arange(chunk * AUG_CHUNK, (chunk + 1) * AUG_CHUNK)
        rows = order[ts % len(order)]
        versions = ts // len(order)
        if path.exists():
            z = np.load(path)
            e = z["emb"]
        else:
            if chunk == 0 or done_new == 0:
                log(f"embedding augmented faces (chunks of {AUG_CHUNK}, cached in {cache})")
            e = np.zeros((AUG_CHUNK, engine.dim), np.float32)
            for s in range(0, AUG_CHUNK, bufs.max_faces):
                k = min(bufs.max_faces, AUG_CHUNK - s)
                for j in range(k):
                    r, v = int(rows[s + j]), int(versions[s + j])
                    img = cv2.imread(str(real["path"][r]), cv2.IMREAD_COLOR)
                    rng = np.random.default_rng([r, v, 12345])
                    aimg, almk = augment(img, real["lmk"][r], rng)
                    bufs.crops[j] = align_one(aimg, almk, engine.embedder.input_size)
                bufs.n = k
                engine.embedder(bufs, k)
                e[s:s + k] = bufs.emb[:k]
                bufs.zeroize()
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, emb=e, rows=rows)
            os.replace(tmp, path)
            done_new += AUG_CHUNK
            el = time.perf_counter() - t0
            log(f"  augmented chunk {chunk} done ({el / done_new * 1000:.1f} ms/face, "
                f"{(chunk + 1) * AUG_CHUNK} computed)")
        keep = allowed_set[rows]
        embs.append(e[keep])
        srcs.append(rows[keep])
        have += int(keep.sum())
        chunk += 1
    return np.concatenate(embs)[:count], np.concatenate(srcs)[:count]


# ----------------------------------------------------------------------------- split


def split(real: dict, n_queries: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Held-out query rows and the ordered real gallery rows (queries' mates first)."""
    ok = real["ok"]
    rng = np.random.default_rng(seed)
    by_id: dict[str, list[int]] = {}
    for i in np.flatnonzero(ok & (real["src"] == 0)):
        by_id.setdefault(str(real["ident"][i]), []).append(int(i))
    multi = sorted(k for k, v in by_id.items() if len(v) >= 2)
    rng.shuffle(multi)
    chosen = multi[:n_queries]
    queries = np.array([by_id[k][-1] for k in chosen])
    mates = [by_id[k][0] for k in chosen]
    qset = set(queries.tolist()) | set(mates)
    rest = np.array([i for i in np.flatnonzero(ok) if i not in qset])
    rest = rng.permutation(rest)
    gallery = np.concatenate([np.array(mates, int), rest])
    return queries, gallery


def perturbed(pool: np.ndarray, count: int, seed: int = 11) -> tuple[np.ndarray, float]:
    """Random perturbations of pool embeddings, re-normalised; returns them and mean cos to source."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, pool.shape[1]), np.float32)
    cos_sum = 0.0
    step = 100_000
    for s in range(0, count, step):
        k = min(step, count - s)
        src = pool[rng.integers(0, len(pool), k)]
        e = src + PERTURB_SIGMA * rng.standard_normal((k, pool.shape[1]), np.float32) / np.sqrt(pool.shape[1])
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        cos_sum += float(np.einsum("ij,ij->", e, src))
        out[s:s + k] = e
    return out, cos_sum / max(count, 1)


# ----------------------------------------------------------------------------- measure


def latency(wl: wlmod.Watchlist, queries: np.ndarray, repeat: int = 1) -> tuple[np.ndarray, np.ndarray, list]:
    """Single-query search through Watchlist.search, as the node calls it per probe."""
    sims = np.zeros((1, 1), np.float32)
    ids = np.zeros((1, 1), np.int64)
    out_ids = np.zeros(len(queries), np.int64)
    out_sims = np.zeros(len(queries), np.float32)
    times = []
    for _ in range(repeat):
        for i in range(len(queries)):
            q = queries[i:i + 1]
            t = time.perf_counter()
            wl.search(q, sims, ids)
            times.append(time.perf_counter() - t)
            out_ids[i] = ids[0, 0]
            out_sims[i] = sims[0, 0]
    return out_ids, out_sims, times


def omp_latency(index, queries: np.ndarray, threads: int) -> np.ndarray:
    """Single-query latency with FAISS's default OpenMP team (what the node did before
    ``watchlist.SEARCH_THREADS``), for comparison."""
    import faiss

    faiss.omp_set_num_threads(threads)
    times = []
    for i in range(len(queries)):
        t = time.perf_counter()
        index.search(queries[i:i + 1], 1)
        times.append(time.perf_counter() - t)
    return np.array(times) * 1000


def measure_size(gallery: np.ndarray, queries: np.ndarray, threshold: float) -> dict:
    import faiss

    threads = os.cpu_count() or 1
    n = len(gallery)
    meta = wlmod.WatchlistMeta()
    subjects = {"s": wlmod.Subject("s", "s")}
    entries = [wlmod.Entry(f"e{i}", "s", "") for i in range(n)]
    res: dict = {"entries": n}
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    flat_index = wlmod.build_index(gallery, "flat")
    res["flat_build_s"] = time.perf_counter() - t
    # exact ground truth in one batched call (all cores)
    gt_s, gt_i = flat_index.search(queries, 1)
    gt_i, gt_s = gt_i[:, 0], gt_s[:, 0]
    for kind in ("flat", "hnsw"):
        faiss.omp_set_num_threads(threads)
        t = time.perf_counter()
        index = flat_index if kind == "flat" else wlmod.build_index(gallery, "hnsw")
        if kind == "hnsw":
            res["hnsw_build_s"] = time.perf_counter() - t
        wl = wlmod.Watchlist(meta, subjects, entries, gallery, index=index)
        latency(wl, queries[:50])  # warm-up
        ids, sims, times = latency(wl, queries, repeat=2 if n <= 100_000 else 1)
        ms = np.array(times) * 1000
        res[f"{kind}_p50_ms"] = float(np.percentile(ms, 50))
        res[f"{kind}_p99_ms"] = float(np.percentile(ms, 99))
        omp = omp_latency(index, queries[:200], threads)
        res[f"{kind}_omp{threads}_p50_ms"] = float(np.percentile(omp, 50))
        res[f"{kind}_omp{threads}_p99_ms"] = float(np.percentile(omp, 99))
        res[f"{kind}_recall_at_1"] = float(np.mean(ids == gt_i))
        alert = gt_s >= threshold
        res[f"{kind}_recall_at_1_alerting"] = (float(np.mean(ids[alert] == gt_i[alert]))
                                               if alert.any() else None)
        res["alerting_queries"] = int(alert.sum())
        nbytes = int(faiss.serialize_index(index).nbytes)
        res[f"{kind}_index_bytes"] = nbytes
        res[f"{kind}_bytes_per_entry"] = nbytes / n
        if kind == "hnsw" and n >= 50_000:
            sweep = {}
            for ef in (16, 32, 64, 128):
                index.hnsw.efSearch = ef
                ids2, _, t2 = latency(wl, queries)
                sweep[str(ef)] = {"recall_at_1": float(np.mean(ids2 == gt_i)),
                                  "p50_ms": float(np.percentile(np.array(t2) * 1000, 50)),
                                  "p99_ms": float(np.percentile(np.array(t2) * 1000, 99))}
            index.hnsw.efSearch = 64
            res["hnsw_ef_search_sweep"] = sweep
        del wl
    res["omp_threads"] = threads
    return res


def enrol_timing(engine: FaceEngine, real: dict, sample: int) -> dict:
    """The full `edge watchlist create` path on real LFW images, per 1k images."""
    from edge.watchlist import enrol, vault

    rows = np.flatnonzero(real["src"] == 0)[:sample]
    t0 = time.perf_counter()
    checks = []
    for r in rows:
        checks.append(enrol.check_image(engine, Path(str(real["path"][r])), enrol.EnrolPolicy()))
    t_check = time.perf_counter() - t0
    accepted = [c for c in checks if c.ok]
    subjects = {}
    items = []
    for c in accepted:
        sid = f"S{len(subjects):05d}"
        subjects[sid] = wlmod.Subject(sid, sid, "bench", "LFW", "2024-01-01")
        items.append((sid, c))
    wl = enrol.assemble(items, subjects, wlmod.WatchlistMeta(deployment_id="bench"))
    with tempfile.TemporaryDirectory() as tmp:
        key = vault.create_key_file(Path(tmp) / "k.key")
        t1 = time.perf_counter()
        wl.save(Path(tmp) / "wl", key)
        t_save = time.perf_counter() - t1
    n = len(rows)
    return {
        "images": n, "accepted": len(accepted),
        "check_s_per_1k": t_check / n * 1000,
        "encrypt_save_s_per_1k": t_save / max(len(accepted), 1) * 1000,
        "total_s_per_1k": (t_check + t_save) / n * 1000,
        "reject_reasons": _count([c.reason_code for c in checks if not c.ok]),
    }


def _count(items: list[str]) -> dict:
    out: dict[str, int] = {}
    for it in items:
        out[it] = out.get(it, 0) + 1
    return out


# ----------------------------------------------------------------------------- report


def recommend(results: list[dict]) -> dict:
    """Where exact flat search leaves the latency budget, and what HNSW costs above it."""
    ok = [r["entries"] for r in results if r["flat_p99_ms"] <= LATENCY_BUDGET_MS]
    over = [r["entries"] for r in results if r["flat_p99_ms"] > LATENCY_BUDGET_MS]
    cut = wlmod.HNSW_ABOVE
    below = [r for r in results if r["entries"] <= cut]
    above = [r for r in results if r["entries"] > cut]
    return {
        "budget_ms_p99": LATENCY_BUDGET_MS,
        "largest_flat_within_budget": max(ok) if ok else None,
        "smallest_flat_over_budget": min(over) if over else None,
        "current_HNSW_ABOVE": cut,
        "flat_p99_ms_at_cut": max((r["flat_p99_ms"] for r in below), default=None),
        "hnsw_p99_ms_max_above_cut": max((r["hnsw_p99_ms"] for r in above), default=None),
        "hnsw_recall_min_above_cut": min((r["hnsw_recall_at_1"] for r in above), default=None),
    }


def _f(v: float | None, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def markdown(report: dict) -> str:
    lines = [
        "# Watchlist index at scale",
        "",
        f"Machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}; "
        f"faiss {report['machine']['faiss']}. Date: {report['date']}. Load average (1 min) "
        f"{report['machine']['loadavg_1m_before']} before / {report['machine']['loadavg_1m_after']} after "
        "the measurements (other work on the machine inflates p99).",
        "",
        "## Data",
        "",
        f"- real faces embedded with SFace: {report['data']['real_faces']} (LFW + UTKFace); "
        f"{report['data']['queries']} held-out LFW queries (one per identity; their mates are "
        "the first gallery entries);",
        f"- augmented real faces: up to {report['data']['augmented_used']} "
        "(flip, rotation +-12 deg, scale 0.9-1.1, landmark jitter 1.5% of eye distance, "
        "contrast/brightness, blur, JPEG; aligned and embedded like real faces);",
        f"- random perturbations for sizes beyond that: {report['data']['perturbed_used']} "
        f"(e' = normalise(e + {PERTURB_SIGMA} * g), g ~ N(0, I/128); measured mean cos(e, e') = "
        f"{report['data']['perturbed_mean_cos']});",
        f"- alert-relevant queries: exact top-1 cosine >= {report['threshold']} (config threshold).",
        "",
        "## Results (single query, as the node searches)",
        "",
        "Latency through `Watchlist.search` (1 FAISS thread, `SEARCH_THREADS`); in brackets the same "
        "query with FAISS's default OpenMP team of all cores, for comparison.",
        "",
        "| entries | flat build s | flat p50 ms | flat p99 ms | HNSW build s | HNSW p50 ms | HNSW p99 ms "
        "| HNSW recall@1 | recall@1 (alerting) | flat B/entry | HNSW B/entry | real / augm. / perturbed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        ra = r["hnsw_recall_at_1_alerting"]
        t = r["omp_threads"]
        c = r["composition"]
        lines.append(
            f"| {r['entries']:,} | {r['flat_build_s']:.3f} | {r['flat_p50_ms']:.3f} "
            f"({r[f'flat_omp{t}_p50_ms']:.3f}) | {r['flat_p99_ms']:.3f} ({r[f'flat_omp{t}_p99_ms']:.3f}) "
            f"| {r['hnsw_build_s']:.2f} | {r['hnsw_p50_ms']:.3f} ({r[f'hnsw_omp{t}_p50_ms']:.3f}) "
            f"| {r['hnsw_p99_ms']:.3f} ({r[f'hnsw_omp{t}_p99_ms']:.3f}) "
            f"| {r['hnsw_recall_at_1']:.4f} | {'n/a' if ra is None else f'{ra:.4f}'} "
            f"({r['alerting_queries']}) | {r['flat_bytes_per_entry']:.0f} | {r['hnsw_bytes_per_entry']:.0f} "
            f"| {c['real']:,} / {c['augmented']:,} / {c['perturbed']:,} |"
        )
    sweeps = [r for r in report["results"] if "hnsw_ef_search_sweep" in r]
    if sweeps:
        lines += ["", "### HNSW efSearch trade-off", "",
                  "| entries | efSearch | recall@1 | p50 ms | p99 ms |", "|---|---|---|---|---|"]
        for r in sweeps:
            for ef, v in r["hnsw_ef_search_sweep"].items():
                lines.append(f"| {r['entries']:,} | {ef} | {v['recall_at_1']:.4f} | {v['p50_ms']:.3f} "
                             f"| {v['p99_ms']:.3f} |")
    e = report.get("enrolment")
    if e:
        lines += [
            "", "## Watchlist creation time", "",
            (f"- detect + align + embed of {report['data']['real_faces']} images, timed when the embedding "
             f"cache was built (possibly on a busier machine): {report['data']['embed_s_per_1k']:.1f} s per "
             "1k images") if report["data"].get("embed_s_per_1k")
            else "- detect + align + embed: (taken from cache; timing of the first run not available)",
            f"- full `edge watchlist create` path on {e['images']} LFW images (read, detect, align, embed, "
            f"quality checks, reference crop): {e['check_s_per_1k']:.1f} s per 1k images; encrypt + save: "
            f"{e['encrypt_save_s_per_1k']:.2f} s per 1k entries; accepted {e['accepted']}/{e['images']} "
            f"(rejects: {e['reject_reasons']}).",
        ]
    rec = report["recommendation"]
    lines += [
        "", "## Flat or HNSW?", "",
        f"Budget: {rec['budget_ms_p99']} ms p99 per query (issue 7), on cores that are also detecting and "
        f"embedding. Largest measured size where exact flat search stays within it: "
        f"{rec['largest_flat_within_budget']}; smallest over it: {rec['smallest_flat_over_budget']}.",
        "",
        f"`HNSW_ABOVE` = {rec['current_HNSW_ABOVE']}: up to there the index is exact (no missed top-1) and "
        f"its p99 here was at most {_f(rec['flat_p99_ms_at_cut'])} ms; above it HNSW's p99 was at most "
        f"{_f(rec['hnsw_p99_ms_max_above_cut'])} ms with recall@1 against exact search >= "
        f"{_f(rec['hnsw_recall_min_above_cut'], 4)}. Flat latency grows linearly with entries, HNSW's "
        "barely; HNSW costs ~50% more memory per entry and a build of seconds (minutes at 1M).",
        "",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=ROOT / "out")
    ap.add_argument("--max-size", type=int, default=100_000)
    ap.add_argument("--sizes", type=str, default="",
                    help="comma list; default 1k,10k,20k,50k,100k,1M up to --max-size")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--max-augmented", type=int, default=20_000,
                    help="cap on augmented embeddings (more are padded with perturbations)")
    ap.add_argument("--enrol-sample", type=int, default=300,
                    help="images for the create-path timing (0 = skip)")
    ap.add_argument("--cache-only", action="store_true", help="compute the embedding caches and stop")
    args = ap.parse_args()

    if not (args.data / "lfw_pairs_150").is_dir():
        sys.exit(f"needs ../shared/data (LFW + UTKFace); not found at {args.data}")
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [s for s in DEFAULT_SIZES if s <= args.max_size])
    cfg = load_config()
    engine = FaceEngine(cfg)
    tag = model_tag(cfg)
    args.cache.mkdir(parents=True, exist_ok=True)

    real = real_embeddings(engine, args.data, args.cache, tag)
    n_ok = int(real["ok"].sum())
    log(f"real faces: {n_ok} of {len(real['ok'])} images have a face")
    queries, gallery_rows = split(real, args.queries)
    top = max(sizes)
    n_aug = int(min(max(0, top - len(gallery_rows)), args.max_augmented))
    aug, _ = augmented_embeddings(engine, real, args.cache, tag, n_aug, gallery_rows) if n_aug else (
        np.zeros((0, engine.dim), np.float32), None)
    if args.cache_only:
        log("caches ready")
        return
    pool = np.concatenate([real["emb"][gallery_rows], aug])
    n_pert = max(0, top - len(pool))
    pert, pert_cos = perturbed(pool, n_pert) if n_pert else (np.zeros((0, engine.dim), np.float32), None)
    full = np.ascontiguousarray(np.concatenate([pool, pert]))
    del pert
    q = np.ascontiguousarray(real["emb"][queries])
    threshold = cfg.match.threshold

    import faiss

    load_before = os.getloadavg()
    results = []
    for s in sizes:
        log(f"measuring {s:,} entries")
        r = measure_size(full[:s], q, threshold)
        r["composition"] = {"real": int(min(s, len(gallery_rows))),
                            "augmented": int(min(max(0, s - len(gallery_rows)), len(aug))),
                            "perturbed": int(max(0, s - len(pool)))}
        log(f"  flat p99 {r['flat_p99_ms']:.3f} ms, hnsw p99 {r['hnsw_p99_ms']:.3f} ms, "
            f"recall@1 {r['hnsw_recall_at_1']:.4f}, hnsw build {r['hnsw_build_s']:.1f} s")
        results.append(r)

    enrolment = enrol_timing(engine, real, args.enrol_sample) if args.enrol_sample else None
    embed_s = float(real["seconds"]) if "seconds" in real else 0.0
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "faiss": faiss.__version__,
                    "loadavg_1m_before": round(load_before[0], 2),
                    "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "models": {"recognizer": cfg.recognizer.model, "detector": cfg.detector.model, "tag": tag},
        "hnsw": {"M": wlmod.HNSW_M, "efConstruction": 80, "efSearch": 64},
        "threshold": threshold,
        "data": {
            "real_faces": n_ok, "queries": len(queries), "gallery_real": len(gallery_rows),
            "augmented_used": len(aug), "perturbed_used": n_pert,
            "perturbed_sigma": PERTURB_SIGMA,
            "perturbed_mean_cos": None if pert_cos is None else round(pert_cos, 4),
            "embed_s_per_1k": embed_s / len(real["ok"]) * 1000 if embed_s else None,
        },
        "results": results,
        "enrolment": enrolment,
        "recommendation": recommend(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index_scale.json").write_text(json.dumps(report, indent=1))
    (args.out / "index_scale.md").write_text(markdown(report))
    log(f"wrote {args.out / 'index_scale.json'} and {args.out / 'index_scale.md'}")
    print(markdown(report))


if __name__ == "__main__":
    main()
