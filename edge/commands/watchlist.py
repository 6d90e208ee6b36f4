"""``edge watchlist``: create, build, show, stats and destroy encrypted watchlists.

Every command that opens a list asks for its key the same way (:mod:`edge.commands.options`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edge.audit import AuditLog
from edge.audit_signing import AuditSigner
from edge.commands.options import check_key_location, key_from_options, key_options, passphrase_prompted
from edge.config import load_config
from edge.errors import WatchlistError
from edge.face.photos import FaceEngine
from edge.watchlist import cohort, enrol, fusion, lifecycle, vault
from edge.watchlist.enrol import EnrolPolicy
from edge.watchlist.index import Watchlist

F = TypeVar("F", bound=Callable[..., Any])
# cohort faces read for the score-normalisation clusters (the rest are ignored)
COHORT_LIMIT = 5000


# ----------------------------------------------------------------------------- helpers


def _audit(path: Path | None, key: Path | None, kind: str, data: dict) -> None:
    if path is None:
        return
    with AuditLog(path, AuditSigner.from_file(key) if key else None) as log:
        log.append(kind, data)


def _engine(config: Path | None):
    cfg = load_config(config)
    return cfg, FaceEngine(cfg)


def _refuse_existing(out: Path, replace: bool) -> None:
    if (out / vault.HEADER_FILE).is_file():
        if not replace:
            dep = vault.read_meta(out)["meta"].get("deployment_id", "?")
            raise WatchlistError(
                f"{out} already holds a watchlist (deployment {dep}); destroy it first or pass --replace")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise WatchlistError(f"{out} exists and is not a watchlist; choose another -o")


def _enrol_and_save(engine, subjects, rows, policy, meta, allow_rejects: bool, out, key, key_file,
                    passphrase_env, fuse: Callable[[Watchlist], None] | None = None):
    """Check and enrol every image, report the checks, calibrate fusion (``fuse``), encrypt
    the list to ``out``; returns the enrolment result and the key used."""
    try:
        result = enrol.enrol(engine, subjects, rows, policy, meta, allow_rejects=allow_rejects)
    except enrol.EnrolmentError as exc:
        for p in exc.problems:
            click.echo(f"  {p}", err=True)
        raise
    _report_checks(result.checks)
    for sid in result.not_enrolled:
        click.echo(f"  subject {sid} left out: no accepted image", err=True)
    if fuse is not None and result.watchlist is not None:
        fuse(result.watchlist)
    return result, _save(result.watchlist, out, key, key_file, passphrase_env)


def _fuser(cfg, engine, stats_file: Path | None, background: Path | None
           ) -> Callable[[Watchlist], None] | None:
    """For a fused recogniser configuration: what sets the new list's fusion statistics."""
    dims = getattr(engine.embedder, "dims", None)
    if dims is None:
        if stats_file is not None or background is not None:
            raise WatchlistError("--fusion-stats and --background are for a fused recogniser "
                                 "configuration ([[recognizer.fuse]])")
        return None
    configured = lifecycle.fusion_models(cfg, dims)
    measured = fusion.read_stats(stats_file) if stats_file is not None else None

    def fuse(wl: Watchlist) -> None:
        bg = None
        if measured is None and background is not None:
            bg = enrol.background_embeddings(engine, background)
        try:
            models = fusion.calibrate(configured, wl.embeddings, [e.subject_id for e in wl.entries],
                                      measured, bg)
        finally:
            if bg is not None:
                bg.fill(0)
        wl.set_fusion(models)
        for m in models:
            click.echo(f"fusion: {m.name} weight {m.weight:g}, impostor mean {m.impostor_mean:.4f} "
                       f"sd {m.impostor_std:.4f} ({m.impostor_pairs} pairs, {m.source})", err=True)
    return fuse


