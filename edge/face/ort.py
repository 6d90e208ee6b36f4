"""ONNX Runtime plumbing shared by every model: cores, providers, session options.

Each model module builds its session from verified bytes with these options; what differs
between a detector and a recogniser is how many threads it may take, because of what runs
beside it (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import os

import onnxruntime as ort


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, e.g. a container's cpuset), not the host's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def pick_providers(wanted: list[str]) -> list[str]:
    """The configured providers that this onnxruntime build offers, CPU always last."""
    have = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in have]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _base_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def recogniser_options(threads: int) -> ort.SessionOptions:
    """Auto (0): half the cores. Detection and decoding run beside the embedder; on 2 cores a
    2-thread session contends with them and is ~2x slower per face (docs/PERFORMANCE.md)."""
    return _base_options(threads or max(1, usable_cores() // 2))


def detector_options(threads: int) -> ort.SessionOptions:
    """Auto (0): all cores up to 8. Detection runs alone in the frame thread (the embedder
    waits for it); a small detector gains nothing from more than 8."""
    so = _base_options(threads or min(8, usable_cores()))
    # no busy-waiting between runs: the decode thread and the embedder need those cycles
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so
