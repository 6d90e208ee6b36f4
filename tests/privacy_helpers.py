"""Helpers for the deletion-guarantee tests: run a node as a subprocess, read its memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.config import load_config
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta

HOLD_MARK = "[edge] holding after end of source"

# eight or more numbers in a row: how an array printed into a log looks
FLOAT_RUN = re.compile(r"(-?\d+\.\d+(e-?\d+)?[\s,]+){8,}")


def save_watchlist(directory: Path, key_file: Path, emb_by_subject: dict[str, np.ndarray]) -> None:
    from edge.watchlist.vault import create_key_file

    key = create_key_file(key_file)
    subjects = {s: Subject(s, f"Subject {s}", "test") for s in emb_by_subject}
    entries = [Entry(f"{s}/1", s, "ref.jpg") for s in emb_by_subject]
    emb = np.stack([emb_by_subject[s] for s in emb_by_subject])
    Watchlist(WatchlistMeta(deployment_id="privacy-test"), subjects, entries, emb).save(directory, key)


def write_config(path: Path, zeroize: bool = True, endpoint: str = "tcp://127.0.0.1:1",
                 extra: str = "") -> Path:
    path.write_text(
        "[tracker]\nenabled = false\n"  # every face embedded every frame: deterministic batches
        "[quality]\nenabled = false\n"
        f"[privacy]\nzeroize = {'true' if zeroize else 'false'}\n"
        f"[alerts]\nendpoint = \"{endpoint}\"\nconsole = true\n" + extra
    )
    return path


@dataclass
class NodeProcess:
    proc: subprocess.Popen
    stdout: list[str] = field(default_factory=list)

    def wait_for(self, mark: str, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read()
                    raise AssertionError(f"node exited {self.proc.returncode}: {err[-2000:]}")
                continue
            self.stdout.append(line)
            if mark in line:
                return
        raise AssertionError(f"node did not print {mark!r} within {timeout}s")

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return "".join(self.stdout) + out, err


def start_node(cwd: Path, source: Path | None, wl: Path, key: Path, config: Path,
               zeroize_test_switch: bool = False, extra_args: list[str] | None = None) -> NodeProcess:
    """``edge run`` on ``source``, or (None) on the config's [[cameras]]."""
    env = dict(os.environ)
    env.pop("EDGE_TEST_DISABLE_ZEROIZE", None)
    if zeroize_test_switch:
        env["EDGE_TEST_DISABLE_ZEROIZE"] = "1"
    env["TMPDIR"] = str(cwd / "tmp")
    (cwd / "tmp").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "edge.cli", "-v", "run", "--watchlist",
           str(wl), "--key-file", str(key), "--config", str(config), "--hold-after-end"]
    if source is not None:
        cmd += ["--source", str(source)]
    proc = subprocess.Popen(cmd + (extra_args or []), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return NodeProcess(proc)


def reference_patterns(source: Path, frames_wanted: set[int] | None = None,
                       config: Path | None = None) -> dict[str, list[bytes]]:
    """Recompute what the node computed: aligned crops, raw and normalised embeddings.

    Uses the same stage classes and config as the node, one frame at a time with every
    face of a frame in one batch, exactly as the node does with the tracker and gates off.
    """
    from edge.face.align import Aligner
    from edge.face.registry import make_detector, make_embedder
    from edge.privacy import FaceBuffers

    cfg = load_config(config)
    det = make_detector(cfg.detector)
    emb = make_embedder(cfg.recognizer)
    align = Aligner(emb.input_size)
    bufs = FaceBuffers(cfg.detector.max_faces, emb.dim, lock=False)
    raw = np.zeros((cfg.detector.max_faces, emb.dim), np.float32)
    out: dict[str, list[bytes]] = {"crop": [], "embedding": [], "raw_embedding": []}
    cap = cv2.VideoCapture(str(source))
    idx = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if frames_wanted is None or idx in frames_wanted:
            n = det(img, bufs)
            align(img, bufs, list(range(n)))
            emb(bufs, n)
            for i in range(n):
                out["crop"].append(bufs.crops[i].tobytes())
                out["embedding"].append(bufs.emb[i].tobytes())
            # the raw (pre-normalisation) model output, in case a copy of it lingers
            if n:
                emb._fill_blob(bufs, n)
                res = emb.session.run([emb.output_name], {emb.input_name: bufs.blob[:n]})[0]
                raw[:n] = res
                out["raw_embedding"] += [raw[i].tobytes() for i in range(n)]
            bufs.zeroize()
        idx += 1
    cap.release()
    return out


def probes(pattern: bytes, kind: str) -> bytes:
    """A distinctive slice: a crop's middle rows (skip black borders), a whole embedding."""
    if kind == "crop":
        mid = len(pattern) // 2
        return pattern[mid - 2048: mid + 2048]
    return pattern


_MAP_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$")


def read_memory(pid: int) -> list[bytes]:
    """Readable, writable private memory of a process (heap, anonymous maps, stacks)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            m = _MAP_RE.match(line)
            if not m:
                continue
            start, end, perms, name = int(m[1], 16), int(m[2], 16), m[3], m[5]
            if perms[0] != "r" or perms[1] != "w" or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except OSError:
                continue
    return chunks


def scan(pid: int, patterns: dict[str, list[bytes]]) -> dict[str, int]:
    """How many of each kind of pattern occur anywhere in the process's memory."""
    memory = read_memory(pid)
    hits = {}
    for kind, pats in patterns.items():
        found = 0
        for p in pats:
            probe = probes(p, kind)
            if np.count_nonzero(np.frombuffer(probe, np.uint8)) < len(probe) // 2:
                continue  # too empty to be evidence of anything
            if not any(probe in chunk for chunk in memory):
                continue
            found += 1
        hits[kind] = found
    return hits
