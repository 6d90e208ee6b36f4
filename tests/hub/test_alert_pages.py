"""The alert list in pages: newest first, a cursor of (received_at, alert_id) so alerts stored
at the same instant are neither skipped nor repeated; per deployment too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.hub.synthetic import synthetic_alert, synthetic_jpeg
from tests.hub_helpers import RunningHub, hub_config

pytestmark = pytest.mark.unit


def test_pages_cover_every_alert_once(tmp_path: Path) -> None:
    h = RunningHub(hub_config(tmp_path))
    try:
        jpeg = synthetic_jpeg(1)
        now = float(int(time.time()))
        want = set()
        for i in range(23):
            a = synthetic_alert("node-1", n=i, deployment_id="north" if i % 3 else "south")
            # groups of alerts with one received_at: a cursor on the time alone would skip some
            assert h.store.insert_alert(a, jpeg, None, now + i // 4)
            want.add(a.alert_id)
        c = h.client()

        def pages(extra: str = "") -> list[list[str]]:
            out, q = [], f"/api/alerts?limit=5{extra}"
            while True:
                got = c.get(q).json()["alerts"]
                out.append([x["alert_id"] for x in got])
                if len(got) < 5:
                    return out
                last = got[-1]
                q = (f"/api/alerts?limit=5{extra}&before={last['received_at']!r}"
                     f"&before_id={last['alert_id']}")

        ids = [x for p in pages() for x in p]
        assert len(ids) == len(set(ids)) == 23 and set(ids) == want
        cards = {x["alert_id"]: x for x in c.get("/api/alerts?limit=500").json()["alerts"]}
        assert [cards[x]["received_at"] for x in ids] == sorted(
            (cards[x]["received_at"] for x in ids), reverse=True)
        south = [x for p in pages("&deployment=south") for x in p]
        assert sorted(south) == sorted(x for x in want if cards[x]["deployment_id"] == "south")
        assert c.get("/api/alerts?before=nan").status_code == 400
        assert c.get("/api/alerts?before=1&before_id=..%2F").status_code == 400
        c.close()
    finally:
        h.close()
