"""Config validation: clear ConfigErrors for unknown objectives, negative weights, K < 1; shipped YAMLs load."""


import pytest

from optimize.optimize_helpers import tiny_config
from rluf.config import load_config, validate_config
from rluf.errors import ConfigError
from rluf.optimize import optimize
from rluf.optimize.config import DEFAULT_WEIGHTS, OptimizeConfig
from rluf.optimize.objectives import load_objectives

CONFIGS = ["optimize.yaml", "optimize_guarded.yaml"]
OBJ = {"helpfulness": "h", "safety": "s", "love": "l"}


def test_every_shipped_optimize_yaml_loads():
    assert len(CONFIGS) >= 2
    for path in CONFIGS:
        cfg = load_config(OptimizeConfig, path)
        assert cfg.crraft.num_candidates >= 1 and cfg.judges, path
        cfg.check(list(OBJ))


def test_defaults_are_the_papers():
    cfg = OptimizeConfig()
    assert cfg.weights == DEFAULT_WEIGHTS == {"helpfulness": 0.7, "safety": 0.3, "love": 0.1}
    assert cfg.crraft.num_candidates == 4


def test_unknown_objective_name_is_a_clear_error():
    cfg = validate_config(OptimizeConfig, {"objectives": OBJ, "weights": {"lov": 0.1, "helpfulness": 0.7}})
    with pytest.raises(ConfigError, match=r"weights.lov: unknown objective 'lov'; configured objectives are "
                                          r"\['helpfulness', 'love', 'safety'\]"):
        cfg.check()


def test_negative_weight_is_a_clear_error():
    cfg = validate_config(OptimizeConfig, {"objectives": OBJ, "weights": {"love": -0.1, "helpfulness": 0.7}})
    with pytest.raises(ConfigError, match=r"weights.love = -0.1: weights must be >= 0"):
        cfg.check()


def test_all_zero_weights_is_an_error():
    cfg = validate_config(OptimizeConfig, {"objectives": OBJ, "weights": {"love": 0.0}})
    with pytest.raises(ConfigError, match="at least one objective needs a positive weight"):
        cfg.check()


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_is_a_clear_error(k):
    with pytest.raises(ConfigError, match=rf"crraft.num_candidates = {k}: K \(samples per prompt\) must be >= 1"):
        validate_config(OptimizeConfig, {"crraft": {"num_candidates": k}}, source="opt.yaml")


def test_unknown_key_and_bad_judge_type():
    with pytest.raises(ConfigError, match="unknown key 'crraft.kl_maxx'"):
        validate_config(OptimizeConfig, {"crraft": {"kl_maxx": 3}})
    with pytest.raises(ConfigError, match="judges.0"):
        validate_config(OptimizeConfig, {"judges": [{"type": "vibes"}]})


def test_reward_precision_and_gradient_checkpointing():
    cfg = OptimizeConfig()
    assert cfg.reward_precision == "auto" and cfg.crraft.gradient_checkpointing is False
    assert validate_config(OptimizeConfig, {"reward_precision": "bf16"}).reward_precision == "bf16"
    with pytest.raises(ConfigError, match=r"reward_precision = 'fp16': Input should be 'auto', 'bf16' or 'fp32'"):
        validate_config(OptimizeConfig, {"reward_precision": "fp16"}, source="opt.yaml")


def test_reward_precision_reaches_the_reward_models(tmp_path, monkeypatch, tiny_policy_dir, prompt_file):
    from rluf.rewards.scorer import Scorer

    class Loaded(Exception):
        pass

    def loaded(path, device="auto", precision="auto"):
        raise Loaded(precision)

    monkeypatch.setattr(Scorer, "from_pretrained", staticmethod(loaded))
    (tmp_path / "love").mkdir()
    cfg = tiny_config(tiny_policy_dir, prompt_file).model_copy(update={
        "objectives": {"love": str(tmp_path / "love")}, "weights": {"love": 1.0}, "reward_precision": "bf16"})
    with pytest.raises(Loaded, match="bf16"):
        optimize(cfg, tmp_path / "run")


def test_prompt_file_needs_a_path():
    with pytest.raises(ConfigError, match="prompts.path: required"):
        validate_config(OptimizeConfig, {"prompts": {"source": "file"}}).check(["helpfulness", "safety", "love"])


def test_objective_sources_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="no such reward-model folder"):
        load_objectives({"love": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="simulator truth needs prompts.source: sim"):
        load_objectives({"love": "sim:love"})
    with pytest.raises(ConfigError, match="cannot import"):
        load_objectives({"love": "py:no_such_module_xyz:Thing"})
    obj = load_objectives({"len": "py:rluf.optimize.objectives:LengthObjective"})["len"]
    assert obj.name == "len" and obj.score([[{"role": "user", "content": "q"}]], ["a b c"]).tolist() == [3.0]


@pytest.mark.parametrize(("data", "old", "new"), [
    ({"crraft": {"k": 8}}, "k", "num_candidates"),
    ({"monitor": {"top_k": 3}}, "top_k", "top_closings"),
])
def test_old_keys_name_their_new_names(data, old, new):
    with pytest.raises(ConfigError, match=rf"'{old}' was renamed to '{new}'"):
        validate_config(OptimizeConfig, data, source="opt.yaml")


def test_other_renamed_k_keys():
    from rluf.signals.config import CurateConfig
    from rluf.sim.config import WorldConfig

    with pytest.raises(ConfigError, match=r"context: 'k' was renamed to 'context_turns'"):
        validate_config(CurateConfig, {"context": {"k": 10}})
    with pytest.raises(ConfigError, match=r"pool: 'k' was renamed to 'answers_per_message'"):
        load_config(WorldConfig, None, {"pool.k": 6})
