from importlib import resources

import pytest
import yaml

from rluf.config import load_config
from rluf.errors import ConfigError
from rluf.serve import ServeConfig
from rluf.serve.config import LimitsConfig


def test_shipped_yaml_loads():
    path = resources.files("rluf") / "configs" / "serve.yaml"
    cfg = load_config(ServeConfig, path)
    assert cfg.experiment.arms[0].backend in cfg.backends
    assert cfg.reactions.types == ["love", "like", "dislike"]
    assert cfg.cors_origins == [] and cfg.log_text is False


def test_defaults_serve_the_simulator_policy():
    cfg = load_config(ServeConfig, None)
    assert cfg.backends["baseline"].kind == "local"
    assert cfg.backends["baseline"].path == "runs/default/policy"
    assert cfg.database.url.startswith("sqlite:///")


def _write(tmp_path, text):
    p = tmp_path / "serve.yaml"
    p.write_text(text)
    return p


def test_shares_must_sum_to_one(tmp_path):
    p = _write(tmp_path, """
backends: {a: {kind: openai, base_url: "http://x/v1"}}
experiment:
  arms: [{name: c, backend: a, share: 0.5}, {name: t, backend: a, share: 0.4}]
""")
    with pytest.raises(ConfigError, match=r"serve\.yaml[\s\S]*shares .* sum to 0\.9; they must sum to 1"):
        load_config(ServeConfig, p)


def test_arm_backend_must_exist(tmp_path):
    p = _write(tmp_path, """
backends: {a: {kind: openai, base_url: "http://x/v1"}}
experiment: {arms: [{name: c, backend: nope, share: 1.0}]}
""")
    with pytest.raises(ConfigError, match=r"experiment\.arms\[0\]\.backend = 'nope' is not a key of backends \['a'\]"):
        load_config(ServeConfig, p)


def test_backend_needs_its_target(tmp_path):
    p = _write(tmp_path, "backends: {a: {kind: openai}}\nexperiment: {arms: [{name: c, backend: a, share: 1}]}\n")
    with pytest.raises(ConfigError, match=r"backends\.a.*needs `base_url`"):
        load_config(ServeConfig, p)


def test_unknown_key_and_bad_reaction_types(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'limits\.max_msgs'"):
        load_config(ServeConfig, _write(tmp_path, "limits: {max_msgs: 3}\n"))
    with pytest.raises(ConfigError, match=r"reactions\.types.*distinct"):
        load_config(ServeConfig, _write(tmp_path, "reactions: {types: [love, love]}\n"))


def test_shipped_yaml_sets_every_limit():
    """serve.yaml lists every limits field (docs/serve.md's table), with the code's defaults."""
    path = resources.files("rluf") / "configs" / "serve.yaml"
    shipped = yaml.safe_load(path.read_text())["limits"]
    assert set(shipped) == set(LimitsConfig.model_fields)
    assert LimitsConfig(**shipped) == LimitsConfig()
