"""Accuracy, fairness and calibration on ../shared/data: regenerates docs/ACCURACY.md's tables.

Runs exactly what ``edge eval`` runs (``edge.lab.evaluation.run.run_evaluation``) on LFW
(identities, gender) + UTKFace (impostors, race x gender, age), with the built-in label-noise
lists, writes results.json / report.md / plots to docs/eval/, pastes the tables between the
markers of docs/ACCURACY.md, and writes the exclusion lists as CSV next to them so users can
extend them. It also times embedding throughput (images/s, cache off) on a sample, into
out/bench/accuracy.json (timings and counts only).

    python benchmarks/accuracy.py                     # ~8 min the first time, ~40 s cached
    python benchmarks/accuracy.py --no-doc --out /tmp/acc
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import REPO, machine_note, write_json

from edge.lab.evaluation import datasets as D
from edge.lab.evaluation.report import render_markdown, update_generated_section, write_outputs
from edge.lab.evaluation.run import EvalOptions, parse_rate, run_evaluation

SHARED = Path(os.environ.get("EDGE_SHARED_DATA", REPO.parent / "shared" / "data"))


def throughput(paths: list[Path], engine: object) -> dict[str, float]:
    """Detect + align + embed speed on tight crops (the evaluation path, not the live node)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        D.embed_images(paths, engine, cache_dir=Path(tmp), use_cache=False, progress=False)
        dt = time.perf_counter() - t0
    return {"images": len(paths), "seconds": round(dt, 2),
            "images_per_s": round(len(paths) / dt, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "eval")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "ACCURACY.md")
    ap.add_argument("--no-doc", action="store_true", help="don't touch docs/ACCURACY.md")
    ap.add_argument("--watchlist-size", type=int, default=10_000)
    ap.add_argument("--target-fpir", default="1/6000")
    ap.add_argument("--throughput-sample", type=int, default=100)
    a = ap.parse_args()

    lfw, utk = a.data / "lfw_pairs_150", a.data / "utkface_adult_balanced"
    if not lfw.is_dir():
        raise SystemExit(f"needs ../shared/data: {lfw} is absent")
    from edge.face.photos import FaceEngine

    engine = FaceEngine.from_config()
    opts = EvalOptions(identities=lfw, impostors=utk if utk.is_dir() else None,
                       watchlist_size=a.watchlist_size, target_fpir=parse_rate(a.target_fpir),
                       exclusions="lfw,utkface")
    t0 = time.perf_counter()
    result = run_evaluation(opts, engine)
    elapsed = time.perf_counter() - t0
    files = write_outputs(result, a.out)
    for name, entries in D.BUILTIN_EXCLUSIONS.items():
        D.write_exclusions_csv(D.Exclusions(list(entries)), a.out / f"{name}_exclusions.csv")
    if not a.no_doc:
        rel = os.path.relpath(a.out, a.doc.parent)
        plots = {k: f"{rel}/{p.name}" for k, p in files.items() if p.suffix == ".png"}
        update_generated_section(a.doc, render_markdown(result.summary, plots))
    sample = [it.path for it in D.load_face_set(lfw).items[: a.throughput_sample]]
    tp = throughput(sample, engine)
    write_json("accuracy", {"machine": machine_note(), "eval_seconds": round(elapsed, 1),
                            "embedding_throughput": tp})
    s = result.summary
    v = s["variants"][s["primary_variant"]]
    op = v["report"]["at_calibrated"]["operating_point"]
    print(f"calibrated threshold {v['calibration']['threshold']:.4f}, report TPIR "
          f"{100 * op['tpir']:.1f}%, eval {elapsed:.0f} s, embedding {tp['images_per_s']} img/s")
    print(f"wrote {a.out}" + ("" if a.no_doc else f" and {a.doc}"))


if __name__ == "__main__":
    main()
