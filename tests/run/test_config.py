from pathlib import Path

import pytest

from rluf.errors import ConfigError
from rluf.run.config import CONFIG_DIR, RunConfig, load_run_config


@pytest.mark.parametrize("name", ["run.yaml", "run_quick.yaml"])
def test_shipped_run_configs_load(name):
    cfg = load_run_config(CONFIG_DIR / name)
    assert isinstance(cfg, RunConfig)
    assert cfg.quick == (name == "run_quick.yaml")


def test_unknown_section_is_an_error(tmp_path: Path):
    p = tmp_path / "run.yaml"
    p.write_text("seed: 1\noptimise: {}\n")  # British spelling of a section
    with pytest.raises(ConfigError, match="unknown key 'optimise'"):
        load_run_config(p)


def test_bad_stage_section_fails_before_anything_runs(tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    cfg = RunConfig(quick=True, optimize={"crraft": {"k": 0}})
    with pytest.raises(ConfigError, match="optimize"):
        resolve_stage_configs(cfg, tmp_path)
    assert not any(tmp_path.iterdir())


def test_baseline_backbone_resolves_to_the_runs_simulated_policy(tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    cfg = RunConfig(quick=True, reward_helpfulness={"model": {"backbone": "baseline"}})
    rewards = resolve_stage_configs(cfg, tmp_path)["rewards"]
    assert rewards["helpfulness"].model.backbone == str(tmp_path / "simulate" / "policy")
    assert rewards["safety"].model.backbone != "baseline"


def test_love_can_start_from_the_runs_helpfulness_model_and_only_love(tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    cfg = RunConfig(quick=True, reward_love={"model": {"backbone": "reward_helpfulness"}})
    rewards = resolve_stage_configs(cfg, tmp_path)["rewards"]
    assert rewards["love"].model.backbone == str(tmp_path / "reward_helpfulness")
    bad = RunConfig(quick=True, reward_safety={"model": {"backbone": "reward_helpfulness"}})
    with pytest.raises(ConfigError, match="reward_safety.model.backbone.*reward_love only"):
        resolve_stage_configs(bad, tmp_path)


def test_offline_evaluation_reads_the_runs_curated_test_split_unless_told_otherwise(tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    shipped = resolve_stage_configs(load_run_config(CONFIG_DIR / "run.yaml"), tmp_path)
    assert shipped["evaluate"].prompts.path == tmp_path / "curate"
    assert shipped["optimize"].eval.items == "deployment"  # the sweep's table: the A/B test's population
    held_out = resolve_stage_configs(RunConfig(quick=True, evaluate={"prompts": {"path": None}}), tmp_path)
    assert held_out["evaluate"].prompts.path is None  # the world's held-out questions
