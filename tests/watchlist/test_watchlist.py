"""Watchlist governance: encryption, tampering, window, and the `edge watchlist` CLI.

Real photos (faces cut out of insightface's t1.jpg), real models, real files on disk; the
CLI runs as a user would run it (subprocess).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EDGE

from edge.audit import read_records, verify
from edge.errors import WatchlistError
from edge.watchlist import enrol, lifecycle, vault
from edge.watchlist.index import Watchlist, WatchlistMeta, build_index

PASS_ENV = "EDGE_TEST_WL_PASSPHRASE"


@pytest.fixture(scope="module")
def photos(engine, sample_images, tmp_path_factory) -> Path:
    """A folder per person (p0, p2, p3) cut from t1.jpg, plus a group photo and a bad file."""
    root = tmp_path_factory.mktemp("photos")
    t1 = cv2.imread(str(sample_images / "t1.jpg"))
    faces = sorted(engine.faces(t1), key=lambda f: float(f.bbox[0]))
    for i in (0, 2, 3):
        x, y, w, h = (float(v) for v in faces[i].bbox)
        x0, y0 = int(max(0, x - 0.35 * w)), int(max(0, y - 0.35 * h))
        x1, y1 = int(min(t1.shape[1], x + 1.35 * w)), int(min(t1.shape[0], y + 1.35 * h))
        (root / f"p{i}").mkdir()
        crop = t1[y0:y1, x0:x1]
        cv2.imwrite(str(root / f"p{i}" / "a.png"), crop)
        cv2.imwrite(str(root / f"p{i}" / "b.jpg"), cv2.resize(crop, None, fx=1.3, fy=1.3))
    (root / "extra").mkdir()
    (root / "extra" / "group.jpg").write_bytes((sample_images / "t1.jpg").read_bytes())
    (root / "extra" / "broken.jpg").write_bytes(b"not an image at all")
    return root


def run_edge(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, **(env or {}))
    return subprocess.run([*EDGE, "watchlist", *map(str, args)], capture_output=True, text=True,
                          env=e, input=input, timeout=180)


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "display_name", "category", "image", "image_source", "date_added"])
        w.writerows(rows)
    return path


def good_rows() -> list[list[str]]:
    return [
        ["S001", "Person Zero", "robbery", "p0/a.png", "custody 2024/1", "2024-05-01"],
        ["S001", "Person Zero", "robbery", "p0/b.jpg", "custody 2024/2", "2024-05-02"],
        ["S002", "Person Two", "fraud", "p2/a.png", "custody 2024/3", "2024-05-03"],
    ]


def tree_digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def small_list(engine, photos: Path, meta: WatchlistMeta) -> Watchlist:
    chk = enrol.check_image(engine, photos / "p0" / "a.png", enrol.EnrolPolicy())
    assert chk.ok, chk.reason
    sid = "SUBJ-7f3a9c"
    subject = enrol.Subject(sid, "Unique Person Name", "c", "src", "2024-01-01")
    return enrol.assemble([(sid, chk)], {sid: subject}, meta)


# ----------------------------------------------------------------------------- at rest


def test_wrong_key_and_tampering_are_refused(engine, photos, tmp_path):
    wl = small_list(engine, photos, WatchlistMeta(deployment_id="OP-T", index_type="auto"))
    key = vault.create_key_file(tmp_path / "k.key")
    d = tmp_path / "wl"
    wl.save(d, key)
    # nothing readable in the clear: no subject id or name in any file
    for p in d.iterdir():
        assert b"Unique Person" not in p.read_bytes() and b"SUBJ-7f3a9c" not in p.read_bytes()
    other = vault.create_key_file(tmp_path / "other.key")
    with pytest.raises(WatchlistError, match="wrong key"):
        Watchlist.load(d, other)
    with pytest.raises(WatchlistError, match="key file, not a passphrase"):
        Watchlist.load(d, vault.VaultKey.from_passphrase("a long enough passphrase"))
    original = {p.name: p.read_bytes() for p in d.iterdir()}
    for name in ("index.enc", "metadata.enc", "ref-000000.enc"):
        raw = bytearray(original[name])
        raw[len(raw) // 2] ^= 0x01
        (d / name).write_bytes(bytes(raw))
        with pytest.raises(WatchlistError, match="tampered"):
            Watchlist.load(d, key)
        (d / name).write_bytes(original[name])
        (d / name).write_bytes(original[name][:-10])
        with pytest.raises(WatchlistError, match="truncated"):
            Watchlist.load(d, key)
        (d / name).write_bytes(original[name])
    # editing the public header (e.g. stretching the window) breaks its MAC
    header = json.loads(original["vault.json"])
    header["meta"]["window_end"] = 9e9
    (d / "vault.json").write_text(json.dumps(header))
    with pytest.raises(WatchlistError, match="tampered"):
        Watchlist.load(d, key)
    (d / "vault.json").write_bytes(original["vault.json"])
    assert len(Watchlist.load(d, key)) == 1


def test_passphrase_lists_and_key_location(engine, photos, tmp_path):
    wl = small_list(engine, photos, WatchlistMeta(deployment_id="OP-P", index_type="auto"))
    pw = "correct horse battery staple"
    wl.save(tmp_path / "wl", vault.VaultKey.from_passphrase(pw))
    assert len(Watchlist.load(tmp_path / "wl", vault.VaultKey.from_passphrase(pw))) == 1
    with pytest.raises(WatchlistError, match="wrong key"):
        Watchlist.load(tmp_path / "wl", vault.VaultKey.from_passphrase("incorrect horse battery staple"))
    from edge.commands.options import check_key_location

    with pytest.raises(WatchlistError, match="inside the watchlist folder"):
        check_key_location(tmp_path / "wl", tmp_path / "wl" / "sub" / "k.key")
    check_key_location(tmp_path / "wl", tmp_path / "elsewhere.key")


def test_window_is_enforced(engine, photos):
    now = time.time()
    wl = small_list(engine, photos, lifecycle.make_meta("OP-W", "Insp. X", now + 3600, now + 7200, now=now))
    with pytest.raises(WatchlistError, match="not valid yet"):
        wl.check_window(now)
    wl.check_window(now + 3600)
    with pytest.raises(WatchlistError, match="expired"):
        wl.check_window(now + 7200)
    assert not wl.in_window(now + 7200)


def test_hnsw_list_round_trips(tmp_path):
    """A forced HNSW index survives encryption and answers like the exact one here."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((600, 128)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    entries = [enrol.Entry(f"r{i:05d}", "s", "x") for i in range(600)]
    wl = Watchlist(WatchlistMeta(index_type="hnsw"), {"s": enrol.Subject("s", "s")}, entries, emb)
    key = vault.create_key_file(tmp_path / "k.key")
    wl.save(tmp_path / "wl", key)
    back = Watchlist.load(tmp_path / "wl", key)
    assert back.meta.index_type == "hnsw"
    sims, ids = np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int64)
    exact = build_index(emb, "flat")
    hits = 0
    for i in range(50):
        q = emb[i:i + 1] + 0.05 * rng.standard_normal((1, 128)).astype(np.float32)
        back.search(q, sims, ids)
        hits += int(ids[0, 0]) == int(exact.search(q, 1)[1][0, 0])
    assert hits >= 48


