"""Process hardening and locked buffers, checked against what the kernel reports."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge.hardening import (
    PAGE_SIZE,
    HardeningReport,
    alloc_locked,
    lock_buffer,
    locked_kib,
    secure_tmpdir,
)

pytestmark = pytest.mark.unit

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _run(code: str) -> dict:
    """Run code in a fresh interpreter (hardening is process-wide); it prints one JSON line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@linux_only
def test_harden_process_turns_off_core_dumps_and_dumpability() -> None:
    out = _run("""
        import ctypes, json, resource
        from edge.hardening import harden_process
        before = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)
        rep = harden_process()
        libc = ctypes.CDLL(None)
        print(json.dumps({
            "before": before,
            "core": resource.getrlimit(resource.RLIMIT_CORE),
            "dumpable": libc.prctl(3, 0, 0, 0, 0),
            "lines": rep.lines(),
            "steps": rep.to_dict(),
        }))
    """)
    assert out["before"] == 1, "a fresh interpreter should start dumpable"
    assert out["core"] == [0, 0]
    assert out["dumpable"] == 0
    assert out["steps"]["core dumps"].startswith("ok")
    assert out["steps"]["not dumpable"].startswith("ok")
    # every step is reported as one readable line, ok or with its reason
    assert len(out["lines"]) == len(out["steps"]) >= 3
    assert all(ln.startswith(("[ok]", "[FAILED]")) for ln in out["lines"])
    assert "memory lock" in out["steps"]


@linux_only
def test_core_file_is_not_written_on_crash(tmp_path: Path) -> None:
    """A hardened process that aborts leaves no core file in its working directory."""
    code = textwrap.dedent("""
        import os, resource
        from edge.hardening import harden_process
        harden_process(lock_memory=False)
        os.abort()
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          timeout=60)
    assert proc.returncode != 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("core")]


def test_alloc_locked_gives_zeroed_writable_page_aligned_arrays() -> None:
    for shape, dtype in [((1080, 1920, 3), np.uint8), ((32, 128), np.float32), (7, np.int64),
                         ((0, 5), np.float32)]:
        arr, _reason = alloc_locked(shape, dtype)
        assert arr.shape == (shape if isinstance(shape, tuple) else (shape,))
        assert arr.dtype == np.dtype(dtype)
        assert arr.ctypes.data % PAGE_SIZE == 0
        assert arr.flags.writeable and arr.flags.c_contiguous
        assert not arr.any()
        arr[...] = 3
        assert arr.size == 0 or int(arr.reshape(-1)[-1]) == 3
        # it owns its own mapping: not a view into some shared heap block
        assert isinstance(arr.base, mmap.mmap)


def test_alloc_locked_arrays_do_not_share_pages() -> None:
    a, _ = alloc_locked(10, np.uint8)
    b, _ = alloc_locked(10, np.uint8)
    pa, pb = a.ctypes.data // PAGE_SIZE, b.ctypes.data // PAGE_SIZE
    assert pa != pb


@linux_only
def test_locking_shows_in_vmlck_or_reports_why() -> None:
    before = locked_kib()
    assert before is not None
    arr, reason = alloc_locked((4 << 20,), np.uint8)  # 4 MiB
    if reason is not None:
        assert "mlock failed" in reason and "RLIMIT_MEMLOCK" in reason
        pytest.skip(f"mlock not allowed here: {reason}")
    after = locked_kib()
    assert after is not None and after - before >= 4096
    del arr


@linux_only
def test_lock_failure_is_reported_with_reason() -> None:
    """Under a tiny RLIMIT_MEMLOCK and without CAP_IPC_LOCK, the reason names the limit."""
    out = _run("""
        import json, os, resource
        import numpy as np
        from edge.hardening import alloc_locked, harden_process
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)   # drops CAP_IPC_LOCK
        arr, reason = alloc_locked((1 << 20,), np.uint8)
        arr[:] = 1                               # still usable
        rep = harden_process()
        print(json.dumps({"reason": reason, "sum": int(arr.sum()), "steps": rep.to_dict()}))
    """)
    assert out["sum"] == 1 << 20
    assert out["reason"] is not None
    assert out["reason"].startswith("mlock failed: ")
    assert "RLIMIT_MEMLOCK is 64 KiB" in out["reason"]
    assert "CAP_IPC_LOCK" in out["reason"]
    # harden_process does not mlockall under a finite limit, and says why
    assert out["steps"]["memory lock"].startswith("failed: whole process not locked")
    assert out["steps"]["core dumps"].startswith("ok")


@linux_only
def test_lock_buffer_on_existing_array() -> None:
    arr = np.zeros(3 * PAGE_SIZE, np.uint8)
    reason = lock_buffer(arr)
    assert reason is None or "mlock failed" in reason
    view = arr[::2]
    assert lock_buffer(view) is not None  # non-contiguous: refused with a reason


@linux_only
def test_dontdump_is_applied_to_locked_buffers() -> None:
    """The kernel marks the buffer's mapping 'dd' (VM_DONTDUMP) in /proc/self/smaps."""
    arr, reason = alloc_locked((5 * PAGE_SIZE,), np.uint8)
    start = arr.ctypes.data
    smaps = Path("/proc/self/smaps").read_text().split("\n")
    flags = None
    in_map = False
    for line in smaps:
        head = line.split(" ", 1)[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(x, 16) for x in head.split("-"))
            in_map = lo <= start < hi
        elif in_map and line.startswith("VmFlags:"):
            flags = line.split()[1:]
            break
    assert flags is not None
    assert "dd" in flags
    if reason is None:
        assert "lo" in flags  # VM_LOCKED


def test_secure_tmpdir_is_private_and_ram_backed() -> None:
    d = secure_tmpdir()
    if d is None:
        pytest.skip("no RAM-backed tmpfs (/dev/shm) on this machine")
    try:
        assert d.is_dir()
        assert (d.stat().st_mode & 0o777) == 0o700
        assert str(d).startswith(("/dev/shm/", "/run/shm/"))
    finally:
        os.rmdir(d)


def test_report_lines_and_dict() -> None:
    rep = HardeningReport()
    rep.add("core dumps", True, "RLIMIT_CORE set to 0/0")
    rep.add("memory lock", False, "mlockall failed: EPERM")
    assert rep.lines() == ["[ok]     core dumps: RLIMIT_CORE set to 0/0",
                           "[FAILED] memory lock: mlockall failed: EPERM"]
    assert rep.to_dict() == {"core dumps": "ok: RLIMIT_CORE set to 0/0",
                             "memory lock": "failed: mlockall failed: EPERM"}
    assert not rep.all_ok
