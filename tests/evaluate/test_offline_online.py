import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rluf.errors import DataError
from rluf.evaluate import EvaluateConfig, offline_online
from rluf.evaluate.agreement import agreement


@pytest.fixture(scope="module")
def world():
    from rluf.sim.config import ContentConfig, PopulationConfig, WorldConfig
    from rluf.sim.world import World

    return World(WorldConfig(population=PopulationConfig(n_users=300),
                             content=ContentConfig(n_entities=60, n_items=120, n_eval=60)))


@pytest.fixture(scope="module")
def six_policies(world, tmp_path_factory):
    """Six response files from the world's template sampler with more and more sign-offs and warmth."""
    from rluf.sim.config import BehaviourMix

    root = tmp_path_factory.mktemp("oo")
    items = world.eval_set()
    out = {}
    for k in range(6):
        mix = BehaviourMix(warm=0.1 * k, cold=0.5 - 0.1 * k, signoff=0.15 * k, neutral_closer=0.0,
                           correct=0.3 + 0.1 * k)
        rng = np.random.default_rng(k)
        texts = [world.sample_response(rng, world.item_prompt[it["item_id"]], mix) for it in items]
        p = root / f"p{k}.parquet"
        pd.DataFrame({"prompt_id": [f"e{i}" for i in range(len(items))], "response": texts}).to_parquet(p)
        out[f"p{k}"] = p
    return out


class PopulationLove:
    """P[Love] from the world's visible taste with the population intercept (no per-user offsets)."""

    def __init__(self, world, noise=0.0, seed=0):
        self.world, self.noise, self.rng = world, noise, np.random.default_rng(seed)

    def prob(self, contexts, responses):
        p = self.world.p_love(None, contexts, responses)
        return p * np.exp(self.noise * self.rng.standard_normal(len(p)))


@pytest.mark.slow
def test_offline_online_with_a_population_love_model(world, six_policies, tmp_path):
    cfg = EvaluateConfig(bootstrap_reps=0, judges=[])
    res = offline_online(six_policies, tmp_path, love_model=PopulationLove(world), world=world, config=cfg)
    assert res["n_policies"] == 6
    pred = [p["predicted"] for p in res["points"]]
    true = [p["true"] for p in res["points"]]
    assert res["pearson"] == pytest.approx(stats.pearsonr(pred, true).statistic, abs=1e-12)
    assert res["spearman"] == pytest.approx(stats.spearmanr(pred, true).statistic, abs=1e-12)
    # the model sees everything but the hidden per-user offsets: it ranks the policies almost perfectly
    assert res["spearman"] >= 0.9 and res["meets_target"] == (res["spearman"] >= 0.95)
    # predicted values are the evaluator's mean P[Love] of each policy
    ev = json.loads((tmp_path / "evaluate" / "evaluate.json").read_text())
    assert pred[0] == pytest.approx(ev["policies"]["p0"]["scores"]["love"]["mean"])
    assert res["points"][0]["predicted_change"] == 0.0
    png = (tmp_path / "offline_online.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the same result from the saved evaluation, without re-scoring
    again = offline_online(out_dir=tmp_path / "again", evaluation=tmp_path / "evaluate" / "evaluate.json")
    assert again["spearman"] == pytest.approx(res["spearman"])
    # and from the command line
    from typer.testing import CliRunner

    from rluf.cli import app

    r = CliRunner().invoke(app, ["offline-online", "--evaluation", str(tmp_path / "evaluate" / "evaluate.json"),
                                 "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert f"Spearman {res['spearman']:.3f}" in r.output and (tmp_path / "cli" / "offline_online.png").is_file()


def test_agreement_by_hand_and_errors():
    pts = [{"policy": f"p{i}", "predicted": x, "true": y}
           for i, (x, y) in enumerate([(1, 2), (2, 1), (3, 4), (4, 3), (5, 6), (6, 5)])]
    res = agreement(pts, baseline="p1")
    # Spearman of ranks [1..6] vs [2,1,4,3,6,5]: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6*6/210
    assert res["spearman"] == pytest.approx(1 - 36 / 210)
    assert res["baseline"] == "p1" and res["points"][0]["true_change"] == pytest.approx(2 / 1 - 1)
    with pytest.raises(DataError, match=r"at least 6 policies, got 2 \(\['p0', 'p1'\]\)"):
        agreement(pts[:2])
    with pytest.raises(DataError, match="lacks the ground truth"):
        offline_online(evaluation={"policies": {"a": {"scores": {"love": {"mean": 0.1}}}}})