# ----------------------------------------------------------------------------- CLI


def test_cli_build_show_stats(photos, tmp_path):
    wl, key = tmp_path / "wl", tmp_path / "keys" / "dev.key"
    r = run_edge("build", photos, "-o", wl, "--key-file", key)
    assert r.returncode == 0, r.stderr
    assert f"created key file {key}" in r.stderr
    assert (key.stat().st_mode & 0o777) == 0o600
    assert "group.jpg: 6 faces found" in r.stderr and "broken.jpg: unreadable" in r.stderr
    assert "subject extra left out" in r.stderr
    assert "production lists need `edge watchlist create`" in r.stderr
    assert "3 subject(s), 6 reference image(s), index flat" in r.stdout
    r = run_edge("show", wl, "--key-file", key)
    assert r.returncode == 0, r.stderr
    assert "DEVELOPMENT LIST" in r.stdout
    for s in ("p0", "p2", "p3"):
        assert f"\n{s} " in r.stdout
    r = run_edge("stats", wl, "--key-file", key, "--json")
    s = json.loads(r.stdout)
    assert (s["entries"], s["subjects"], s["index_type"]) == (6, 3, "flat")
    assert s["index_bytes_per_entry"] >= 512 and s["memory_bytes"] > s["index_bytes"]
    r = run_edge("stats", wl)  # no key: only the public header
    assert r.returncode == 0 and "(needs the key)" in r.stdout
    # a key inside the list is refused; a missing key is not silently created for show
    r = run_edge("build", photos, "-o", tmp_path / "wl2", "--key-file", tmp_path / "wl2" / "k.key")
    assert r.returncode == 2 and "inside the watchlist folder" in r.stderr
    assert not (tmp_path / "wl2").exists()
    r = run_edge("show", wl, "--key-file", tmp_path / "nope.key")
    assert r.returncode == 2 and "not found" in r.stderr and not (tmp_path / "nope.key").exists()


