"""The child-process protocol: one measured system per fresh Python process.

Parent side, :func:`run_child`: start ``python -m edge.lab.bench.children``, write the
pickled :class:`~edge.lab.bench.jobs.ChildJob` to its stdin, read back the one line on its
stdout that starts with :data:`RESULT_MARK` (a JSON dict of counts and timings). Child side,
:func:`child_main`: the reverse. Progress bars go to stderr, so stdout carries only results.

Run this module only through :func:`run_child`.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.lab.bench.jobs import ChildJob
from edge.privacy import TEST_DISABLE_ENV

RESULT_MARK = "EDGE_BENCH_RESULT "
CHILD_MODULE = "edge.lab.bench.children"

Runner = Callable[[ChildJob], dict[str, Any]]


def runner_for(mode: str) -> Runner:
    """The function that measures ``mode`` (node | live | site | naive | face_recognition)."""
    # Imported per mode, not at the top: a child loads only the system it measures, so its
    # peak memory is that system's alone (the face_recognition peer never loads ONNX Runtime
    # or FAISS, the naive loop never loads the node).
    if mode in ("node", "live"):
        from edge.lab.bench.node_child import run_node_child

        return run_node_child
    if mode == "site":
        from edge.lab.bench.site_child import run_site_child

        return run_site_child
    if mode == "naive":
        from edge.lab.bench.peer_naive import run_naive_child

        return run_naive_child
    if mode == "face_recognition":
        from edge.lab.bench.peer_face_recognition import run_face_recognition_child

        return run_face_recognition_child
    raise ValueError(f"unknown benchmark mode {mode!r}")


def child_main() -> int:
    """Child side: read a pickled ChildJob from stdin, print one result line on stdout."""
    job: ChildJob = pickle.load(sys.stdin.buffer)
    try:
        result = runner_for(job.mode)(job)
    except EdgeError as exc:
        result = {"mode": job.mode, "label": job.label, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported in the result, never with data
        result = {"mode": job.mode, "label": job.label, "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def child_env(zeroize_off: bool = False, pythonpath: str | None = None) -> dict[str, str]:
    """The child's environment: the zeroization-off switch only when asked, and in the child only."""
    env = dict(os.environ)
    env.pop(TEST_DISABLE_ENV, None)
    if zeroize_off:
        env[TEST_DISABLE_ENV] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


def start_child(job: ChildJob, zeroize_off: bool = False, checkout: Path | None = None
                ) -> subprocess.Popen[bytes]:
    """Start one job in a fresh Python process; collect it with :func:`finish_child`.

    ``checkout``: run another copy of the code (an older revision, for before/after runs):
    the child starts there with only that copy on ``PYTHONPATH``, so ``import edge`` finds it
    before the installed one. The job is pickled by class name, so that copy's own
    ``ChildJob`` reads it (fields it lacks are carried along and ignored).
    """
    env = child_env(zeroize_off, None if checkout is None else str(checkout))
    proc = subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=None, env=env, cwd=None if checkout is None else str(checkout),
    )
    assert proc.stdin is not None
    try:
        # flushed, not closed: the child reads exactly one pickle, and communicate() in
        # finish_child closes the pipe (it cannot flush one closed here)
        proc.stdin.write(pickle.dumps(job))
        proc.stdin.flush()
    except BrokenPipeError:  # the child died at once; finish_child reports its exit code
        pass
    return proc


def finish_child(proc: subprocess.Popen[bytes], job: ChildJob, timeout: float | None = None
                 ) -> dict[str, Any]:
    """Wait for a child from :func:`start_child` and return its result dict."""
    assert proc.stdout is not None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"mode": job.mode, "label": job.label, "error": f"child process ran past {timeout} s"}
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK):])
            return result
    return {"mode": job.mode, "label": job.label,
            "error": f"child process exited with code {proc.returncode} and no result"}


def run_child(job: ChildJob, zeroize_off: bool = False, timeout: float | None = None,
              checkout: Path | None = None) -> dict[str, Any]:
    """Run one job in a fresh Python process and return its result dict.

    The zeroization-off switch is set only in the child's environment.
    """
    return finish_child(start_child(job, zeroize_off, checkout), job, timeout)


if __name__ == "__main__":
    sys.exit(child_main())