def _normaliser(cfg, engine, cohort_dir: Path | None) -> Callable[[Watchlist], None] | None:
    """With match.score_normalisation = "cohort-clusters": what fits the new list's cohort
    clusters from the consented faces in ``cohort_dir`` (zeroed after; only centroids kept)."""
    m = cfg.match
    if m.score_normalisation == "off":
        if cohort_dir is not None:
            raise WatchlistError('--cohort is for match.score_normalisation = "cohort-clusters" '
                                 "(set it in the --config)")
        return None
    if cohort_dir is None:
        raise WatchlistError(f"match.score_normalisation is {m.score_normalisation}: give --cohort "
                             "DIR, consented faces of people NOT on the list")

    def normalise(wl: Watchlist) -> None:
        faces = enrol.background_embeddings(engine, cohort_dir, limit=COHORT_LIMIT)
        try:
            clusters = cohort.fit(faces, m.cohort_clusters, m.cohort_fmr,
                                  f"cohort {cohort_dir.name} ({len(faces)} faces)")
        finally:
            faces.fill(0)
        wl.set_cohort(clusters)
        n = clusters.summary()
        click.echo(f"score normalisation: {n['clusters']} cohort clusters at FMR {n['fmr']:g}, "
                   f"offsets {n['offset_range'][0]:+.4f} to {n['offset_range'][1]:+.4f}", err=True)
    return normalise


def _list_fixers(cfg, engine, stats_file: Path | None, background: Path | None,
                 cohort_dir: Path | None) -> Callable[[Watchlist], None] | None:
    """Fusion statistics first (they scale the index), then the cohort clusters."""
    steps = [f for f in (_fuser(cfg, engine, stats_file, background),
                         _normaliser(cfg, engine, cohort_dir)) if f is not None]
    if not steps:
        return None

    def run(wl: Watchlist) -> None:
        for step in steps:
            step(wl)
    return run


