"""Inputs for the fuzz suite: raw bytes, arbitrary JSON, and valid messages with one part
replaced by something arbitrary (random bytes alone rarely get past the first check)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

import tests.fuzz.profile  # noqa: F401  (loads the edge-fuzz settings profile)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20,
)


def dumps(value: Any) -> bytes:
    """JSON with NaN/Infinity allowed (a hostile peer is not bound by the standard)."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with some keys replaced by arbitrary JSON, removed or added."""
    body = dict(valid)
    for key in draw(st.lists(st.sampled_from(sorted(valid)), max_size=3, unique=True)):
        if draw(st.booleans()):
            body[key] = draw(json_values)
        else:
            body.pop(key)
    if draw(st.booleans()):
        body[draw(st.text(max_size=10))] = draw(json_values)
    return body
