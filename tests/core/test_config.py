from pathlib import Path

import pytest

from rluf.config import StrictModel, load_config, nest_overrides, packaged_config, packaged_names
from rluf.errors import ConfigError


class Section(StrictModel):
    size: int = 10
    renamed_keys = {"k": "size"}


class Cfg(StrictModel):
    seed: int = 0
    weights: dict[str, float] = {"a": 0.7, "b": 0.3}
    section: Section = Section()


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("seed: 1\nsection:\n  kk: 3\n", r"c\.yaml[\s\S]*unknown key 'section\.kk'"),
        ("section:\n  k: 3\n", r"c\.yaml[\s\S]*section: .*'k' was renamed to 'size'"),
        ("seed: abc\n", r"seed = 'abc'"),
    ],
    ids=["unknown_key", "renamed_key", "wrong_type"],
)
def test_config_error_names_the_problem(tmp_path, text, pattern):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(Cfg, p)


def test_dotted_overrides_merge_into_defaults_and_file(tmp_path):
    assert load_config(Cfg, None, {"seed": 3, "section.size": None}).model_dump() == {
        "seed": 3, "weights": {"a": 0.7, "b": 0.3}, "section": {"size": 10}}
    p = tmp_path / "c.yaml"
    p.write_text("section: {size: 4}\n")
    cfg = load_config(Cfg, p, ["weights.b=0.5", "seed=7"])
    assert (cfg.seed, cfg.weights, cfg.section.size) == (7, {"a": 0.7, "b": 0.5}, 4)
    assert nest_overrides({"a.b.c": 1, "a": {"b": {"d": 2}}, "x": None}) == {"a": {"b": {"c": 1, "d": 2}}}
    assert nest_overrides({"runs": {"love_0.1": {}}}) == {"runs": {"love_0.1": {}}}


def test_bad_override_is_clear():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(Cfg, None, ["seed"])
    with pytest.raises(ConfigError, match=r"with overrides[\s\S]*seed = 'x'"):
        load_config(Cfg, None, ["seed=x"])


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Cfg, tmp_path / "nope.yaml")


def test_missing_packaged_config_is_an_error():
    with pytest.raises(ConfigError, match=r"no packaged config 'optimize_quick.yaml'.*optimize\.yaml"):
        packaged_config("optimize_quick.yaml")
    with pytest.raises(ConfigError, match="no packaged config"):
        load_config(Cfg, "optimize_quick.yaml")
    with pytest.raises(ConfigError, match=r"nope/x\.yaml does not exist"):
        load_config(Cfg, Path("nope/x.yaml"))


def test_a_bare_name_is_a_packaged_config_as_a_path_too():
    from rluf.optimize.config import OptimizeConfig

    assert load_config(OptimizeConfig, Path("optimize_guarded.yaml")).judges[-1].name == "signoff"


def _examples():
    from rluf.abtest.analyze import AnalyzeConfig
    from rluf.evaluate.config import EvaluateConfig
    from rluf.ingest.config import IngestConfig
    from rluf.optimize.config import OptimizeConfig
    from rluf.rewards.config import RewardConfig
    from rluf.serve.config import ServeConfig
    from rluf.signals.config import CurateConfig
    from rluf.sim.config import WorldConfig

    return {
        "abtest.yaml": AnalyzeConfig(), "curate.yaml": CurateConfig(), "evaluate.yaml": EvaluateConfig(),
        "ingest.yaml": IngestConfig(), "optimize.yaml": OptimizeConfig(), "serve.yaml": ServeConfig(),
        "sim.yaml": WorldConfig(),
        **{f"reward_{o}.yaml": RewardConfig(objective=o) for o in ("love", "helpfulness", "safety")},
    }


# Packaged files that are named sets of overrides, not restated defaults.
OVERRIDE_FILES = {"sim_quick.yaml", "optimize_guarded.yaml", "run.yaml", "run_quick.yaml"}


def test_every_packaged_config_is_an_example_or_an_override_file():
    assert set(packaged_names()) == set(_examples()) | OVERRIDE_FILES


@pytest.mark.parametrize("name", sorted(_examples()))
def test_packaged_example_restates_the_models_defaults(name):
    """The pydantic model is the one source of each default: a packaged example may only repeat it."""
    default = _examples()[name]
    loaded = load_config(type(default), name)
    differ = _diff(loaded.model_dump(mode="json"), default.model_dump(mode="json"))
    assert not differ, f"{name} states values that differ from {type(default).__name__}(): {differ}"


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _diff(a.get(k), b.get(k), f"{path}.{k}".lstrip("."))]
    return [] if a == b else [f"{path}: yaml {a!r} vs model {b!r}"]
