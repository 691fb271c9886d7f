import pytest

from rluf.config import StrictModel, load_config
from rluf.errors import ConfigError


class Section(StrictModel):
    k: int = 10


class Cfg(StrictModel):
    seed: int = 0
    section: Section = Section()


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\nsection:\n  kk: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml[\s\S]*unknown key 'section\.kk'"):
        load_config(Cfg, p)


def test_wrong_type_names_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: abc\n")
    with pytest.raises(ConfigError, match=r"seed = 'abc'"):
        load_config(Cfg, p)


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(Cfg, None, {"seed": 3})
    assert cfg.seed == 3 and cfg.section.k == 10


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Cfg, tmp_path / "nope.yaml")