def test_cli_create_and_failed_create_leaves_list_intact(photos, tmp_path):
    csv_ok = write_csv(tmp_path / "ok.csv", good_rows())
    wl, key, audit = tmp_path / "wl", tmp_path / "keys" / "op.key", tmp_path / "audit.jsonl"
    base = ["--images", photos, "--deployment-id", "OP-2025-7", "--officer", "Supt. Example",
            "--start", "2020-01-01T00:00Z", "--end", "2099-01-01T00:00Z", "--key-file", key]
    r = run_edge("create", *base, "--csv", csv_ok, "-o", wl, "--audit", audit, "--auto-destroy-hours", "6")
    assert r.returncode == 0, r.stderr
    assert "2 subject(s), 3 reference image(s)" in r.stdout
    rec = read_records(audit)
    assert verify(audit).ok and [x["kind"] for x in rec] == ["watchlist.create"]
    d = rec[0]["data"]
    assert d["deployment_id"] == "OP-2025-7" and d["authorising_officer"] == "Supt. Example"
    assert d["entries"] == 3 and d["model"] == "sface_2021dec" and d["auto_destroy_hours"] == 6
    assert "Person" not in audit.read_text()  # counts, not names
    r = run_edge("show", wl, "--key-file", key, "--json")
    shown = json.loads(r.stdout)
    assert shown["status"] == "ACTIVE" and shown["meta"]["authorising_officer"] == "Supt. Example"
    assert shown["meta"]["model_sha256"].startswith("0ba9fbfa")
    s1 = next(s for s in shown["subjects"] if s["subject_id"] == "S001")
    assert s1["images"] == 2 and s1["image_source"] == "custody 2024/1; custody 2024/2"
    before, key_before = tree_digest(wl), key.read_bytes()

    # a create with a rejected image fails and leaves the existing list and key alone
    bad = write_csv(tmp_path / "bad.csv", good_rows() + [["S003", "Group", "x", "extra/group.jpg", "s",
                                                           "2024-01-01"]])
    r = run_edge("create", *base, "--csv", bad, "-o", wl, "--replace")
    assert r.returncode == 2
    assert "line 5: extra/group.jpg: 6 faces found" in r.stderr and "nothing was written" in r.stderr
    assert tree_digest(wl) == before and key.read_bytes() == key_before
    # CSV errors stop before any image is read, and name the line
    bad2 = write_csv(tmp_path / "bad2.csv", good_rows() + [["S002", "Someone Else", "fraud", "p3/a.png", "s",
                                                            "2024-01-01"], ["S004", "X", "y", "nope.png",
                                                                            "s", "2024-01-01"]])
    r = run_edge("create", *base, "--csv", bad2, "-o", wl, "--replace")
    assert r.returncode == 2 and "duplicate subject_id S002" in r.stderr
    assert "line 6: image file not found" in r.stderr
    assert tree_digest(wl) == before
    # an existing list is not replaced without --replace; a failed create makes no key file
    r = run_edge("create", *base, "--csv", csv_ok, "-o", wl)
    assert r.returncode == 2 and "already holds a watchlist" in r.stderr
    new_key = tmp_path / "keys" / "new.key"
    r = run_edge("create", *base[:-1], str(new_key), "--csv", bad, "-o", tmp_path / "wl-new")
    assert r.returncode == 2 and not (tmp_path / "wl-new").exists() and not new_key.exists()
    # --allow-rejects builds from the accepted images and still lists the rejects
    r = run_edge("create", *base, "--csv", bad, "-o", wl, "--replace", "--allow-rejects")
    assert r.returncode == 0 and "group.jpg: 6 faces found" in r.stderr and "S003 left out" in r.stderr
    # auto-destroy beyond 24 h is refused
    r = run_edge("create", *base, "--csv", csv_ok, "-o", tmp_path / "x", "--auto-destroy-hours", "48")
    assert r.returncode == 2 and "0-24 hours" in r.stderr


