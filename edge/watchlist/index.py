"""The watchlist: a FAISS inner-product index of L2-normalised embeddings plus subject metadata.

Several reference images per subject are kept as separate index entries mapped to one
subject (top-1 over entries, reported per subject). Exact search (flat) for small lists;
above ``HNSW_ABOVE`` entries an HNSW graph is used (see benchmarks/index_scale.py for the
measurement behind the cut-over). On disk a watchlist is a set of named blobs that
``edge.watchlist.vault`` stores encrypted and authenticated.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from edge.errors import WatchlistError
from edge.watchlist import vault
from edge.watchlist.cohort import CohortClusters
from edge.watchlist.fusion import ModelStats, column_scale

FORMAT_VERSION = 1
# Flat search is exact; above this many entries HNSW answers faster (benchmarks/index_scale.py,
# docs/WATCHLIST.md): on 2 cores, 1 thread, flat p99 is 0.6 ms at 30k entries and 1.0-1.1 ms at
# 50k (over a 1 ms budget on cores also busy detecting); HNSW stays <= 0.4 ms up to 1M with
# recall@1 >= 0.99 (vs exact) up to 100k. Measured in Nov 2026; was 50_000 (a guess) before.
HNSW_ABOVE = 30_000
HNSW_M = 32
# A frame's few probes are searched on one thread: an OpenMP team for a 1-32 row query costs
# more than it saves, and on a 2-core node busy detecting and embedding it stalls for tens of
# ms (10k flat: 0.06 ms on 1 thread vs 16 ms p50 on 2; benchmarks/index_scale.py). Note this
# sets FAISS's process-wide thread count.
SEARCH_THREADS = 1


@dataclass
class Subject:
    subject_id: str
    display_name: str
    category: str = ""
    image_source: str = ""
    date_added: str = ""


@dataclass
class Entry:
    entry_id: str  # e.g. "S001/2" ; names the reference image
    subject_id: str
    image_name: str


@dataclass
class WatchlistMeta:
    deployment_id: str = "unspecified"
    authorising_officer: str = ""
    window_start: float = 0.0  # unix time; 0 = no window (development lists only)
    window_end: float = 0.0
    created_at: float = field(default_factory=time.time)
    model: str = ""
    model_sha256: str = ""
    dim: int = 0
    index_type: str = "flat"
    auto_destroy_hours: float = 24.0
    # a fused list: every recogniser with its weight and impostor statistics, the primary
    # first (edge.watchlist.fusion); empty for a single-model list
    models: list[dict] = field(default_factory=list)
    # score normalisation by cohort clusters (edge.watchlist.cohort): its figures; the
    # centroids are the "cohort" blob. Empty: raw (fused) scores.
    normalisation: dict = field(default_factory=dict)


@dataclass
class Match:
    """Top-1 result for one probe: the best entry, its subject and cosine similarity."""

    score: float
    entry: Entry
    subject: Subject


# A stage's zeroed-per-frame buffer, by name, shape and dtype (edge.privacy.FaceBuffers.whole).
Scratch = Callable[[str, tuple[int, ...], type], np.ndarray]


class Watchlist:
    """Index + metadata, loaded into RAM for matching."""

    def __init__(self, meta: WatchlistMeta, subjects: dict[str, Subject], entries: list[Entry],
                 embeddings: np.ndarray, references: dict[str, bytes] | None = None,
                 index: faiss.Index | None = None, cohort: CohortClusters | None = None) -> None:
        if len(entries) != len(embeddings):
            raise WatchlistError("watchlist entries and embeddings differ in count")
        self.meta = meta
        self.subjects = subjects
        self.entries = entries
        self.embeddings = np.ascontiguousarray(embeddings, np.float32)
        self.references = references or {}
        self.dim = int(self.embeddings.shape[1]) if len(self.embeddings) else meta.dim
        self.meta.dim = self.dim
        self.fusion = [ModelStats.from_dict(d) for d in meta.models]
        if self.fusion and sum(m.dim for m in self.fusion) != self.dim:
            raise WatchlistError("watchlist fusion blocks do not add up to its embedding size")
        self.cohort = cohort
        if cohort is not None and cohort.dim != self.dim:
            raise WatchlistError(f"watchlist cohort clusters have {cohort.dim} dims, its "
                                 f"embeddings {self.dim}")
        self.index = index if index is not None else build_index(self._indexed(), meta.index_type)
        self.meta.index_type = index_kind(self.index)

    def _indexed(self) -> np.ndarray:
        """What the index holds: the embeddings, each model's block scaled for a fused list,
        and the gallery side of the cohort normalisation when the list has one."""
        rows = self.embeddings
        if len(self.fusion) >= 2:
            rows = rows * column_scale(self.fusion)[None, :]
        if self.cohort is not None:
            rows = self.cohort.gallery_rows(self.embeddings, rows)
        return rows

    def _rebuild(self) -> None:
        kind = self.meta.index_type if self.meta.index_type in ("flat", "hnsw") else "auto"
        self.index = build_index(self._indexed(), kind)
        self.meta.index_type = index_kind(self.index)

    def set_cohort(self, cohort: CohortClusters) -> None:
        """Normalise this list's scores by these cohort clusters (index rebuilt)."""
        if cohort.dim != self.dim:
            raise WatchlistError(f"cohort clusters have {cohort.dim} dims, the list holds {self.dim}")
        self.cohort = cohort
        self.meta.normalisation = cohort.meta()
        self._rebuild()

    def set_fusion(self, models: list[ModelStats]) -> None:
        """Make this a fused list with these models' weights and statistics (index rebuilt)."""
        if sum(m.dim for m in models) != self.dim:
            raise WatchlistError(f"fusion models give {sum(m.dim for m in models)} dims, the list "
                                 f"holds {self.dim}")
        self.fusion = list(models)
        self.meta.models = [asdict(m) for m in models]
        self._rebuild()

    def __len__(self) -> int:
        return len(self.entries)

    # ---- matching ----
    def search(self, probes: np.ndarray, sims_out: np.ndarray, ids_out: np.ndarray,
               scratch: Scratch | None = None) -> None:
        """Top-1 for each row of ``probes`` into caller-owned outputs (privacy buffers).

        A normalised list first writes each probe's cluster side (``edge.watchlist.cohort``)
        into ``scratch`` buffers, which the caller zeroes with the frame; without ``scratch``
        they are local and zeroed here.
        """
        n = len(probes)
        if n == 0:
            return
        if len(self.entries) == 0:
            sims_out[:n] = -1.0
            ids_out[:n] = -1
            return
        if faiss.omp_get_max_threads() != SEARCH_THREADS:
            faiss.omp_set_num_threads(SEARCH_THREADS)
        if self.cohort is None:
            self.index.search(probes, 1, D=sims_out[:n], I=ids_out[:n])
            return
        rows = max(n, len(sims_out))
        local = scratch is None
        get: Scratch = scratch if scratch is not None else _local
        aug = get("cohort_probe", (rows, self.dim + 2), np.float32)
        csims = get("cohort_sims", (rows, self.cohort.k), np.float32)
        cidx = get("cohort_idx", (rows,), np.int64)
        try:
            view = self.cohort.probe_rows(probes, aug, csims, cidx)
            self.index.search(view, 1, D=sims_out[:n], I=ids_out[:n])
        finally:
            if local:
                for a in (aug, csims, cidx):
                    a.fill(0)

    def match_of(self, entry_idx: int, score: float) -> Match:
        e = self.entries[entry_idx]
        return Match(float(score), e, self.subjects[e.subject_id])

    # ---- governance ----
    def check_window(self, now: float | None = None) -> None:
        """Refuse a list outside its deployment window (a list without a window is dev-only)."""
        if not self.meta.window_end:
            return
        now = time.time() if now is None else now
        if now < self.meta.window_start:
            raise WatchlistError(
                f"watchlist for deployment {self.meta.deployment_id} is not valid yet "
                f"(window starts {_fmt(self.meta.window_start)})"
            )
        if now >= self.meta.window_end:
            raise WatchlistError(
                f"watchlist for deployment {self.meta.deployment_id} expired at "
                f"{_fmt(self.meta.window_end)}"
            )

    def in_window(self, now: float | None = None) -> bool:
        try:
            self.check_window(now)
        except WatchlistError:
            return False
        return True

    # ---- serialisation as named blobs (encrypted by edge.watchlist.vault) ----
    def to_blobs(self) -> dict[str, bytes]:
        fields = asdict(self.meta)
        for name in ("models", "normalisation"):
            if not fields[name]:
                del fields[name]  # a plain list stays readable by releases before these
        meta = {
            "format": FORMAT_VERSION,
            "meta": fields,
            "subjects": [asdict(s) for s in self.subjects.values()],
            "entries": [asdict(e) for e in self.entries],
        }
        buf = io.BytesIO()
        np.save(buf, self.embeddings, allow_pickle=False)
        blobs = {
            "metadata": json.dumps(meta, sort_keys=True).encode(),
            "embeddings": buf.getvalue(),
            "index": faiss.serialize_index(self.index).tobytes(),
        }
        if self.cohort is not None:
            blobs[COHORT_BLOB] = self.cohort.to_blob()
        for i, e in enumerate(self.entries):
            if e.entry_id in self.references:
                blobs[ref_blob_name(i)] = self.references[e.entry_id]
        return blobs

    @classmethod
    def from_blobs(cls, blobs: dict[str, bytes]) -> Watchlist:
        try:
            meta = json.loads(blobs["metadata"])
            if meta.get("format") != FORMAT_VERSION:
                raise WatchlistError(f"unsupported watchlist format {meta.get('format')}")
            emb = np.load(io.BytesIO(blobs["embeddings"]), allow_pickle=False)
            index = faiss.deserialize_index(np.frombuffer(blobs["index"], np.uint8))
        except KeyError as exc:
            raise WatchlistError(f"watchlist is incomplete: missing {exc.args[0]}") from None
        except (ValueError, json.JSONDecodeError, RuntimeError) as exc:
            raise WatchlistError(f"watchlist is corrupt: {type(exc).__name__}") from None
        subjects = {s["subject_id"]: Subject(**s) for s in meta["subjects"]}
        entries = [Entry(**e) for e in meta["entries"]]
        refs = {e.entry_id: blobs[ref_blob_name(i)] for i, e in enumerate(entries)
                if ref_blob_name(i) in blobs}
        if index.ntotal != len(entries):
            raise WatchlistError("watchlist index does not match its entries")
        wmeta = WatchlistMeta(**meta["meta"])
        cohort = None
        if wmeta.normalisation:
            if COHORT_BLOB not in blobs:
                raise WatchlistError("watchlist is incomplete: missing its cohort clusters")
            cohort = CohortClusters.from_stored(wmeta.normalisation, blobs[COHORT_BLOB])
        if len(entries) and index.d != emb.shape[1] + (2 if cohort is not None else 0):
            raise WatchlistError("watchlist index does not match its embeddings")
        return cls(wmeta, subjects, entries, emb, refs, index, cohort)

    def save(self, directory: str | Path, key: vault.VaultKey) -> None:
        """Write encrypted (atomic: an existing list is replaced only when complete)."""
        vault.write_vault(Path(directory), self.to_blobs(), key, meta=self.public_meta())
        # nothing else is written: reference images never go to disk unencrypted

    @classmethod
    def load(cls, directory: str | Path, key: vault.VaultKey) -> Watchlist:
        return cls.from_blobs(vault.read_vault(Path(directory), key))

    def public_meta(self) -> dict:
        """Header fields that may be read without the key (no names, no images)."""
        return {
            "deployment_id": self.meta.deployment_id,
            "window_start": self.meta.window_start,
            "window_end": self.meta.window_end,
            "auto_destroy_hours": self.meta.auto_destroy_hours,
            "entries": len(self.entries),
        }

    def stats(self) -> dict:
        return {
            "deployment_id": self.meta.deployment_id,
            "subjects": len(self.subjects),
            "entries": len(self.entries),
            "dim": self.dim,
            "index_type": self.meta.index_type,
            "index_bytes": int(faiss.serialize_index(self.index).nbytes),
            "reference_images": len(self.references),
            "model": self.meta.model,
            "normalisation": self.cohort.summary() if self.cohort is not None else None,
            "fusion": [{"name": m.name, "weight": m.weight, "impostor_mean": round(m.impostor_mean, 5),
                        "impostor_std": round(m.impostor_std, 5), "source": m.source}
                       for m in self.fusion],
        }


COHORT_BLOB = "cohort"


def _local(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.zeros(shape, dtype)


def ref_blob_name(entry_index: int) -> str:
    """Blob name of an entry's reference image: its position only, since blob names are
    readable without the key and must not reveal subject ids."""
    return f"ref-{entry_index:06d}"


def build_index(embeddings: np.ndarray, kind: str = "auto") -> faiss.Index:
    """Flat (exact) below HNSW_ABOVE entries, HNSW above, unless a kind is forced."""
    dim = embeddings.shape[1] if embeddings.ndim == 2 and embeddings.shape[1] else 128
    if kind == "auto":
        kind = "hnsw" if len(embeddings) > HNSW_ABOVE else "flat"
    if kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 64
    else:
        raise WatchlistError(f"unknown index type {kind!r} (flat, hnsw or auto)")
    if len(embeddings):
        index.add(np.ascontiguousarray(embeddings, np.float32))
    return index


def index_kind(index: faiss.Index) -> str:
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"


def _fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
