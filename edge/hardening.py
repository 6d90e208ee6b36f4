"""Process hardening at start, and locked memory for biometric buffers.

Why: a bystander's face must not outlive its frame. Three OS paths could keep it anyway —
a core dump written on a crash, another process reading our memory, and the kernel
swapping a page holding a frame or embedding out to disk. This module closes those paths
where the OS allows, and reports in plain words where it does not.

- :func:`harden_process`: core dumps off (``RLIMIT_CORE`` 0/0), process not dumpable
  (``prctl(PR_SET_DUMPABLE, 0)``, which also stops non-root same-user processes from
  ptrace-ing it or reading ``/proc/<pid>/mem``), the locked-memory limit raised to its hard
  limit, and, when the process may lock without limit, the whole process locked
  against swap (``mlockall``, on-fault so untouched reservations cost nothing).
- :func:`alloc_locked`: page-aligned, zeroed anonymous memory for one biometric buffer,
  locked (``mlock``), excluded from core dumps (``MADV_DONTDUMP``) and wiped in any forked
  child (``MADV_WIPEONFORK``). The privacy module allocates all its buffers with it.
- :func:`secure_tmpdir`: a private directory on RAM-backed tmpfs for the rare temporary
  file. Frames are never written to temporary files at all; nothing in the pipeline uses one.
  Note tmpfs pages *can* be swapped out when swap is active; :func:`swap_active` tells.

Nothing here reads or logs buffer contents.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import resource
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4
MADV_DONTDUMP = 16
MADV_WIPEONFORK = 18
CAP_IPC_LOCK = 14

_IS_LINUX = sys.platform.startswith("linux")


def _libc() -> ctypes.CDLL | None:
    """libc with errno capture and argument types set, or None where unavailable."""
    global _LIBC
    if _LIBC is None:
        name = ctypes.util.find_library("c") or ("libc.so.6" if _IS_LINUX else None)
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            return None
        for fn in ("mlock", "munlock", "madvise"):
            f = getattr(lib, fn, None)
            if f is not None:
                f.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + (
                    [ctypes.c_int] if fn == "madvise" else []
                )
                f.restype = ctypes.c_int
        if hasattr(lib, "mlockall"):
            lib.mlockall.argtypes = [ctypes.c_int]
            lib.mlockall.restype = ctypes.c_int
        if hasattr(lib, "prctl"):
            lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                  ctypes.c_ulong, ctypes.c_ulong]
            lib.prctl.restype = ctypes.c_int
        _LIBC = lib
    return _LIBC


_LIBC: ctypes.CDLL | None = None
PAGE_SIZE = mmap.PAGESIZE


def _errno_text(err: int) -> str:
    return f"{errno.errorcode.get(err, str(err))} ({os.strerror(err)})"


def _fmt_bytes(n: int) -> str:
    if n == resource.RLIM_INFINITY:
        return "unlimited"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.3g} MiB"
    return f"{n / 1024:.3g} KiB"


def has_cap_ipc_lock() -> bool:
    """True when the process may lock memory regardless of RLIMIT_MEMLOCK."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def locked_kib() -> int | None:
    """VmLck of this process in KiB (memory currently locked), None when unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmLck:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def swap_active() -> bool | None:
    """Whether any swap device is active (None when unknown, e.g. not Linux)."""
    try:
        lines = Path("/proc/swaps").read_text().splitlines()
    except OSError:
        return None
    return len([ln for ln in lines[1:] if ln.strip()]) > 0


def _memlock_hint() -> str:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return (
        f"RLIMIT_MEMLOCK is {_fmt_bytes(soft)}; raise it with `ulimit -l` "
        "(or LimitMEMLOCK= in systemd, --ulimit memlock= in docker) or grant CAP_IPC_LOCK"
    )


@dataclass
class HardeningStep:
    """One hardening step: what was attempted, whether it worked, and why not."""

    name: str
    ok: bool
    detail: str


@dataclass
class HardeningReport:
    """Outcome of :func:`harden_process`, readable at start-up and storable in the audit log."""

    steps: list[HardeningStep] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.steps.append(HardeningStep(name, ok, detail))

    def step(self, name: str) -> HardeningStep | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def all_ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def lines(self) -> list[str]:
        """One human line per step, e.g. ``[ok]     core dumps: RLIMIT_CORE set to 0/0``."""
        return [f"[{'ok' if s.ok else 'FAILED'}]".ljust(9) + f"{s.name}: {s.detail}"
                for s in self.steps]

    def to_dict(self) -> dict[str, str]:
        """``{step: "ok: detail" | "failed: detail"}``: plain strings, fit for the audit log."""
        return {s.name: f"{'ok' if s.ok else 'failed'}: {s.detail}" for s in self.steps}


def harden_process(lock_memory: bool = True) -> HardeningReport:
    """Turn off core dumps and ptrace/dumpability; lock memory against swap where allowed.

    Never raises for a step the OS refuses: the step is reported as failed with the reason,
    so the operator sees exactly which guarantee is weaker on this machine.
    """
    report = HardeningReport()

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        report.add("core dumps", True, "RLIMIT_CORE set to 0/0")
    except (OSError, ValueError) as exc:
        report.add("core dumps", False, f"setrlimit(RLIMIT_CORE) failed: {exc}")

    lib = _libc()
    if not _IS_LINUX or lib is None or not hasattr(lib, "prctl"):
        report.add("not dumpable", False, f"prctl is not available on {sys.platform}")
    else:
        if lib.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            report.add("not dumpable", False,
                       f"prctl(PR_SET_DUMPABLE) failed: {_errno_text(ctypes.get_errno())}")
        else:
            report.add("not dumpable", True,
                       "PR_SET_DUMPABLE 0 (no core file, no ptrace or /proc/<pid>/mem "
                       "by other non-root processes)")

    if lock_memory:
        _lock_memory(report, lib)

    swap = swap_active()
    if swap is False:
        report.add("swap", True, "no swap device active: memory cannot be paged to disk")
    elif swap is None:
        report.add("swap", False, "cannot tell whether swap is active")
    else:
        locked = report.step("memory lock")
        if locked is not None and locked.ok and "whole process" in locked.detail:
            report.add("swap", True, "swap is active but the whole process is locked in RAM")
        else:
            report.add("swap", False,
                       "swap is active; only buffers allocated with alloc_locked are kept "
                       "out of it (decoder internals may be swapped)")
    return report


def _lock_memory(report: HardeningReport, lib: ctypes.CDLL | None) -> None:
    """Raise RLIMIT_MEMLOCK to its hard limit; mlockall when locking is unlimited."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
            soft = hard
    except (OSError, ValueError) as exc:
        report.add("memory lock", False, f"cannot read/raise RLIMIT_MEMLOCK: {exc}")
        return
    privileged = has_cap_ipc_lock()
    if lib is None or not hasattr(lib, "mlockall"):
        report.add("memory lock", False, f"mlockall is not available on {sys.platform}")
        return
    if not privileged and soft != resource.RLIM_INFINITY:
        # mlockall(MCL_FUTURE) under a finite limit makes later allocations fail; lock
        # only the biometric buffers (alloc_locked) within the budget instead.
        report.add("memory lock", False,
                   f"whole process not locked: {_memlock_hint()}; biometric buffers "
                   f"are locked individually within the {_fmt_bytes(soft)} budget")
        return
    rc = lib.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)
    err = ctypes.get_errno()
    if rc != 0 and err == errno.EINVAL:  # kernel < 4.4: no MCL_ONFAULT
        rc = lib.mlockall(MCL_CURRENT | MCL_FUTURE)
        err = ctypes.get_errno()
    if rc != 0:
        report.add("memory lock", False, f"mlockall failed: {_errno_text(err)}; {_memlock_hint()}")
        return
    why = "CAP_IPC_LOCK" if privileged else "RLIMIT_MEMLOCK unlimited"
    report.add("memory lock", True, f"whole process locked against swap (mlockall, {why})")


