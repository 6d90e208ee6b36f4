"""Timers for one benchmark run: wall and CPU time, peak memory, load from other processes."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

WARMUP_FRAMES = 5  # first frames of a run pay for lazy initialisation; excluded from rates


def pct(values: Sequence[float] | np.ndarray, scale: float = 1e3) -> dict[str, float]:
    """n, mean, p50, p95, p99, max of a sample (seconds -> ms by default)."""
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return {"n": 0}
    q = np.percentile(a, [50, 95, 99])
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()) * scale, 3),
        "p50": round(float(q[0]) * scale, 3),
        "p95": round(float(q[1]) * scale, 3),
        "p99": round(float(q[2]) * scale, 3),
        "max": round(float(a.max()) * scale, 3),
    }


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, to see what else ran meanwhile."""
    try:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


def status_mb(key: str = "VmRSS") -> float:
    """A memory figure of this process from /proc/self/status, in MB (0 if unavailable).

    VmHWM (peak RSS) is used instead of ``ru_maxrss`` because Linux carries ru_maxrss over
    ``fork``+``exec``: a child would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class Meter:
    """Wall time, this process's CPU time, peak RSS, and CPU used by *other* processes."""

    def __init__(self) -> None:
        self.wall = self.user = self.sys = self.maxrss_mb = 0.0
        self.other_cores: float | None = None

    def __enter__(self) -> Meter:
        self.t0 = time.perf_counter()
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.j0 = cpu_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.user = ru.ru_utime - self.ru0.ru_utime
        self.sys = ru.ru_stime - self.ru0.ru_stime
        self.maxrss_mb = status_mb("VmHWM") or round(ru.ru_maxrss / 1024, 1)
        j1 = cpu_jiffies()
        self.other_cores = None
        if self.j0 and j1:
            hz = os.sysconf("SC_CLK_TCK")
            busy_s = (j1[0] - self.j0[0]) / hz
            self.other_cores = round(max(0.0, busy_s - self.user - self.sys) / max(self.wall, 1e-9), 2)

    def as_dict(self, frames: int) -> dict[str, Any]:
        cpu = self.user + self.sys
        return {
            "wall_s": round(self.wall, 3),
            "cpu_user_s": round(self.user, 3),
            "cpu_sys_s": round(self.sys, 3),
            "cpu_ms_per_frame": round(cpu / max(frames, 1) * 1e3, 2),
            "cores_used": round(cpu / max(self.wall, 1e-9), 2),
            "rss_peak_mb": self.maxrss_mb,
            "rss_end_mb": status_mb("VmRSS"),
            "other_processes_cores": self.other_cores,
        }


class ChildrenMeter:
    """Wall time, CPU of the child processes waited for meanwhile, and CPU of everything else.

    For runs of several child processes at once (one camera each): their CPU comes from
    ``RUSAGE_CHILDREN``, so ``other_processes_cores`` is what neither they nor this process used.
    """

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.other_cores: float | None = None

    def __enter__(self) -> ChildrenMeter:
        self.t0 = time.perf_counter()
        self.ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.me0 = resource.getrusage(resource.RUSAGE_SELF)
        self.j0 = cpu_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = ru.ru_utime - self.ru0.ru_utime + ru.ru_stime - self.ru0.ru_stime
        mine = me.ru_utime - self.me0.ru_utime + me.ru_stime - self.me0.ru_stime
        j1 = cpu_jiffies()
        self.other_cores = None
        if self.j0 and j1:
            busy_s = (j1[0] - self.j0[0]) / os.sysconf("SC_CLK_TCK")
            self.other_cores = round(max(0.0, busy_s - self.cpu - mine) / max(self.wall, 1e-9), 2)


def wait_until_quiet(max_wait_s: float, threshold_cores: float = 0.25, window_s: float = 3.0,
                     windows: int = 2) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) until the machine's CPUs are nearly idle for ``windows``
    consecutive ``window_s`` windows: on a shared box a run started under someone else's load
    measures that load. Returns how long it waited, whether it got quiet, and the last load."""
    t0 = time.monotonic()
    calm = 0
    cores = None
    hz = os.sysconf("SC_CLK_TCK")
    while True:
        j0 = cpu_jiffies()
        time.sleep(window_s)
        j1 = cpu_jiffies()
        if j0 is None or j1 is None:
            return {"waited_s": round(time.monotonic() - t0, 1), "quiet": None, "busy_cores": None}
        cores = round((j1[0] - j0[0]) / hz / window_s, 2)
        calm = calm + 1 if cores < threshold_cores else 0
        waited = time.monotonic() - t0
        if calm >= windows or waited >= max_wait_s:
            return {"waited_s": round(waited, 1), "quiet": calm >= windows, "busy_cores": cores}