_scoring_options = [
    click.option("--cohort", "cohort_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                 help='With match.score_normalisation = "cohort-clusters": consented faces of people '
                      "NOT on the list (one per image) to fit the score-normalisation clusters on; "
                      "only cluster centroids and offsets are stored."),
    click.option("--fusion-stats", "fusion_stats",
                 type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Fused recognisers: impostor statistics from `edge eval --write-fusion`."),
    click.option("--background", type=click.Path(exists=True, file_okay=False, path_type=Path),
                 help="Fused recognisers: consented faces of people NOT on the list (one per "
                      "image) to measure impostor statistics on; nothing of them is stored."),
]


def scoring_options(f: F) -> F:
    for opt in reversed(_scoring_options):
        f = opt(f)
    return f


def _report_checks(result_checks: list, rejected_only: bool = True) -> None:
    rej = [(r, c) for r, c in result_checks if not c.ok]
    if rej:
        click.echo(f"rejected {len(rej)} of {len(result_checks)} image(s):", err=True)
        for r, c in rej:
            click.echo(f"  {r.name}: {c.reason}", err=True)


def _early_key(out: Path, key_file: Path | None, passphrase_env: str | None) -> vault.VaultKey | None:
    """Resolve the key before the (slow) image checks, without writing anything: an existing
    key file or a passphrase now; a new key file is only created once the list is built."""
    check_key_location(out, key_file)
    if key_file is not None and not Path(key_file).expanduser().exists():
        return None
    return key_from_options(out, key_file, passphrase_env, create=True)


def _save(wl, out: Path, key: vault.VaultKey | None, key_file: Path | None,
          passphrase_env: str | None) -> vault.VaultKey:
    """Write the list; a key file created here is removed again if the write fails."""
    created = key is None
    if key is None:
        key = key_from_options(out, key_file, passphrase_env, create=True)
    try:
        wl.save(out, key)
    except BaseException:
        if created and key_file is not None:
            Path(key_file).expanduser().unlink(missing_ok=True)  # it protects nothing
        raise
    return key


def _policy(min_face_px: float, min_sharpness: float, max_yaw: float, max_pitch: float):
    p = EnrolPolicy(min_face_px, min_sharpness, max_yaw, max_pitch)
    p.validate()
    return p


_policy_options = [
    click.option("--min-face-px", type=float, default=80.0, show_default=True,
                 help="Minimum face width (from the eye distance) in the reference image."),
    click.option("--min-sharpness", type=float, default=30.0, show_default=True,
                 help="Minimum sharpness (variance of Laplacian inside the aligned face)."),
    click.option("--max-yaw", type=float, default=30.0, show_default=True, help="Max |yaw| in degrees."),
    click.option("--max-pitch", type=float, default=25.0, show_default=True, help="Max |pitch| in degrees."),
]


def policy_options(f: F) -> F:
    for opt in reversed(_policy_options):
        f = opt(f)
    return f


def _status(meta, now: float) -> str:
    if not meta.window_end:
        return "DEVELOPMENT LIST (no deployment window; the node accepts it only for development)"
    if now < meta.window_start:
        return f"NOT YET VALID (window opens {lifecycle.fmt_time(meta.window_start)})"
    if now < meta.window_end:
        return "ACTIVE"
    deadline = lifecycle.destroy_deadline({"window_end": meta.window_end,
                                           "auto_destroy_hours": meta.auto_destroy_hours})
    if deadline is not None and now >= deadline:
        return (f"EXPIRED and DUE FOR DESTRUCTION since {lifecycle.fmt_time(deadline)} "
                "(run `edge watchlist destroy-expired`)")
    return f"EXPIRED (the node refuses it; destroyed at the latest {lifecycle.fmt_time(deadline)})"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    def line(r: list[str]) -> str:
        return "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ----------------------------------------------------------------------------- commands


@click.group()
def watchlist() -> None:
    """Create, inspect and destroy encrypted watchlists.

    A watchlist holds the reference embeddings, subject details and reference photos of one
    deployment, encrypted and authenticated (AES-256-GCM) under a key file or passphrase
    that is never stored beside it. Production lists carry a deployment id, the authorising
    officer and a validity window; the node refuses a list outside its window, and the list
    is destroyed at most 24 hours after the window ends.
    """


@watchlist.command("create")
@click.option("--images", "images_dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of reference images.")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV: subject_id, display_name, category, image, image_source, date_added.")
@click.option("--deployment-id", required=True, help="Deployment this list is authorised for.")
@click.option("--officer", required=True, help="Name (and rank) of the authorising officer.")
@click.option("--start", required=True, help="Window start, ISO 8601 (no zone = local time).")
@click.option("--end", required=True, help="Window end, ISO 8601 (no zone = local time).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Watchlist folder to write.")
@click.option("--auto-destroy-hours", type=float, default=24.0, show_default=True,
              help="Destroy this many hours after the window ends (0-24).")
@click.option("--allow-rejects", is_flag=True,
              help="Build from the accepted images even if some are rejected (still listed).")
@click.option("--replace", is_flag=True, help="Replace a watchlist already at --out.")
@click.option("--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append a watchlist.create record to this audit log.")
@click.option("--audit-key", "audit_key", type=click.Path(dir_okay=False, path_type=Path),
              envvar="EDGE_AUDIT_SIGNING_KEY",
              help="Sign that record with this key (the node's audit.signing_key); needed "
                   "when the log is signed.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Node config (models to use).")
@policy_options
@scoring_options
@key_options
def create_cmd(images_dir: Path, csv_path: Path, deployment_id: str, officer: str, start: str, end: str,
               out: Path, auto_destroy_hours: float, allow_rejects: bool, replace: bool,
               audit_path: Path | None, audit_key: Path | None, config: Path | None,
               min_face_px: float, min_sharpness: float,
               max_yaw: float, max_pitch: float, cohort_dir: Path | None, fusion_stats: Path | None,
               background: Path | None, key_file: Path | None, passphrase_env: str | None) -> None:
    """Create a deployment watchlist from reference images and a CSV.

    Every image is checked: readable, exactly one face, large, sharp and frontal enough.
    Rejected images are listed with the reason. If any image is rejected, a subject is left
    without an accepted image, or the CSV has errors, nothing is written (an existing list
    at --out is left as it was) unless --allow-rejects. Several rows per subject give
    several reference images (separate index entries, one subject).

    \b
    Example:
      edge watchlist create --images photos/ --csv subjects.csv \\
        --deployment-id OP-2025-014 --officer "Supt. A. Example" \\
        --start 2025-06-01T08:00 --end 2025-06-01T20:00 \\
        -o /var/lib/edge/watchlist --key-file /etc/edge/keys/op-2025-014.key
    """
    policy = _policy(min_face_px, min_sharpness, max_yaw, max_pitch)
    meta = lifecycle.make_meta(deployment_id, officer, lifecycle.parse_time(start, "--start"),
                           lifecycle.parse_time(end, "--end"), auto_destroy_hours)
    _refuse_existing(out, replace)
    key = _early_key(out, key_file, passphrase_env)
    try:
        subjects, rows = enrol.read_csv(csv_path, images_dir)
    except enrol.EnrolmentError as exc:
        for p in exc.problems:
            click.echo(f"  {p}", err=True)
        raise
    cfg, engine = _engine(config)
    meta.model, meta.model_sha256 = lifecycle.model_identity(cfg)
    click.echo(f"checking {len(rows)} image(s) of {len(subjects)} subject(s)", err=True)
    fuse = _list_fixers(cfg, engine, fusion_stats, background, cohort_dir)
    result, key = _enrol_and_save(engine, subjects, rows, policy, meta, allow_rejects, out, key, key_file,
                                  passphrase_env, fuse)
    wl = result.watchlist
    info = vault.read_meta(out, key)
    s = wl.stats()
    _audit(audit_path, audit_key, "watchlist.create", {
        "deployment_id": meta.deployment_id, "authorising_officer": meta.authorising_officer,
        "window_start": lifecycle.fmt_time(meta.window_start),
        "window_end": lifecycle.fmt_time(meta.window_end),
        "auto_destroy_hours": meta.auto_destroy_hours, "subjects": s["subjects"], "entries": s["entries"],
        "rejected_images": len(result.rejected), "subjects_left_out": len(result.not_enrolled),
        "model": meta.model, "model_sha256": meta.model_sha256, "index_type": s["index_type"],
        "fusion": s["fusion"],
        "normalisation": s["normalisation"], "vault_id": info["vault_id"], "key": key.kind,
        "path": str(out.resolve()),
    })
    click.echo(f"watchlist written to {out}: {s['subjects']} subject(s), {s['entries']} reference image(s), "
               f"index {s['index_type']}")
    click.echo(f"deployment {meta.deployment_id}, authorised by {meta.authorising_officer}; window "
               f"{lifecycle.fmt_time(meta.window_start)} to {lifecycle.fmt_time(meta.window_end)}; "
               f"destroyed by "
               f"{lifecycle.fmt_time(lifecycle.destroy_deadline(wl.public_meta()))}")


@watchlist.command("build")
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Watchlist folder to write.")
@click.option("--deployment-id", default="dev", show_default=True, help="Label for the list.")
@click.option("--replace", is_flag=True, help="Replace a watchlist already at --out.")
@click.option("--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append a watchlist.create record to this audit log.")
@click.option("--audit-key", "audit_key", type=click.Path(dir_okay=False, path_type=Path),
              envvar="EDGE_AUDIT_SIGNING_KEY",
              help="Sign that record with this key (the node's audit.signing_key); needed "
                   "when the log is signed.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Node config (models to use).")
@policy_options
@scoring_options
@key_options
def build_cmd(images_dir: Path, out: Path, deployment_id: str, replace: bool,
              audit_path: Path | None, audit_key: Path | None,
              config: Path | None, min_face_px: float, min_sharpness: float, max_yaw: float,
              max_pitch: float, cohort_dir: Path | None, fusion_stats: Path | None,
              background: Path | None, key_file: Path | None, passphrase_env: str | None) -> None:
    """Build a development watchlist from IMAGES_DIR with one sub-folder per subject.

    The folder name is the subject id and display name; every image in it becomes a
    reference image after the same checks as `create`. Rejected images are listed and
    skipped. The list has no deployment window: use `edge watchlist create` for a
    deployment.

    \b
    Example:
      edge watchlist build photos/ -o wl/ --key-file ~/.config/edge/dev.key
    """
    policy = _policy(min_face_px, min_sharpness, max_yaw, max_pitch)
    _refuse_existing(out, replace)
    key = _early_key(out, key_file, passphrase_env)
    try:
        subjects, rows = enrol.scan_folder(images_dir)
    except enrol.EnrolmentError as exc:
        for p in exc.problems:
            click.echo(f"  {p}", err=True)
        raise
    cfg, engine = _engine(config)
    meta = enrol.WatchlistMeta(deployment_id=deployment_id, index_type="auto")
    meta.model, meta.model_sha256 = lifecycle.model_identity(cfg)
    click.echo(f"building from {len(rows)} image(s) of {len(subjects)} subject(s)", err=True)
    fuse = _list_fixers(cfg, engine, fusion_stats, background, cohort_dir)
    result, key = _enrol_and_save(engine, subjects, rows, policy, meta, True, out, key, key_file,
                                  passphrase_env, fuse)
    wl = result.watchlist
    s = wl.stats()
    _audit(audit_path, audit_key, "watchlist.create", {
        "deployment_id": deployment_id, "development": True, "subjects": s["subjects"],
        "entries": s["entries"], "rejected_images": len(result.rejected), "model": meta.model,
        "model_sha256": meta.model_sha256, "index_type": s["index_type"], "fusion": s["fusion"],
        "normalisation": s["normalisation"],
        "vault_id": vault.read_meta(out, key)["vault_id"], "key": key.kind, "path": str(out.resolve()),
    })
    click.echo(f"watchlist written to {out}: {s['subjects']} subject(s), {s['entries']} reference image(s), "
               f"index {s['index_type']}")
    click.echo("warning: development list without a deployment window; production lists need "
               "`edge watchlist create` with --start/--end and an authorising officer", err=True)


@watchlist.command("show")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@key_options
def show_cmd(directory: Path, as_json: bool, key_file: Path | None, passphrase_env: str | None) -> None:
    """List a watchlist's subjects and metadata (decrypted in memory only; no images written).

    An expired list is still shown (marked EXPIRED) so it can be reviewed until it is
    destroyed; the node itself refuses it.
    """
    key = key_from_options(directory, key_file, passphrase_env)
    wl = Watchlist.load(directory, key)
    m = wl.meta
    now = time.time()
    counts: dict[str, int] = {}
    for e in wl.entries:
        counts[e.subject_id] = counts.get(e.subject_id, 0) + 1
    status = _status(m, now)
    if as_json:
        click.echo(json.dumps({
            "path": str(directory), "status": status.split(" (")[0],
            "meta": {k: getattr(m, k) for k in m.__dataclass_fields__},
            "destroy_deadline": lifecycle.destroy_deadline(wl.public_meta()),
            "subjects": [dict(vars(s), images=counts.get(s.subject_id, 0)) for s in wl.subjects.values()],
            "entries": len(wl), "reference_images": len(wl.references),
        }, indent=1))
        return
    click.echo(f"watchlist   {directory}")
    click.echo(f"deployment  {m.deployment_id}" + (f"   authorised by {m.authorising_officer}"
                                                  if m.authorising_officer else ""))
    if m.window_end:
        click.echo(f"window      {lifecycle.fmt_time(m.window_start)} to {lifecycle.fmt_time(m.window_end)}; "
                   f"auto-destroy {m.auto_destroy_hours:g} h after")
    click.echo(f"status      {status}")
    click.echo(f"created     {lifecycle.fmt_time(m.created_at)}")
    sha = f" (sha256 {m.model_sha256[:16]}...)" if m.model_sha256 else ""
    click.echo(f"model       {m.model or '?'}{sha}")
    for f in wl.fusion:
        click.echo(f"  fused     {f.name} weight {f.weight:g}, impostor mean {f.impostor_mean:.4f} "
                   f"sd {f.impostor_std:.4f} ({f.source})")
    if wl.cohort is not None:
        n = wl.cohort.summary()
        click.echo(f"scores      normalised by {n['clusters']} cohort clusters at FMR {n['fmr']:g} "
                   f"({n['cohort_size']} consented faces; {n['source']})")
    click.echo(f"entries     {len(wl)} reference image(s), {len(wl.subjects)} subject(s), "
               f"index {m.index_type}")
    click.echo("")
    rows = [[s.subject_id, s.display_name, s.category, str(counts.get(s.subject_id, 0)), s.image_source,
             s.date_added] for s in sorted(wl.subjects.values(), key=lambda s: s.subject_id)]
    click.echo(_table(rows, ["subject_id", "display_name", "category", "images", "image_source",
                             "date_added"]))


@watchlist.command("stats")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@key_options
def stats_cmd(directory: Path, as_json: bool, key_file: Path | None, passphrase_env: str | None) -> None:
    """Entries, subjects, index type and memory of a watchlist.

    Without a key only what the public header says is shown (entries, stored sizes).
    """
    has_key = key_file is not None or bool(passphrase_env) or passphrase_prompted()
    if has_key:
        wl = Watchlist.load(directory, key_from_options(directory, key_file, passphrase_env))
        s = wl.stats()
        emb_bytes = int(wl.embeddings.nbytes)
        ref_bytes = sum(len(v) for v in wl.references.values())
        total = s["index_bytes"] + emb_bytes + ref_bytes
        s.update({"embeddings_bytes": emb_bytes, "reference_bytes": ref_bytes, "memory_bytes": total,
                  "index_bytes_per_entry": s["index_bytes"] / max(len(wl), 1),
                  "memory_bytes_per_entry": total / max(len(wl), 1), "authenticated": True})
    else:
        info = vault.read_meta(directory)
        sizes = info["sizes"]
        n = int(info["meta"].get("entries", 0))
        total = sum(sizes.values())
        s = {"deployment_id": info["meta"].get("deployment_id"), "entries": n, "subjects": None,
             "index_type": None, "index_bytes": sizes.get("index"), "memory_bytes": total,
             "memory_bytes_per_entry": total / max(n, 1), "authenticated": False}
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    for k, v in s.items():
        if isinstance(v, float):
            v = f"{v:,.1f}"
        elif isinstance(v, int) and not isinstance(v, bool):
            v = f"{v:,}"
        click.echo(f"{k:24s} {'(needs the key)' if v is None else v}")


def _destroy(directory: Path, key_file: Path | None) -> tuple[int, int]:
    files = [p for p in directory.rglob("*") if p.is_file()]
    nbytes = sum(p.stat().st_size for p in files)
    vault.destroy_vault(directory, key_file)
    return len(files), nbytes


@watchlist.command("destroy")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Destroy even if the key cannot open the list (lost passphrase, tampered header).")
@click.option("--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append a watchlist.destroy record to this audit log.")
@click.option("--audit-key", "audit_key", type=click.Path(dir_okay=False, path_type=Path),
              envvar="EDGE_AUDIT_SIGNING_KEY",
              help="Sign that record with this key (the node's audit.signing_key); needed "
                   "when the log is signed.")
@key_options
def destroy_cmd(directory: Path, yes: bool, force: bool, audit_path: Path | None,
                audit_key: Path | None, key_file: Path | None,
                passphrase_env: str | None) -> None:
    """Crypto-shred a watchlist: its key file and every file are overwritten and removed.

    The key is checked against the list first (so an unrelated key file is never shredded)
    unless --force. A passphrase-locked list is gone once nobody keeps the passphrase.
    """
    if not (directory / vault.HEADER_FILE).is_file():
        raise WatchlistError(f"not a watchlist: {directory}")
    if key_file is not None:
        check_key_location(directory, key_file)
    dep = "?"
    vault_id = "?"
    if not force:
        key = key_from_options(directory, key_file, passphrase_env)
        info = vault.read_meta(directory, key)
        dep, vault_id = info["meta"].get("deployment_id", "?"), info["vault_id"]
    else:
        try:
            info = vault.read_meta(directory)
            dep, vault_id = info["meta"].get("deployment_id", "?"), info["vault_id"]
        except WatchlistError:
            pass
    if not yes:
        what = f" and key file {key_file}" if key_file else ""
        click.confirm(f"Destroy watchlist {directory} (deployment {dep}){what}? This cannot be undone",
                      abort=True, err=True)
    n, nbytes = _destroy(directory, key_file)
    _audit(audit_path, audit_key, "watchlist.destroy", {
        "deployment_id": dep, "vault_id": vault_id, "reason": "manual",
                                             "files": n, "key_file_shredded": key_file is not None,
                                             "path": str(directory.resolve())})
    click.echo(f"destroyed watchlist {directory} (deployment {dep}): {n} file(s), {nbytes:,} bytes "
               "overwritten and removed")
    if key_file is not None:
        click.echo(f"destroyed key file {key_file}")
    else:
        click.echo("no key file: the list was locked with a passphrase; it is unrecoverable once nobody "
                   "keeps that passphrase")


@watchlist.command("destroy-expired")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append a watchlist.destroy record to this audit log when it destroys.")
@click.option("--audit-key", "audit_key", type=click.Path(dir_okay=False, path_type=Path),
              envvar="EDGE_AUDIT_SIGNING_KEY",
              help="Sign that record with this key (the node's audit.signing_key); needed "
                   "when the log is signed.")
@key_options
def destroy_expired_cmd(directory: Path, audit_path: Path | None, audit_key: Path | None,
                        key_file: Path | None,
                        passphrase_env: str | None) -> None:
    """Destroy the list if its window ended more than auto-destroy hours ago (max 24 h).

    For a cron job or systemd timer; exits 0 whether or not there was anything to do.
    """

    if not (directory / vault.HEADER_FILE).is_file():
        click.echo(f"no watchlist at {directory}; nothing to do")
        return
    key = None
    if key_file is None and (passphrase_env or passphrase_prompted()):
        key = key_from_options(directory, None, passphrase_env)
    elif key_file is not None:
        check_key_location(directory, key_file)
    info = vault.read_meta(directory)
    files = sum(1 for p in directory.rglob("*") if p.is_file())
    if lifecycle.destroy_if_due(directory, key_file, time.time(), key=key):
        dep = info["meta"].get("deployment_id", "?")
        _audit(audit_path, audit_key, "watchlist.destroy", {
            "deployment_id": dep, "vault_id": info["vault_id"],
                                                 "reason": "auto", "files": files,
                                                 "key_file_shredded": key_file is not None,
                                                 "path": str(directory.resolve())})
        click.echo(f"destroyed watchlist {directory} (deployment {dep}): past its destroy deadline"
                   + (f"; key file {key_file} destroyed" if key_file else ""))
        return
    deadline = lifecycle.destroy_deadline(info["meta"])
    if deadline is None:
        click.echo(f"{directory} is a development list without a window; not destroyed")
    else:
        click.echo(f"{directory} is not due yet: destroy deadline {lifecycle.fmt_time(deadline)}")
