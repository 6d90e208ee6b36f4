"""node.app builds pipelines around injected models: several cameras can share one pair."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import load_config
from edge.face.registry import load_face_models
from edge.link.schema import Alert
from edge.node.app import build_node
from edge.node.pipeline import Node
from edge.node.sources import open_source
from edge.watchlist.index import Entry, Subject, Watchlist, WatchlistMeta
from tests.conftest import on_canvas, pad


class ListSink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        assert jpeg[:3] == b"\xff\xd8\xff"
        self.alerts.append(alert)


def _cfg(console: bool = False):
    return load_config(overrides={"alerts": {"console": console}, "privacy": {"lock_memory": False},
                                  "tracker": {"enabled": False}})


def _watchlist(engine, sample_images: Path) -> Watchlist:
    group = engine.faces(cv2.imread(str(sample_images / "t1.jpg")))
    other = engine.faces(cv2.imread(str(sample_images / "Tom_Hanks_54745.png")), pad=0.5)
    emb = {"G": group[0].embedding, "T": other[0].embedding}
    subjects = {s: Subject(s, f"Subject {s}", "test") for s in emb}
    entries = [Entry(f"{s}/1", s, "ref.jpg") for s in emb]
    return Watchlist(WatchlistMeta(deployment_id="test"), subjects, entries, np.stack(list(emb.values())))


def _folder(tmp: Path, name: str, image: np.ndarray, n: int) -> Path:
    d = tmp / name
    d.mkdir()
    for i in range(n):
        cv2.imwrite(str(d / f"{i:03d}.png"), image)
    return d


def _interleaved(nodes: list[Node], folders: list[Path]) -> None:
    """Frames of both cameras, one after the other, through pipelines that share the models."""
    streams = [open_source(str(f), node.ring).frames() for node, f in zip(nodes, folders, strict=True)]
    live = list(range(len(nodes)))
    while live:
        for k in list(live):
            frame = next(streams[k], None)
            if frame is None:
                live.remove(k)
                continue
            nodes[k].process(frame)
            assert nodes[k].bufs.is_clear(), "each pipeline zeroes its own buffers per frame"


def test_two_pipelines_share_one_model_pair(models_ready, engine, sample_images, tmp_path):
    cfg = _cfg()
    wl = _watchlist(engine, sample_images)
    group_img = cv2.imread(str(sample_images / "t1.jpg"))
    other_img = on_canvas(pad(cv2.imread(str(sample_images / "Tom_Hanks_54745.png")), 0.3))
    folders = [_folder(tmp_path, "cam-a", group_img, 3), _folder(tmp_path, "cam-b", other_img, 3)]

    shared = load_face_models(cfg)
    sinks = [ListSink(), ListSink()]
    nodes = [build_node(cfg, wl, models=shared, sink=s) for s in sinks]
    assert nodes[0].detector is nodes[1].detector is shared.detector
    assert nodes[0].embedder is nodes[1].embedder is shared.embedder
    assert nodes[0].bufs is not nodes[1].bufs and nodes[0].tracker is not nodes[1].tracker
    _interleaved(nodes, folders)

    # each camera saw its own faces and alerted its own person, never the other camera's
    assert nodes[0].stats.faces_seen == 3 * 6 and nodes[1].stats.faces_seen == 3
    assert {a.subject_id for a in sinks[0].alerts} == {"G"}
    assert {a.subject_id for a in sinks[1].alerts} == {"T"}

    # and exactly as a pipeline with models of its own scores them
    alone = [ListSink(), ListSink()]
    for folder, sink in zip(folders, alone, strict=True):
        node = build_node(cfg, wl, sink=sink)
        assert node.detector is not shared.detector
        node.run(open_source(str(folder), node.ring))
    for got, want in zip(sinks, alone, strict=True):
        assert [(a.subject_id, a.frame_index, a.bbox) for a in got.alerts] == \
               [(a.subject_id, a.frame_index, a.bbox) for a in want.alerts]
        assert [a.score for a in got.alerts] == pytest.approx([a.score for a in want.alerts], abs=1e-4)


def test_console_line_is_a_sink(models_ready, engine, sample_images, tmp_path, capsys):
    wl = _watchlist(engine, sample_images)
    folder = _folder(tmp_path, "cam", cv2.imread(str(sample_images / "t1.jpg")), 1)
    quiet = build_node(_cfg(console=False), wl)
    quiet.run(open_source(str(folder), quiet.ring))
    assert quiet.stats.alerts == 1 and "ALERT" not in capsys.readouterr().out
    loud = build_node(_cfg(console=True), wl, models=load_face_models(_cfg()))
    loud.run(open_source(str(folder), loud.ring))
    out = capsys.readouterr().out
    assert out.count("ALERT") == 1 and "subject=G" in out
