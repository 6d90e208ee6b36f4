"""Device and backend selection: what each config asks for, what this machine gives, and the one
log line when a GPU (or torch) asked for is not there."""

from __future__ import annotations

import logging

import pytest

from edge.config import DetectorSection, RecognizerSection, load_config
from edge.errors import ConfigError
from edge.face import device as dev
from edge.face.detectors.yunet_onnx import YuNetOrtDetector
from edge.face.embedders.onnx_embedder import Embedder
from edge.face.registry import make_detector, make_embedder

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _notices(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edge.face.device"]


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(dev.ort, "get_available_providers", lambda: list(CPU_ONLY))


@pytest.fixture
def cuda_listed(monkeypatch):
    """onnxruntime-gpu installed (its CUDA provider listed), whatever the hardware."""
    monkeypatch.setattr(dev.ort, "get_available_providers", lambda: list(WITH_CUDA))


@pytest.mark.unit
def test_config_takes_device_and_backend_and_refuses_others():
    cfg = load_config(overrides={"detector": {"device": "cuda", "backend": "torch"},
                                 "recognizer": {"device": "cpu", "backend": "torch"}})
    assert (cfg.detector.device, cfg.detector.backend) == ("cuda", "torch")
    assert (cfg.recognizer.device, cfg.recognizer.backend) == ("cpu", "torch")
    assert load_config().detector.device == load_config().recognizer.device == "auto"
    with pytest.raises(ConfigError, match="detector.device"):
        load_config(overrides={"detector": {"device": "gpu"}})
    with pytest.raises(ConfigError, match="recognizer.backend"):
        load_config(overrides={"recognizer": {"backend": "opencv"}})


@pytest.mark.unit
@pytest.mark.parametrize("device", ["cpu", "auto", "cuda"])
def test_cpu_only_onnxruntime_runs_on_cpu_with_one_line_unless_cpu_was_asked(cpu_only, caplog, device):
    caplog.set_level(logging.INFO, logger="edge.face.device")
    p = dev.resolve("recognizer", "onnxruntime", device, WITH_CUDA)
    assert p == dev.Placement("onnxruntime", "cpu", ("CPUExecutionProvider",))
    assert dev.ort_device(p) is None  # host FaceBuffers bound in place: the default CPU path
    lines = _notices(caplog)
    if device == "cpu":
        assert lines == []
        return
    assert len(lines) == 1
    msg = lines[0].getMessage()
    assert msg.startswith("recognizer: device = ") and "running on the CPU" in msg
    assert "CUDAExecutionProvider" in msg and "[gpu]" in msg
    assert lines[0].levelno == (logging.WARNING if device == "cuda" else logging.INFO)


@pytest.mark.unit
def test_auto_without_cuda_in_the_providers_is_not_a_fallback(cuda_listed, caplog):
    caplog.set_level(logging.INFO, logger="edge.face.device")
    assert dev.resolve("detector", "onnxruntime", "auto", CPU_ONLY).device == "cpu"
    assert _notices(caplog) == []


@pytest.mark.unit
def test_cuda_provider_listed_puts_the_model_on_the_gpu(cuda_listed, caplog):
    caplog.set_level(logging.INFO, logger="edge.face.device")
    p = dev.resolve("detector", "onnxruntime", "auto", WITH_CUDA)
    assert p.on_gpu and p.providers == tuple(WITH_CUDA) and dev.ort_device(p) == "cuda"
    # cuda asked for by name even when the providers list left it out
    assert dev.resolve("detector", "onnxruntime", "cuda", CPU_ONLY).providers == tuple(WITH_CUDA)
    assert dev.resolve("detector", "onnxruntime", "cpu", WITH_CUDA).providers == ("CPUExecutionProvider",)
    assert _notices(caplog) == []


@pytest.mark.unit
def test_a_cuda_session_that_came_up_on_the_cpu_is_one_warning(cuda_listed, caplog):
    caplog.set_level(logging.INFO, logger="edge.face.device")
    p = dev.resolve("recognizer", "onnxruntime", "cuda", WITH_CUDA)
    assert dev.confirm("recognizer", p, WITH_CUDA) is p
    assert _notices(caplog) == []
    back = dev.confirm("recognizer", p, CPU_ONLY)
    assert back.device == "cpu" and dev.ort_device(back) is None
    lines = _notices(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "did not start" in lines[0].getMessage()


@pytest.mark.unit
@pytest.mark.parametrize("device", ["cpu", "auto", "cuda"])
def test_torch_missing_falls_back_to_onnxruntime_on_cpu_with_one_line(monkeypatch, caplog, device):
    monkeypatch.setattr(dev, "torch_missing", lambda: "torch is not installed (pip install ...)")
    caplog.set_level(logging.INFO, logger="edge.face.device")
    p = dev.resolve("detector", "torch", device, WITH_CUDA)
    assert p == dev.Placement("onnxruntime", "cpu", ("CPUExecutionProvider",))
    lines = _notices(caplog)
    assert len(lines) == 1 and "backend = 'torch' and torch is not installed" in lines[0].getMessage()


@pytest.mark.unit
def test_torch_missing_reason_names_the_package_and_the_extra(monkeypatch):
    monkeypatch.setattr(dev.importlib.util, "find_spec", lambda name: None)
    assert dev.torch_missing() == "torch is not installed (pip install 'edge-face-node[gpu]')"


@pytest.mark.unit
def test_opencv_backend_asked_for_cuda_says_it_runs_on_the_cpu(caplog):
    caplog.set_level(logging.INFO, logger="edge.face.device")
    assert dev.resolve("detector", "opencv", "cuda", WITH_CUDA) == dev.Placement("opencv", "cpu")
    assert len(_notices(caplog)) == 1


@pytest.mark.parametrize("device", ["cpu", "auto", "cuda"])
def test_models_load_on_this_machine_with_at_most_one_line_each(models_ready, cpu_only, caplog, device):
    """On a machine without CUDA every device choice gives the tuned CPU path: host buffers
    bound in place, no device tensors."""
    caplog.set_level(logging.INFO, logger="edge.face.device")
    det = make_detector(DetectorSection(device=device))
    emb = make_embedder(RecognizerSection(device=device))
    assert isinstance(det, YuNetOrtDetector) and isinstance(emb, Embedder)
    assert det.io_device is None and emb.io_device is None
    assert det.providers == emb.providers == ["CPUExecutionProvider"]
    lines = [r.getMessage() for r in _notices(caplog)]
    assert len(lines) == (0 if device == "cpu" else 2)
    assert sorted(m.split(":")[0] for m in lines) == ([] if device == "cpu" else ["detector", "recognizer"])


def test_torch_backend_without_torch_loads_the_onnxruntime_models(models_ready, monkeypatch, caplog):
    monkeypatch.setattr(dev, "torch_missing", lambda: "torch is not installed")
    caplog.set_level(logging.INFO, logger="edge.face.device")
    det = make_detector(DetectorSection(backend="torch", device="cuda"))
    emb = make_embedder(RecognizerSection(backend="torch", device="cuda"))
    assert isinstance(det, YuNetOrtDetector) and type(det) is YuNetOrtDetector
    assert isinstance(emb, Embedder) and det.io_device is None and emb.io_device is None
    assert len(_notices(caplog)) == 2  # one per model, none from the CPU models it loads instead
