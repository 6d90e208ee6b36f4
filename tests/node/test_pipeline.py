"""The live pipeline on real faces: detection, matching, alerts, bad input, buffer hygiene."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edge.config import load_config
from edge.node.app import build_node
from edge.node.sources import open_source
from edge.node.stats import NodeStats
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from tests.conftest import on_canvas, pad, shared_path, write_clip


def make_watchlist(emb_by_subject: dict[str, np.ndarray]) -> Watchlist:
    subjects = {s: Subject(s, f"Subject {s}", "test") for s in emb_by_subject}
    entries = [Entry(f"{s}/1", s, "ref.jpg") for s in emb_by_subject]
    emb = np.stack([emb_by_subject[s] for s in emb_by_subject])
    return Watchlist(WatchlistMeta(deployment_id="test"), subjects, entries, emb)


def cfg_for_tests(**over):
    base = {"alerts": {"console": False}, "privacy": {"lock_memory": False}}
    for k, v in over.items():
        base.setdefault(k, {}).update(v)
    return load_config(overrides=base)


def test_group_photo_has_six_faces(engine, sample_images):
    img = cv2.imread(str(sample_images / "t1.jpg"))
    faces = engine.faces(img)
    assert len(faces) == 6
    for f in faces:
        assert abs(float(np.linalg.norm(f.embedding)) - 1.0) < 1e-4
    # six different people: no pair of them should look like the same person
    emb = np.stack([f.embedding for f in faces])
    sims = emb @ emb.T
    assert sims[~np.eye(6, dtype=bool)].max() < 0.4


def test_batched_embeddings_equal_single(engine, sample_images):
    """Faces of one frame are embedded in one batch; the batch must not change the result."""
    img = cv2.imread(str(sample_images / "t1.jpg"))
    faces = engine.faces(img)
    single = [engine.faces(f.crop.copy(), pad=0.6) for f in faces[:3]]
    for f, s in zip(faces[:3], single, strict=True):
        assert s, "aligned crop should still contain a detectable face"
        assert float(f.embedding @ s[0].embedding) > 0.8


def test_demo_alerts_only_on_enrolled(models_ready):
    from edge.node.demo import run_demo

    res = run_demo(cfg_for_tests(), echo=lambda *_: None)
    assert res.alerts, "the enrolled person must raise an alert"
    assert {s for s, _, _ in res.alerts} == {res.enrolled_subject}
    assert len(res.alerts) == 1, "one alert per track, not one per frame"
    assert res.tracks >= 6


def test_buffers_are_zero_after_every_frame(models_ready, sample_images, tmp_path):
    img = cv2.imread(str(sample_images / "t1.jpg"))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), img)
    wl = make_watchlist({"X": np.eye(128, dtype=np.float32)[0]})
    node = build_node(cfg_for_tests(), wl)
    src = open_source(str(folder), node.ring)
    seen = []

    def check(frame, alerts):
        seen.append(node.bufs.n)
        assert node.bufs.is_clear(), "face buffers must be zero once the frame is decided"
        assert not node.ring.slot(frame.slot).any(), "the frame slot must be zeroed on release"

    node.run(src, on_frame=check)
    assert node.stats.frames == 3 and node.stats.faces_seen == 18
    assert node.stats.alerts == 0 and node.stats.faces_discarded == 18


def test_bad_frames_are_skipped_and_counted(models_ready, sample_images, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    img = cv2.imread(str(sample_images / "t1.jpg"))
    cv2.imwrite(str(folder / "a.jpg"), img)
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "c.png").write_bytes(b"")
    cv2.imwrite(str(folder / "d.jpg"), img)
    node = build_node(cfg_for_tests(), make_watchlist({"X": np.eye(128, dtype=np.float32)[0]}))
    src = open_source(str(folder), node.ring)
    node.run(src)
    assert node.stats.frames == 2
    assert src.stats.bad_frames == 2
    assert src.stats.reasons == {"unreadable image": 2}


def test_one_failing_frame_does_not_stop_the_node(models_ready, sample_images, tmp_path, caplog):
    """A model error mid-pipeline costs one frame, is logged by type only, buffers still zeroed."""
    folder = tmp_path / "frames"
    folder.mkdir()
    img = cv2.imread(str(sample_images / "t1.jpg"))
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.jpg"), img)
    node = build_node(cfg_for_tests(tracker={"enabled": False}),
                make_watchlist({"X": np.eye(128, dtype=np.float32)[0]}))
    real = node.embedder.__call__
    calls = {"n": 0}

    def flaky(bufs, n):
        calls["n"] += 1
        if calls["n"] == 2:
            real(bufs, n)  # the embeddings exist in the buffers when the failure hits
            raise RuntimeError("simulated ONNX Runtime failure")
        return real(bufs, n)

    node.embedder = flaky
    with caplog.at_level("ERROR"):
        node.run(open_source(str(folder), node.ring))
    assert node.stats.frames == 3 and node.stats.frames_failed == 1
    assert node.bufs.is_clear()
    text = caplog.text
    assert "RuntimeError" in text and "[" not in text.split("failed in pipeline")[-1]


def test_bbt_subject_enrolled_from_one_photo_alerts_on_another(engine, tmp_path):
    """Enrol amy from amy1.png; a video of other photos raises an alert for amy only."""
    root = shared_path("bbt_faces")
    enrol = {}
    for who in ("amy", "sheldon"):
        faces = engine.faces(cv2.imread(str(root / who / f"{who}1.png")), pad=0.5)
        enrol[who] = faces[0].embedding
    frames = []
    for who in ("penny", "amy", "leonard", "raj"):
        face = pad(cv2.imread(str(root / who / f"{who}3.png")), 0.3)
        frames += [on_canvas(face, at=(200 + 4 * i, 100)) for i in range(5)]
    clip = write_clip(tmp_path / "clip.mp4", frames)
    cfg = cfg_for_tests(match={"threshold": 0.40}, quality={"min_sharpness": 0.0})
    node = build_node(cfg, make_watchlist(enrol))
    alerts = []
    node.run(open_source(str(clip), node.ring), on_frame=lambda f, a: alerts.extend(a))
    assert [a.subject_id for a in alerts] == ["amy"]
    assert 5 <= alerts[0].frame_index < 10


def test_lfw_same_person_scores_above_different(engine):
    import csv

    root = shared_path("lfw_pairs_150")
    rows = list(csv.DictReader(open(root / "pairs.csv")))
    same = [r for r in rows if r["same"] == "1"][:40]
    diff = [r for r in rows if r["same"] == "0"][:40]

    def score(r):
        a = engine.faces(cv2.imread(str(root / "images" / r["img1"])), pad=0.5)
        b = engine.faces(cv2.imread(str(root / "images" / r["img2"])), pad=0.5)
        return float(a[0].embedding @ b[0].embedding)

    s_same = np.array([score(r) for r in same])
    s_diff = np.array([score(r) for r in diff])
    assert s_same.mean() > s_diff.mean() + 0.3
    acc = ((s_same >= 0.32).sum() + (s_diff < 0.32).sum()) / 80
    assert acc >= 0.9


def test_intel_walking_gif_finds_both_people(models_ready):
    gif = shared_path("videos", "intel_face_demographics_walking.gif")
    cfg = cfg_for_tests(detector={"min_face_px": 10}, quality={"enabled": False})
    node = build_node(cfg, make_watchlist({"X": np.eye(128, dtype=np.float32)[0]}))
    counts = []
    src = open_source(str(gif), node.ring)
    for frame in src.frames():
        counts.append(node.detector(frame.image, node.bufs))
        node.bufs.zeroize()
        node.ring.release(frame.slot)
    assert len(counts) >= 30
    assert sum(c >= 2 for c in counts) / len(counts) >= 0.8


def test_live_source_keeps_newest_frame(models_ready, sample_images, tmp_path):
    """A live source never queues stale frames: slow processing drops old ones (counted)."""
    img = cv2.imread(str(sample_images / "t1.jpg"))
    clip = write_clip(tmp_path / "c.mp4", [img] * 40, fps=25)
    from edge.node.sources import CaptureSource
    from edge.privacy import FrameRing

    ring = FrameRing(4, lock=False)
    src = CaptureSource(str(clip), ring, live=True, max_reconnects=1, reconnect_initial_s=0.05)
    got = 0
    for frame in src.frames():
        time.sleep(0.05)  # slower than decoding
        ring.release(frame.slot)
        got += 1
    src.close()
    assert src.stats.dropped_stale > 0
    assert got + src.stats.dropped_stale <= src.stats.frames
    assert got < 40


def test_missing_file_fails_clearly():
    from edge.errors import SourceError
    from edge.node.sources import open_source as op
    from edge.privacy import FrameRing

    with pytest.raises(SourceError, match="video file not found"):
        op("/nonexistent/video.mp4", FrameRing(2, lock=False))


@pytest.mark.parametrize("spec", ["rtsp://127.0.0.1:1/none", "97"])
def test_live_camera_not_up_at_start_is_retried_not_fatal(spec):
    """A camera or URL that is not up yet at start is retried with back-off (it may come up
    later), reported as not up, and stopping does not wait for it."""
    from edge.node.sources import StreamOptions
    from edge.node.sources import open_source as op
    from edge.privacy import FrameRing

    src = op(spec, FrameRing(2, lock=False), reconnect_initial_s=0.05, reconnect_max_s=0.1,
             options=StreamOptions(open_timeout_s=1.0, read_timeout_s=1.0))
    assert src.live
    frames = src.frames()
    stop_at = time.monotonic() + 1.5
    threading.Thread(target=lambda: (time.sleep(1.0), src.stop()), daemon=True).start()
    assert list(frames) == []
    t0 = time.monotonic()
    src.close(timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert time.monotonic() < stop_at + 1.5
    assert src.stats.state in ("connecting", "down")
    assert src.stats.frames == 0
    assert src.stats.reconnects >= 2


def test_probe_jpeg_blanks_bystanders_inside_the_crop():
    """A bystander's face next to the matched person must not travel with the alert."""
    from edge.node.decide import probe_jpeg

    img = np.zeros((200, 300, 3), np.uint8)
    img[50:110, 50:110] = 255  # matched face
    img[50:110, 112:172] = 200  # bystander right beside it, inside the 25% margin
    boxes = np.array([[50, 50, 60, 60], [112, 50, 60, 60]], np.float32)
    jpeg = probe_jpeg(img, [50, 50, 60, 60], quality=100, others=boxes)
    crop = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape[:2] == (90, 90)  # 60 px face + 15 px margin each side, clipped
    assert abs(int(crop[45, 45, 0]) - 255) < 8  # the matched face is intact
    assert abs(int(crop[45, 85, 0]) - 127) < 8  # the bystander's pixels are grey
    plain = cv2.imdecode(np.frombuffer(probe_jpeg(img, [50, 50, 60, 60], quality=100),
                                       np.uint8), cv2.IMREAD_COLOR)
    assert abs(int(plain[45, 85, 0]) - 200) < 8  # (control: without blanking it shows)


