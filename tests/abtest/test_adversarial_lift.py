"""`rluf abtest analyze` in the adversarial grid's 8% world: with the filters the lift's CI covers the true
lift; the report gives the lift without them and what they left out."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from rluf.abtest.analyze import AnalyzeConfig, analyze
from rluf.abtest.simulated import true_rates
from rluf.sim.adversaries import template_arm
from rluf.sim.config import BehaviourMix, WorldConfig
from rluf.sim.traffic import deploy
from rluf.sim.world import World

KINDS = ("random_lover", "targeted_lover", "slow_spammer", "sybil", "burst")


@pytest.fixture(scope="module")
def ab_world(tmp_path_factory):
    """6,000 accounts, 8% adversarial (every kind), natural Love rate 0.5%; the treatment answers warmly and
    correctly more often (a true Love lift of +87%)."""
    cfg = WorldConfig.model_validate({
        "population": {"n_users": 6000, "adversarial_share": 0.08}, "signals": {"natural_love_rate": 0.005},
        "adversaries": {"mix": {k: 1.0 for k in KINDS}}, "pool": {"answers_per_message": 2}})
    world = World(cfg)
    better = BehaviourMix(warm=0.6, cold=0.05, correct=0.8, on_topic=0.85)
    arms = [template_arm(world, "control", k=2), template_arm(world, "treatment", k=2, seed=1, mix=better)]
    user_arm = (np.arange(len(world.user_ids)) % 2).astype(np.int64)
    tables = deploy(world, arms, user_arm, world.deploy_rng())
    out = tmp_path_factory.mktemp("ab8")
    (out / "logs").mkdir()
    (out / "truth").mkdir()
    for name in ("messages", "reactions", "users"):
        pq.write_table(tables[name], out / "logs" / f"{name}.parquet")
    pq.write_table(tables["truth_messages"], out / "truth" / "messages.parquet")
    return out


def test_filtered_lift_covers_the_true_lift_in_the_8_percent_world(ab_world):
    truth = true_rates(ab_world / "truth" / "messages.parquet", ("control", "treatment"))
    res = analyze(ab_world / "logs", "control", "treatment", config=AnalyzeConfig(bootstrap_reps=0))
    lo, hi = res["delta"]["lift_ci"]
    assert truth["lift"] > 0.2
    assert lo <= truth["lift"] <= hi
    f = res["filters"]
    assert f["excluded_accounts"] > 300 and f["excluded_events"] > 0
    assert f["unfiltered"]["lift"] < truth["lift"] - 0.1  # the adversaries' Loves dilute the lift
    assert set(f["by_rule"]) >= {"rate", "burst", "spam", "too_fast"}
    unfiltered_only = analyze(ab_world / "logs", "control", "treatment",
                              config=AnalyzeConfig(bootstrap_reps=0, filters=False))
    assert "filters" not in unfiltered_only
    assert unfiltered_only["lift"] == pytest.approx(f["unfiltered"]["lift"])
