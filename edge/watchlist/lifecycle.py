"""A watchlist's life: its deployment window, the model it was made with, its destruction.

A list is made for one deployment, is valid only inside its window, is refused by a node
running another recogniser, and is crypto-shredded at most 24 h after its window closes.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

from edge.config import Config
from edge.errors import WatchlistError
from edge.face import model_files as models
from edge.watchlist import vault
from edge.watchlist.fusion import ModelStats
from edge.watchlist.index import Watchlist, WatchlistMeta

log = logging.getLogger(__name__)

MAX_AUTO_DESTROY_HOURS = 24.0


def parse_time(text: str, what: str) -> float:
    """ISO 8601 date/time to unix time; without a zone it is the machine's local time."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WatchlistError(
            f"{what} {text!r} is not an ISO date/time (e.g. 2025-06-01T08:00+01:00)") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return dt.timestamp()


def fmt_time(ts: float | None) -> str:
    """A unix time for people; ``None`` (a development list has no deadline) is "never"."""
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def member_identities(cfg: Config) -> list[tuple[str, str]]:
    """(name, sha256) of every configured recogniser, the primary first."""
    out = []
    specs = None
    for m in cfg.recognizer.members():
        sha = m.sha256
        if not sha:
            specs = specs or models.load_manifest()
            spec = specs.get(m.model)
            if spec is None:
                raise WatchlistError(f"recogniser {m.model} is not in the model manifest "
                                     "and has no sha256 in the config")
            sha = spec.sha256
        out.append((display_name(m.model), sha))
    return out


def display_name(model: str) -> str:
    """A manifest name as it is; a user's file by its stem (paths differ between machines)."""
    return Path(model).stem if ("/" in model or model.endswith(".onnx")) else model


def model_identity(cfg: Config) -> tuple[str, str]:
    """(recogniser name, sha256) that embeddings in a watchlist were made with; for a fused
    configuration the names joined by "+" and the primary's sha256 (each model's own is in
    the list's fusion table)."""
    ids = member_identities(cfg)
    return "+".join(n for n, _ in ids), ids[0][1]


def fusion_models(cfg: Config, dims: list[int]) -> list[ModelStats]:
    """The configured recognisers as fusion entries (weights from the config, no statistics yet)."""
    ids = member_identities(cfg)
    return [ModelStats(name, sha, d, m.weight) for (name, sha), d, m
            in zip(ids, dims, cfg.recognizer.members(), strict=True)]


def check_model(wl: Watchlist, cfg: Config) -> None:
    """Refuse a watchlist made with other recognisers: its embeddings would be meaningless."""
    ids = member_identities(cfg)
    name, sha = model_identity(cfg)
    check_normalisation(wl, cfg)
    if wl.fusion:
        have = [m.sha256 for m in wl.fusion]
        if have != [s for _, s in ids]:
            raise WatchlistError(
                f"watchlist {wl.meta.deployment_id} was made with recognisers "
                f"{' + '.join(m.name for m in wl.fusion)}, this node runs {name}")
        return
    if len(ids) > 1:
        raise WatchlistError(
            f"watchlist {wl.meta.deployment_id} was made with one recogniser ({wl.meta.model or '?'}), "
            f"this node fuses {name}: create the list again with this configuration")
    if wl.meta.model_sha256 and wl.meta.model_sha256 != sha:
        raise WatchlistError(
            f"watchlist {wl.meta.deployment_id} was made with recogniser {wl.meta.model} "
            f"(sha256 {wl.meta.model_sha256[:12]}...), this node runs {name} ({sha[:12]}...)")


def check_normalisation(wl: Watchlist, cfg: Config) -> None:
    """Refuse a list whose scores are normalised differently from the config's [match]: the
    threshold means something else on the other scale."""
    want = cfg.match.score_normalisation
    has = "cohort-clusters" if wl.cohort is not None else "off"
    if want == has:
        return
    if has == "off":
        raise WatchlistError(
            f"match.score_normalisation is {want} but watchlist {wl.meta.deployment_id} was built "
            "without a cohort: create it again with --cohort DIR")
    raise WatchlistError(
        f"watchlist {wl.meta.deployment_id} normalises scores by cohort clusters but "
        "match.score_normalisation is off: set it to \"cohort-clusters\" (and a threshold "
        "calibrated for it) or create the list without --cohort")


def make_meta(deployment_id: str, officer: str, start: float, end: float,
              auto_destroy_hours: float = MAX_AUTO_DESTROY_HOURS, now: float | None = None) -> WatchlistMeta:
    """Validated deployment metadata for a production list."""
    now = time.time() if now is None else now
    if not deployment_id.strip() or len(deployment_id) > 128:
        raise WatchlistError("deployment id must be 1-128 characters")
    if not officer.strip() or len(officer) > 200:
        raise WatchlistError("authorising officer must be named (1-200 characters)")
    if end <= start:
        raise WatchlistError("deployment window end must be after its start")
    if end <= now:
        raise WatchlistError(f"deployment window already ended ({fmt_time(end)})")
    if not 0 <= auto_destroy_hours <= MAX_AUTO_DESTROY_HOURS:
        raise WatchlistError(
            f"auto-destroy must be 0-{MAX_AUTO_DESTROY_HOURS:.0f} hours after the window "
            f"(got {auto_destroy_hours:g})")
    return WatchlistMeta(deployment_id=deployment_id.strip(), authorising_officer=officer.strip(),
                         window_start=float(start), window_end=float(end), created_at=now,
                         index_type="auto", auto_destroy_hours=float(auto_destroy_hours))


def destroy_deadline(meta: dict) -> float | None:
    """When a list must be gone: window end + auto-destroy hours (capped at 24); None = dev list."""
    try:
        end = float(meta.get("window_end") or 0.0)
        hours = float(meta.get("auto_destroy_hours", MAX_AUTO_DESTROY_HOURS))
    except (TypeError, ValueError):
        raise WatchlistError("watchlist header has a malformed window") from None
    if end <= 0:
        return None
    hours = min(max(hours, 0.0), MAX_AUTO_DESTROY_HOURS)
    return end + hours * 3600.0


def destroy_if_due(directory: str | Path, key_file: str | Path | None, now: float | None = None,
                   key: vault.VaultKey | None = None) -> bool:
    """Crypto-shred the list (and its key file) once ``now`` >= its destroy deadline.

    With a key (from ``key_file`` or ``key``) the deadline is read from the authenticated
    header, so a tampered header cannot postpone destruction; a wrong key raises and
    destroys nothing. Without one (passphrase lists, or the key file already shredded by an
    interrupted destroy) the public header is used. Returns True when it destroyed.
    """
    d = Path(directory)
    if not (d / vault.HEADER_FILE).is_file():
        return False
    now = time.time() if now is None else now
    kf = Path(key_file) if key_file is not None else None
    if kf is not None and not kf.exists():
        kf = None  # an earlier destroy shredded the key and was interrupted: finish it
    elif kf is not None and key is None:
        key = vault.VaultKey.from_file(kf)
    info = vault.read_meta(d, key)
    deadline = destroy_deadline(info["meta"])
    if deadline is None or now < deadline:
        return False
    vault.destroy_vault(d, kf)
    log.info("watchlist %s destroyed: past its deadline %s", d, fmt_time(deadline))
    return True
