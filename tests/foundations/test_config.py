import os
import subprocess

import pytest

from edge.config import DEFAULT_CONFIG, load_config
from edge.errors import ConfigError
from tests.conftest import EDGE, REPO

pytestmark = pytest.mark.unit


def test_default_config_copy_is_identical():
    assert (REPO / "config" / "default.toml").read_bytes() == DEFAULT_CONFIG.read_bytes()


def test_example_deployment_config_is_valid():
    cfg = load_config(REPO / "config" / "example-deployment.toml")
    assert cfg.node.node_id != "edge-node-1"


def test_example_site_config_is_valid():
    from edge.node.camera import camera_specs

    cfg = load_config(REPO / "config" / "example-site.toml")
    specs = camera_specs(cfg)
    assert [s.name for s in specs] == ["entrance-a", "entrance-b", "concourse"]
    assert specs[1].threshold == 0.65 and specs[2].zone is not None
    assert all(s.stream.rtsp_transport == "tcp" for s in specs)


def test_every_default_key_is_in_default_toml():
    """default.toml lists every key of every section (commented when it has no value)."""
    from edge.config import Config

    text = DEFAULT_CONFIG.read_text()
    for section, field in Config.model_fields.items():
        if section == "cameras":
            assert "[[cameras]]" in text
            continue
        assert f"[{section}]" in text
        sub = field.annotation.model_fields  # type: ignore[union-attr]
        for key, f in sub.items():
            nested = getattr(f.annotation, "model_fields", None)
            if nested is not None:  # a sub-table, e.g. [alerts.nats], with its own keys
                assert f"[{section}.{key}]" in text, f"[{section}.{key}] missing"
                for k in nested:
                    assert f"\n{k} =" in text or f"\n# {k} =" in text, f"{section}.{key}.{k}"
                continue
            assert f"\n{key} =" in text or f"\n# {key} =" in text, f"{section}.{key} missing"


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[match]\ntreshold = 0.5\n")
    with pytest.raises(ConfigError, match=r"match\.treshold: unknown key"):
        load_config(p)


def test_out_of_range_value_is_named(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[detector]\nmin_face_px = 2\n")
    with pytest.raises(ConfigError, match=r"detector\.min_face_px"):
        load_config(p)


def test_broken_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[match\nthreshold = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_zeroize_off_is_refused_without_test_switch(monkeypatch):
    from edge.privacy import FaceBuffers

    monkeypatch.delenv("EDGE_TEST_DISABLE_ZEROIZE", raising=False)
    with pytest.raises(ValueError, match="test-only"):
        FaceBuffers(4, 128, zeroize=False, lock=False)


def test_zeroize_off_in_config_is_one_line_at_load(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_TEST_DISABLE_ZEROIZE", raising=False)
    p = tmp_path / "c.toml"
    p.write_text("[privacy]\nzeroize = false\n")
    with pytest.raises(ConfigError, match="privacy.zeroize.*test-only") as e:
        load_config(p)
    assert "\n" not in str(e.value)
    r = subprocess.run(EDGE + ["run", "--source", "0", "--watchlist", str(tmp_path), "--config", str(p)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "EDGE_TEST_DISABLE_ZEROIZE"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "privacy.zeroize" in r.stderr
    monkeypatch.setenv("EDGE_TEST_DISABLE_ZEROIZE", "1")
    assert load_config(p).privacy.zeroize is False


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[alerts]\ncooldown_s = -1\n")
    r = subprocess.run(EDGE + ["run", "--source", "0", "--watchlist", str(tmp_path), "--config", str(p)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: config")
    assert "alerts.cooldown_s" in r.stderr
    assert "Traceback" not in r.stderr
