import json
from pathlib import Path

import pytest

from rluf.config import packaged_config
from rluf.errors import ConfigError
from rluf.run.config import RunConfig, load_run_config


@pytest.mark.parametrize("name", ["run.yaml", "run_quick.yaml"])
def test_shipped_run_configs_load(name):
    cfg = load_run_config(packaged_config(name))
    assert isinstance(cfg, RunConfig)
    assert cfg.quick == (name == "run_quick.yaml")


def test_unknown_section_is_an_error(tmp_path: Path):
    p = tmp_path / "run.yaml"
    p.write_text("seed: 1\noptimise: {}\n")  # British spelling of a section
    with pytest.raises(ConfigError, match="unknown key 'optimise'"):
        load_run_config(p)


def test_bad_stage_section_fails_before_anything_runs(tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    cfg = RunConfig(quick=True, optimize={"crraft": {"num_candidates": 0}})
    with pytest.raises(ConfigError, match="optimize"):
        resolve_stage_configs(cfg, tmp_path)
    assert not any(tmp_path.iterdir())


def test_baseline_backbone_resolves_to_the_runs_baseline_policy(tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    cfg = RunConfig(quick=True, reward_helpfulness={"model": {"backbone": "baseline"}})
    rewards = resolve_stage_configs(cfg, tmp_path)["rewards"]
    assert rewards["helpfulness"].model.backbone == str(tmp_path / "baseline")
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

    shipped = resolve_stage_configs(load_run_config(None), tmp_path)
    assert shipped["evaluate"].prompts.path == tmp_path / "curate"
    assert shipped["optimize"].eval.items == "deployment"  # the sweep's table: the A/B test's population
    held_out = resolve_stage_configs(RunConfig(quick=True, evaluate={"prompts": {"path": None}}), tmp_path)
    assert held_out["evaluate"].prompts.path is None  # the world's held-out questions


# What docs/run.md ("Modes") says both modes optimize with: the sweep's runs and the Mixture of Judges.
PAPER_SWEEP = {"love_0.0": {"helpfulness": 0.7, "safety": 0.3, "love": 0.0},
               "love_0.1": {"helpfulness": 0.7, "safety": 0.3, "love": 0.1},
               "love_0.3": {"helpfulness": 0.7, "safety": 0.3, "love": 0.3},
               "love_only": {"love": 1.0}}
JUDGES = ["length", "degenerate", "exact_answer", "false_refusal"]


def test_sweep_needs_one_candidate_and_rejects_the_old_candidate_key(tmp_path: Path):
    p = tmp_path / "run.yaml"
    p.write_text("sweep: {candidate: love_0.3}\n")
    with pytest.raises(ConfigError, match=r"sweep: 'candidate' was renamed to 'runs.<name>.role'"):
        load_run_config(p)
    p.write_text("sweep: {extra_runs: {mine: {weights: {love: 0.2}, role: candidate}}}\n")
    with pytest.raises(ConfigError, match=r"exactly one sweep run needs `role: candidate`.*love_0.1.*mine"):
        load_run_config(p)


@pytest.mark.parametrize("quick", [False, True], ids=["default", "quick"])
def test_both_modes_optimize_with_the_documented_judges_weights_and_sweep(quick, tmp_path: Path):
    from rluf.run.pipeline import resolve_stage_configs

    cfg = load_run_config(None, quick=quick)
    stages = resolve_stage_configs(cfg, tmp_path)
    opt = stages["optimize"]
    assert [j.type for j in opt.judges] == JUDGES
    assert (opt.judges[0].min_words, opt.judges[0].max_words) == (1, 60)
    assert opt.weights == {"helpfulness": 0.7, "safety": 0.3, "love": 0.1}
    assert set(opt.objectives) == {"love", "helpfulness", "safety"}
    extra = {"helpfulness_only": {"helpfulness": 1.0}} if quick else {}
    assert {name: run.weights for name, run in cfg.sweep.all_runs().items()} == PAPER_SWEEP | extra
    assert cfg.sweep.candidate == "love_0.1"
    assert [j.type for j in stages["evaluate"].judges] == ["degenerate", "regex", "length", "exact_answer",
                                                            "false_refusal"]
    assert stages["rewards"]["love"].train.epochs == (2 if quick else 3)  # docs/run.md, "Modes"


def test_source_replaces_the_simulator_and_names_what_is_missing():
    from rluf.errors import ConfigError
    from rluf.run.config import load_run_config

    source = {"logs": "sqlite:///x/rluf.db", "policy": "p", "pairs.safety": "s.jsonl"}
    cfg = load_run_config(None, source=source)
    assert cfg.source.logs == "sqlite:///x/rluf.db" and cfg.simulate == {} and not cfg.quick
    with pytest.raises(ConfigError, match="reward_models.safety"):
        load_run_config(None, source={"logs": "l", "policy": "p"})
    with pytest.raises(ConfigError, match="replaces the simulator"):
        load_run_config(None, quick=True, source={"logs": "l", "policy": "p", "pairs.safety": "s"},
                        overrides=["simulate.n_users=10"])


def test_run_with_logs_and_policy_options_stops_on_missing_logs(tmp_path):
    """`rluf run --logs --policy --pairs-safety` builds the `source` section; a logs path that does not exist
    stops the run at its first stage, naming the field."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "rluf", "run", "--logs", str(tmp_path / "nowhere.jsonl"),
                        "--policy", str(tmp_path / "policy"), "--pairs-safety", "pairs.jsonl",
                        "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    said = " ".join((r.stderr + r.stdout).split())  # the console wraps long paths at its width
    assert "source.logs" in said and "does not exist" in said
    saved = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert saved["source"]["pairs"]["safety"] == "pairs.jsonl" and saved["simulate"] == {}
