import pytest

from rluf.config import load_config
from rluf.errors import ConfigError
from rluf.sim import WorldConfig, quick_config


@pytest.mark.parametrize("name", ["sim.yaml", "sim_quick.yaml"])
def test_shipped_yaml_loads(name):
    cfg = load_config(WorldConfig, name)
    assert cfg.population.n_users >= 10


def test_yaml_mirror_the_model():
    assert load_config(WorldConfig, "sim.yaml") == WorldConfig()
    assert load_config(WorldConfig, "sim_quick.yaml") == quick_config(WorldConfig())
    assert quick_config(WorldConfig(seed=7)).seed == 7


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "w.yaml"
    p.write_text("population:\n  n_user: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'population.n_user'.*") as e:
        load_config(WorldConfig, p)
    assert str(p) in str(e.value)