def _page_range(addr: int, nbytes: int) -> tuple[int, int]:
    start = addr & ~(PAGE_SIZE - 1)
    end = (addr + max(nbytes, 1) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    return start, end - start


def lock_buffer(arr: np.ndarray, wipe_on_fork: bool = False) -> str | None:
    """mlock the pages under ``arr`` and exclude them from core dumps.

    Returns None on success or a one-line reason (the array stays usable either way).
    Locks whole pages, so an array sharing pages with others locks those too: prefer
    :func:`alloc_locked`. ``wipe_on_fork`` only for memory that is private to the array.
    """
    lib = _libc()
    if lib is None or not hasattr(lib, "mlock"):
        return f"mlock is not available on {sys.platform}"
    if not arr.flags.c_contiguous and not arr.flags.f_contiguous:
        return "array is not contiguous; lock its base array instead"
    start, length = _page_range(arr.ctypes.data, arr.nbytes)
    return _lock_range(lib, start, length, wipe_on_fork)


def _lock_range(lib: ctypes.CDLL, start: int, length: int, wipe_on_fork: bool) -> str | None:
    problems = []
    if lib.mlock(start, length) != 0:
        err = ctypes.get_errno()
        reason = f"mlock failed: {errno.errorcode.get(err, str(err))}"
        if err in (errno.ENOMEM, errno.EPERM, errno.EAGAIN):
            have = locked_kib()
            already = f", {have} KiB already locked" if have is not None else ""
            reason += f" — {_memlock_hint()} (needed {_fmt_bytes(length)}{already})"
        else:
            reason += f" ({os.strerror(err)})"
        problems.append(reason)
    if _IS_LINUX and hasattr(lib, "madvise"):
        if lib.madvise(start, length, MADV_DONTDUMP) != 0:
            problems.append(f"madvise(MADV_DONTDUMP) failed: "
                            f"{_errno_text(ctypes.get_errno())}")
        if wipe_on_fork and lib.madvise(start, length, MADV_WIPEONFORK) != 0:
            err = ctypes.get_errno()
            if err != errno.EINVAL:  # EINVAL: kernel < 4.14, nothing to report
                problems.append(f"madvise(MADV_WIPEONFORK) failed: {_errno_text(err)}")
    return "; ".join(problems) or None


def alloc_locked(shape: int | tuple[int, ...],
                 dtype: npt.DTypeLike = np.float32) -> tuple[np.ndarray, str | None]:
    """A zeroed, writable array on its own anonymous pages, locked against swap.

    Returns ``(array, None)`` or ``(array, reason)`` when locking failed (the array is
    usable, just swappable). The pages are private to this array: locking never pins
    neighbours, and when the array is garbage collected they are unmapped and the kernel
    zeroes them before any reuse. Forked children see zeros (MADV_WIPEONFORK).
    """
    dt = np.dtype(dtype)
    shp = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(shp, dtype=np.int64)) if shp else 1
    nbytes = count * dt.itemsize
    size = max(PAGE_SIZE, (nbytes + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE)
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                   prot=mmap.PROT_READ | mmap.PROT_WRITE)
    arr: np.ndarray = np.ndarray(shp, dtype=dt, buffer=mm)
    # the array keeps `mm` alive as arr.base; the mapping lives exactly as long as the array
    lib = _libc()
    if lib is None or not hasattr(lib, "mlock"):
        return arr, f"mlock is not available on {sys.platform}"
    start = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    return arr, _lock_range(lib, start, size, wipe_on_fork=True)


def secure_tmpdir() -> Path | None:
    """A new private (0700) directory on RAM-backed tmpfs, or None when there is none.

    For the rare temporary file the node needs; never for frames, which are never written
    to temporary files. The caller removes it. tmpfs can still be swapped out when swap is
    active (see :func:`swap_active`).
    """
    for base in ("/dev/shm", "/run/shm"):
        if _is_ram_fs(base):
            try:
                return Path(tempfile.mkdtemp(prefix="edge-", dir=base))
            except OSError:
                continue
    return None


def _is_ram_fs(path: str) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    real = os.path.realpath(path)
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and parts[1] == real and parts[2] in ("tmpfs", "ramfs"):
            return os.access(real, os.W_OK | os.X_OK)
    return False
