"""The registry covers every configurable model, and only through its tables (model-free)."""

from __future__ import annotations

import itertools
import typing

import pytest

from edge.config import DetectorSection, RecognizerSection
from edge.errors import ConfigError
from edge.face import registry
from edge.face.detectors.scrfd import ScrfdDetector
from edge.face.detectors.yunet_onnx import YuNetOrtDetector
from edge.face.detectors.yunet_opencv import YuNetDetector
from edge.face.embedders.insightface_pack import load_insightface_pack
from edge.face.embedders.onnx_file import load_onnx_file
from edge.face.embedders.sface import load_sface

pytestmark = pytest.mark.unit


def _choices(section: type, field: str) -> tuple[str, ...]:
    return typing.get_args(section.model_fields[field].annotation)


def test_every_configurable_detector_and_recogniser_has_an_implementation():
    kinds, backends = _choices(DetectorSection, "kind"), _choices(DetectorSection, "backend")
    assert kinds and backends
    assert set(registry.DETECTORS) == set(itertools.product(kinds, backends))
    assert set(registry.EMBEDDERS) == set(_choices(RecognizerSection, "kind"))


def test_each_configured_kind_gets_its_class():
    assert registry.DETECTORS[("yunet", "onnxruntime")] is YuNetOrtDetector
    assert registry.DETECTORS[("yunet", "opencv")] is YuNetDetector
    # an insightface pack's detector runs on ONNX Runtime whatever the YuNet backend says
    assert registry.DETECTORS[("insightface", "onnxruntime")] is ScrfdDetector
    assert registry.DETECTORS[("insightface", "opencv")] is ScrfdDetector
    assert registry.EMBEDDERS == {"sface": load_sface, "insightface": load_insightface_pack,
                                  "onnx": load_onnx_file}


def test_a_kind_missing_from_the_table_is_a_config_error(monkeypatch):
    monkeypatch.setattr(registry, "DETECTORS", {})
    monkeypatch.setattr(registry, "EMBEDDERS", {})
    with pytest.raises(ConfigError, match="no such detector"):
        registry.make_detector(DetectorSection())
    with pytest.raises(ConfigError, match="no such recogniser"):
        registry.make_embedder(RecognizerSection())


def test_make_detector_calls_the_table_entry(monkeypatch):
    seen = []
    monkeypatch.setitem(registry.DETECTORS, ("yunet", "onnxruntime"),
                        lambda cfg, models_dir: seen.append((cfg.kind, models_dir)) or "detector")
    assert registry.make_detector(DetectorSection(), "/models") == "detector"
    assert seen == [("yunet", "/models")]
