"""A simulated A/B test end to end: the real simulator deploys two policies, the analysis measures the lift.

The two policies are the world's own template sampler with two behaviour mixes (a Policy subclass, so no
model training is needed): the treatment is warmer and more often correct, which the simulated users love.
"""

import json

import duckdb
import numpy as np
import pytest

from rluf.abtest import AnalyzeConfig
from rluf.abtest.simulated import simulate
from rluf.errors import ConfigError
from rluf.policy import Policy


class TemplatePolicy(Policy):
    def __init__(self, world, mix):  # no HF model: answers come from the world's template sampler
        self.world, self.mix = world, mix

    def generate(self, contexts, n=1, sampling=None, batch_size=64, generator_seed=None):
        from rluf.sim.language import parse_context

        rng = np.random.default_rng(generator_seed)
        return [[self.world.sample_response(rng, parse_context(c), self.mix) for _ in range(n)] for c in contexts]


@pytest.fixture(scope="module")
def sim_ab(tmp_path_factory):
    from rluf.sim import World, WorldConfig
    from rluf.sim.config import BehaviourMix

    cfg = WorldConfig.model_validate({
        "seed": 3, "population": {"n_users": 3000}, "signals": {"natural_love_rate": 0.01},
        "content": {"n_entities": 60, "n_items": 150, "n_eval": 50, "n_train_prompts": 50},
        "time": {"horizon_days": 7, "burst_day": 3}, "pool": {"answers_per_message": 4},
        "pairs": {"n_helpfulness": 10, "n_safety": 10},
    })
    world = World(cfg)
    control = TemplatePolicy(world, BehaviourMix())
    treatment = TemplatePolicy(world, BehaviourMix(warm=0.7, cold=0.0, correct=0.9, on_topic=0.9,
                                                   unsafe_compliance=0.1))
    out = tmp_path_factory.mktemp("simab")
    res = simulate(control, treatment, out, config=cfg, analyze_config=AnalyzeConfig(bootstrap_reps=300))
    return out, res


@pytest.mark.slow
def test_simulated_ab_measures_the_true_lift(sim_ab):
    out, res = sim_ab
    assert json.loads((out / "abtest.json").read_text())["lift"] == pytest.approx(res["lift"])
    truth = res["true"]
    assert truth["lift"] > 0.2  # warmer, more correct answers: users love them more
    # the clustered CIs cover the simulator's true lift, and the measured lift is positive
    for ci in (res["delta"]["lift_ci"], res["bootstrap"]["lift_ci"]):
        assert ci[0] <= truth["lift"] <= ci[1]
    assert res["lift"] > 0 and res["delta"]["p_value"] < 0.05
    assert set(res["segments"]) <= {"factual", "advice", "chat", "unsafe", "lookalike"}
    assert truth["helpfulness_delta"] > 0 and truth["safety_violation_delta"] < 0


def test_simulated_ab_arms_split_users_and_exclude_flagged_accounts(sim_ab):
    out, res = sim_ab
    con = duckdb.connect()
    both = con.execute(
        "SELECT count(*) FROM (SELECT user_id FROM read_parquet(?) WHERE role = 'assistant' "
        "GROUP BY 1 HAVING count(DISTINCT model_id) > 1)", [str(out / "logs" / "messages.parquet")]).fetchone()[0]
    assert both == 0
    assert res["excluded"]["how"] == "filters" and res["excluded"]["users"] > 0
    n_users = res["control"]["users"] + res["treatment"]["users"]
    active = con.execute("SELECT count(DISTINCT user_id) FROM read_parquet(?) WHERE role = 'assistant'",
                         [str(out / "logs" / "messages.parquet")]).fetchone()[0]
    assert n_users == active - res["excluded_users"] or n_users < active


def test_bad_exclude_option(tmp_path):
    with pytest.raises(ConfigError, match="exclude = 'all': choose 'filters'"):
        simulate("a", "b", tmp_path, exclude="all")


def test_world_config_quick_and_seed(tmp_path):
    from rluf.abtest.simulated import world_config
    from rluf.sim import WorldConfig

    cfg = world_config(None, seed=5, quick=True)  # the packaged sim_quick.yaml
    assert cfg.seed == 5 and cfg.population.n_users == 600
    assert world_config(WorldConfig(), quick=True).population.n_users == 600
    assert world_config(WorldConfig(), seed=2).population.n_users == WorldConfig().population.n_users
    with pytest.raises(ConfigError, match="does not exist"):
        world_config(tmp_path / "nope.yaml")
