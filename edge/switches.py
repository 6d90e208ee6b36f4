"""Test-only switches, read from the environment (the lowest layer: config and privacy both
need them). A switch that weakens a guarantee needs its variable set *and* its config key."""

from __future__ import annotations

import os

TEST_DISABLE_ENV = "EDGE_TEST_DISABLE_ZEROIZE"


def zeroize_allowed_off() -> bool:
    """True only when the test-only switch is set in the environment."""
    return os.environ.get(TEST_DISABLE_ENV) == "1"