def test_cli_passphrase(photos, tmp_path):
    csv_ok = write_csv(tmp_path / "ok.csv", good_rows()[:1])
    args = ["--images", photos, "--csv", csv_ok, "--deployment-id", "OP-P", "--officer", "Insp. P",
            "--start", "2020-01-01", "--end", "2099-01-01", "-o", tmp_path / "wl",
            "--passphrase-env", PASS_ENV]
    r = run_edge("create", *args, env={PASS_ENV: "short"})
    assert r.returncode == 2 and "too short" in r.stderr
    r = run_edge("create", *args, env={PASS_ENV: "a passphrase that is long enough"})
    assert r.returncode == 0, r.stderr
    r = run_edge("show", tmp_path / "wl", "--passphrase-env", PASS_ENV,
                 env={PASS_ENV: "a passphrase that is long enough"})
    assert r.returncode == 0 and "S001" in r.stdout
    r = run_edge("show", tmp_path / "wl", "--passphrase-env", PASS_ENV, env={PASS_ENV: "wrong passphrase!!"})
    assert r.returncode == 2 and "wrong key" in r.stderr
    r = run_edge("show", tmp_path / "wl", "--passphrase-env", "EDGE_TEST_UNSET_VAR")
    assert r.returncode == 2 and "EDGE_TEST_UNSET_VAR is not set" in r.stderr


def test_cli_destroy(engine, photos, tmp_path):
    wl = small_list(engine, photos, WatchlistMeta(deployment_id="OP-D", index_type="auto"))
    key = vault.create_key_file(tmp_path / "k.key")
    other = vault.create_key_file(tmp_path / "other.key")
    d = tmp_path / "wl"
    wl.save(d, key)
    r = run_edge("destroy", d, "--key-file", tmp_path / "other.key", "--yes")
    assert r.returncode == 2 and "wrong key" in r.stderr
    assert d.exists() and (tmp_path / "other.key").exists() and other.kind == "keyfile"
    r = run_edge("destroy", d, "--key-file", tmp_path / "k.key", input="n\n")
    assert r.returncode != 0 and d.exists() and (tmp_path / "k.key").exists()
    audit = tmp_path / "audit.jsonl"
    r = run_edge("destroy", d, "--key-file", tmp_path / "k.key", "--yes", "--audit", audit)
    assert r.returncode == 0, r.stderr
    assert "destroyed watchlist" in r.stdout and f"destroyed key file {tmp_path / 'k.key'}" in r.stdout
    assert not d.exists() and not (tmp_path / "k.key").exists()
    assert not list(tmp_path.glob(".wl.*"))
    assert read_records(audit)[0]["kind"] == "watchlist.destroy"


def test_cli_expired_list_is_shown_then_destroyed(engine, photos, tmp_path):
    """Show still lists an expired list (for review) and says so; destroy-expired removes it
    once window end + auto-destroy hours has passed."""
    now = time.time()
    meta = WatchlistMeta(deployment_id="OP-OLD", authorising_officer="Insp. X", window_start=now - 3 * 86400,
                         window_end=now - 2 * 3600, auto_destroy_hours=6, index_type="auto")
    wl = small_list(engine, photos, meta)
    key = vault.create_key_file(tmp_path / "k.key")
    wl.save(tmp_path / "wl", key)
    with pytest.raises(WatchlistError, match="expired"):
        Watchlist.load(tmp_path / "wl", key).check_window()
    r = run_edge("show", tmp_path / "wl", "--key-file", tmp_path / "k.key")
    assert r.returncode == 0 and "EXPIRED (the node refuses it" in r.stdout
    r = run_edge("destroy-expired", tmp_path / "wl", "--key-file", tmp_path / "k.key")
    assert r.returncode == 0 and "not due yet" in r.stdout and (tmp_path / "wl").exists()

    meta.window_end = now - 7 * 3600  # now past end + 6 h
    wl.save(tmp_path / "wl", key)
    r = run_edge("show", tmp_path / "wl", "--key-file", tmp_path / "k.key")
    assert "DUE FOR DESTRUCTION" in r.stdout
    r = run_edge("destroy-expired", tmp_path / "wl", "--key-file", tmp_path / "k.key")
    assert r.returncode == 0 and "destroyed watchlist" in r.stdout
    assert not (tmp_path / "wl").exists() and not (tmp_path / "k.key").exists()
    r = run_edge("destroy-expired", tmp_path / "wl", "--key-file", tmp_path / "k.key")
    assert r.returncode == 0 and "nothing to do" in r.stdout
