"""``edge eval``: open-set accuracy, demographic differentials and threshold calibration."""

from __future__ import annotations

from pathlib import Path

import click

from edge.config import load_config
from edge.errors import EdgeError
from edge.lab.evaluation.datasets import DEFAULT_PAD, SPLIT_SALT
from edge.lab.evaluation.report import write_outputs, write_threshold_config
from edge.lab.evaluation.run import DEFAULT_FPIR_TARGETS, EvalOptions, parse_rate, parse_rates, run_evaluation
from edge.watchlist.fusion import ModelStats, write_stats

_dir = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("eval")
@click.option("--identities", required=True, type=_dir,
              help="Identity-labelled face folder: images/ + labels.csv (image,identity[,group "
                   "columns]) [+ pairs.csv], or one sub-folder per identity.")
@click.option("--impostors", type=_dir,
              help="Extra non-mated faces: images/ + labels.csv (image[,group columns]); each "
                   "image counts as a different person (e.g. UTKFace with race/gender).")
@click.option("--watchlist-size", default=10_000, show_default=True, type=click.IntRange(1),
              help="Watchlist size N to calibrate and extrapolate FPIR for.")
@click.option("--target-fpir", default="1/6000", show_default=True,
              help="FPIR the worst group must meet at N (e.g. 1/6000 or 0.001).")
@click.option("--fpir-target", "fpir_targets", multiple=True,
              help="FPIR at which to report measured TPIR (repeatable; default 1/10, 1/100, "
                   "1/1000).")
@click.option("--exclusions", multiple=True,
              help="Known label noise to leave out of impostor trials: 'lfw', 'utkface' (built "
                   "in) or a CSV name_a,name_b[,reason]. Repeatable. Results are reported with "
                   "and without it.")