@pytest.mark.parametrize("after", [0, 10])
def test_quality_gate_cannot_hide_a_whole_track(engine, sample_images, tmp_path, after):
    """Every face fails the sharpness gate (an impossible minimum), as dim stage faces did on
    the Hamilton clip. With the override off the enrolled person is never looked at; with it,
    each track is embedded once it has been gated ``after`` times, and the person is found."""
    img = cv2.imread(str(sample_images / "t1.jpg"))
    faces = engine.faces(img)
    clip = write_clip(tmp_path / "c.mp4", [img] * 25)
    cfg = cfg_for_tests(quality={"min_sharpness": 1e9}, tracker={"embed_gated_after": after})
    node = build_node(cfg, make_watchlist({"P": faces[1].embedding}))
    alerts = []
    node.run(open_source(str(clip), node.ring), on_frame=lambda f, a: alerts.extend(a))
    gated = sum(node.stats.faces_gated.values())
    if after == 0:
        assert alerts == [] and node.stats.faces_embedded == 0
        assert gated == node.stats.faces_seen  # tracks never decide, so every face is gated
    else:
        assert [a.subject_id for a in alerts] == ["P"]
        assert alerts[0].frame_index == after  # gated on frames 0..after-1, embedded on the next
        assert node.stats.gate_overrides == node.stats.faces_embedded >= len(faces)
        assert gated >= len(faces) * after


def test_latency_series_stay_bounded_on_a_long_run():
    """Without an audit log to trim them, per-frame latency lists must still stay bounded."""
    st = NodeStats()
    for i in range(5 * NodeStats.KEEP + 5):
        st.record(st.zeroize_latency_s, float(i))
    assert NodeStats.KEEP <= len(st.zeroize_latency_s) <= 2 * NodeStats.KEEP
    assert st.zeroize_latency_s[-1] == 5 * NodeStats.KEEP + 4  # the newest are kept
