"""benchmarks/track_alerts.py: its frame schedule (no models), and a short run on the real
arcade clip with both trackers (needs ../shared/data and the models). The figures themselves
are reported by the benchmark (docs/eval/track_report.md), never asserted here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO, shared_path

sys.path.insert(0, str(REPO / "benchmarks"))
import track_alerts as TA  # noqa: E402


def test_schedule_keeps_camera_indices_and_rate() -> None:
    # 10 fps of a 25 fps clip: gaps of 2 and 3 frames, camera indices kept
    s = TA.schedule(25, 25.0, 10.0, 0, set())
    assert s == [0, 2, 5, 8, 10, 12, 15, 18, 20, 22]
    assert TA.schedule(30, 25.0, 2.0, 3, {15}) == [3, 16, 28]  # 3, round(15.5) = 16, 28
    assert TA.schedule(5, 25.0, 25.0, 0, {2}) == [0, 1, 3, 4]
    assert TA.phases(25.0, 2.0, 13) == list(range(13))
    assert TA.phases(25.0, 2.0, 4) == [0, 3, 6, 10]
    assert TA.phases(29.97, 25.0, 13) == [0, 1]


def test_short_run_on_the_arcade_clip(models_ready: None, tmp_path: Path) -> None:
    video = shared_path("videos", "walking_arcade_1080p.mp4")
    out = tmp_path / "ta.json"
    assert TA.main(["--video", str(video), "--fps", "25", "5", "--max-frames", "12",
                    "--max-phases", "2", "--n-video", "2", "--held-out", "0", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    (v,) = r["videos"]
    assert [x["fps"] for x in v["rates"]] == [25.0, 5.0]
    for rate in v["rates"]:
        for tr in TA.TRACKERS:
            t = rate[tr]["total"]
            assert t["frames"] > 0 and t["tracks"] > 0 and t["embeddings"] > 0
            assert t["enrolled_alerts"] + t["wrong_alerts"] == t["alerts"]
            assert all(run["buffers_clear_after_run"] for run in rate[tr]["runs"])
            # only enrolled people of the clip are named in the scores written out
            for run in rate[tr]["runs"]:
                assert all(a["subject_id"].startswith("V") for a in run["enrolled_alert_scores"])
    # no face data in the JSON: no vector of numbers anywhere (an embedding is 128 floats)
    def longest_list(o: object) -> int:
        if isinstance(o, dict):
            return max((longest_list(x) for x in o.values()), default=0)
        if isinstance(o, list):
            return max([len(o)] + [longest_list(x) for x in o])
        return 0

    assert longest_list(r) < 64