@click.option("--out", "out_dir", default="eval-report", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where results.json, report.md and the plots go.")
@click.option("--write-config", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the calibrated threshold as [match] threshold into this TOML config "
                   "(created if missing; other keys and comments are kept).")
@click.option("--write-fusion", type=click.Path(dir_okay=False, path_type=Path),
              help="Fused recognisers: write each model's impostor statistics (calibration "
                   "half) to this JSON file, for `edge watchlist create --fusion-stats`.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Node config whose detector/recogniser settings and models to evaluate.")
@click.option("--score-normalisation", type=click.Choice(["off", "cohort-clusters"]),
              help="Also measure the cohort-cluster score normalisation beside the plain scores "
                   "(the calibration half is the cohort); default: the config's [match].")
@click.option("--cohort-clusters", type=click.IntRange(2, 1000),
              help="k-means clusters for it (default: the config's match.cohort_clusters).")
@click.option("--split-salt", default=SPLIT_SALT, show_default=True,
              help="Salt of the identity hash that splits calibration from report data.")
@click.option("--limit-identities", type=click.IntRange(1),
              help="Use only this many identities (a fixed hash-ordered subset; quick runs).")
@click.option("--limit-impostors", type=click.IntRange(1),
              help="Use only this many impostor images (hash-ordered subset).")
@click.option("--pad", default=DEFAULT_PAD, show_default=True, type=click.FloatRange(0, 2),
              help="Black border added around each image before detection, as a fraction of "
                   "its size (tight face crops need it).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Embedding cache (default ~/.cache/edge/eval).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def eval_cmd(identities: Path, impostors: Path | None, watchlist_size: int, target_fpir: str,
             fpir_targets: tuple[str, ...], exclusions: tuple[str, ...], out_dir: Path,
             write_config: Path | None, write_fusion: Path | None, config: Path | None,
             score_normalisation: str | None, cohort_clusters: int | None, split_salt: str,
             limit_identities: int | None, limit_impostors: int | None, pad: float,
             cache_dir: Path | None, no_cache: bool, quiet: bool) -> None:
    """Measure open-set 1:N accuracy and demographic differentials; calibrate the threshold.

    One image per identity with >= 2 images is enrolled; their other images are mated
    searches; everyone else (and the --impostors set) searches as non-mated. Identities are
    split by a salted hash into a calibration half, where the threshold is chosen so that the
    WORST demographic group meets --target-fpir at --watchlist-size (FPIR extrapolated from
    the per-comparison false-match rate: FPIR(N) = 1 - (1 - FMR)^N), and a report half,
    where every figure in the report is measured. Nothing is tuned on the report half.

    \b
    Examples:
      edge eval --identities ../shared/data/lfw_pairs_150 \\
                --impostors ../shared/data/utkface_adult_balanced \\
                --exclusions lfw --exclusions utkface --out eval-report \\
                --write-config config/site.toml
      edge eval --identities my_faces/ --watchlist-size 500 --target-fpir 1/1000
    """
    opts = EvalOptions(
        identities=identities, impostors=impostors, watchlist_size=watchlist_size,
        target_fpir=parse_rate(target_fpir),
        fpir_targets=parse_rates(fpir_targets) if fpir_targets else DEFAULT_FPIR_TARGETS,
        exclusions=",".join(exclusions) or None, salt=split_salt,
        limit_identities=limit_identities, limit_impostors=limit_impostors, pad=pad,
        cache_dir=cache_dir, use_cache=not no_cache, progress=not quiet, config=config,
        score_normalisation=score_normalisation, cohort_clusters=cohort_clusters,
    )
    if write_fusion is not None and (config is None or not load_config(config).recognizer.fuse):
        raise EdgeError("--write-fusion needs a --config with [[recognizer.fuse]] models")
    result = run_evaluation(opts)
    files = write_outputs(result, out_dir)
    s = result.summary
    pv = s["primary_variant"]
    v = s["variants"][pv]
    at = v["report"]["at_calibrated"]
    op = at["operating_point"]
    click.echo(f"figures: {pv} labels; calibration on one half, report on the other")
    for d in s.get("data", []):
        if d.get("skipped"):
            n = sum(d["skipped"].values())
            parts = ", ".join(f"{c} {r}" for r, c in sorted(d["skipped"].items()))
            click.echo(f"{d['name']}: skipped {n} file(s): {parts}")
    held = v["report"].get("held_out_people", 0)
    if held:
        click.echo(f"every person has >= 2 images: {held} people of the report half are not "
                   "enrolled and search as non-mated (for FPIR); the others are enrolled")
    click.echo(f"calibrated threshold {v['calibration']['threshold']:.4f} "
               f"(binding group: {v['calibration']['binding_group']})")
    click.echo(f"report half: TPIR {100 * op['tpir']:.1f}% ({op['hits']}/{op['n_mated']}), "
               f"FPIR {op['false_alarms']}/{op['n_nonmated']} at gallery "
               f"{v['report']['gallery_size']}, FMR {at['fmr']['text']}")
    click.echo(f"FPIR extrapolated to N={watchlist_size:,}: 95% upper bound "
               f"{at['fpir_at_n_upper']:.3g} (target {opts.target_fpir:.3g}); this data vouches "
               f"for the target up to N={at['max_vouched_watchlist']:,}")
    for p in v["report"]["tpir_at_fpir_direct"]:
        click.echo(f"TPIR at FPIR {p['target_fpir']:g}: {100 * p['tpir']:.1f}% "
                   f"(threshold {p['threshold']:.4f})")
    for name, r in s["verification"].items():
        click.echo(f"pairs.csv verification ({name}): {100 * r['mean']:.2f}% "
                   f"± {100 * r['std']:.2f} over {len(r['fold_ids'])} folds")
    if write_config is not None:
        threshold, tpir, scale = v["calibration"]["threshold"], op["tpir"], ""
        norm = s.get("score_normalisation")
        if norm and config is not None and \
                load_config(config).match.score_normalisation == "cohort-clusters":
            # the node scores on the normalised scale: its threshold is that one's
            r = norm["cohort-clusters"]
            threshold, tpir, scale = r["threshold"], r["tpir_at_calibrated"], " (cohort-normalised scores)"
        note = (f"edge eval: worst group FPIR <= {opts.target_fpir:.3g} at N={watchlist_size}; "
                f"TPIR {100 * tpir:.1f}% on the report half{scale}")
        value = write_threshold_config(write_config, threshold, note)
        click.echo(f"wrote [match] threshold = {value}{scale} to {write_config}")
    for name, r in (s.get("recognisers") or {}).items():
        direct = r["tpir_at_fpir_direct"].get("0.001")
        click.echo(f"{name}: TPIR {100 * r['tpir_at_calibrated']:.1f}% at its calibrated threshold "
                   f"{r['threshold']:.4f}" + (f", {100 * direct['tpir']:.1f}% at FPIR 1/1,000"
                                              if direct else ""))
    norm = s.get("score_normalisation")
    if norm:
        c = norm["clusters"]
        click.echo(f"score normalisation: {c['clusters']} cohort clusters at FMR {c['fmr']:g} "
                   f"(calibration half as the cohort)")
        for name in ("off", "cohort-clusters"):
            r = norm[name]
            direct = r["tpir_at_fpir_direct"].get("0.001")
            click.echo(f"  {name}: TPIR {100 * r['tpir_at_calibrated']:.1f}% at its calibrated "
                       f"threshold {r['threshold']:.4f}" + (
                           f", {100 * direct['tpir']:.1f}% at FPIR 1/1,000" if direct else ""))
    if write_fusion is not None and s.get("fusion"):
        write_stats(write_fusion, [ModelStats.from_dict(m) for m in s["fusion"]])
        click.echo(f"wrote fusion statistics to {write_fusion} (edge watchlist create --fusion-stats)")
    click.echo(f"report: {files['markdown']} (+ results.json, plots) in {out_dir}")
