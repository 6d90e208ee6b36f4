"""Hypothesis settings for the fuzz suite (imported by strategies.py, so by every fuzz module;
not a conftest.py, which would shadow tests/conftest.py for `from conftest import ...`):
a few hundred examples per parser by default,
``EDGE_FUZZ_EXAMPLES=5000`` for a long run. No example database: nothing is written into the
checkout, and each run explores afresh."""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "edge-fuzz",
    max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "200")),
    # a parser that takes longer than this on one input counts as a hang
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("edge-fuzz")
