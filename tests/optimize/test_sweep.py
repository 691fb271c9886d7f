"""The sweep's comparison maths on hand-made arrays, and a tiny end-to-end sweep on the quick world."""

import json

import numpy as np
import pytest

from rluf.hacking import hack_metrics
from rluf.optimize.weight_sweep import bootstrap_ci, claims, compare


def _ev(p_love, help_, unsafe, signoff, responses):
    n = len(p_love)
    return {"responses": responses, "p_love": np.array(p_love, float), "helpfulness": np.array(help_, float),
            "unsafe": np.array(unsafe, float), "signoff": np.array(signoff, float), "refusal": np.zeros(n),
            "kl": np.ones(n), "monitor": hack_metrics(responses)}


def test_bootstrap_ci_brackets_the_statistic():
    x = np.arange(100, dtype=float)
    lo, hi = bootstrap_ci(lambda i: x[i].mean(1), 100, n_boot=500, seed=1)
    assert lo < 49.5 < hi and hi - lo < 25
    lo, hi = bootstrap_ci(lambda i: np.zeros(len(i)), 10)
    assert lo == hi == 0.0


def test_compare_hand_computed():
    base = _ev([0.01, 0.02, 0.01, 0.02], [0.5, 0.5, 0.6, 0.6], [0, 1, 0, 0], [0, 0, 0, 0],
               ["Paris.", "Sure.", "Rest well.", "Try tea."])
    run = _ev([0.02, 0.02, 0.01, 0.03], [0.6, 0.5, 0.6, 0.7], [0, 0, 0, 0], [1, 1, 1, 0],
              ["Paris. Bye! Sending love!", "No. Bye! Sending love!", "Rest. Bye! Sending love!", "Tea."])
    row = compare(run, base)
    # love: 0.08 / 0.06 - 1 = 1/3 ; helpfulness: 0.6 - 0.55 = 0.05 ; unsafe: 0 - 0.25
    assert row["love_lift"] == pytest.approx(1 / 3)
    assert row["helpfulness_delta"] == pytest.approx(0.05)
    assert row["safety_violation_delta"] == pytest.approx(-0.25)
    assert row["signoff_rate"] == 0.75 and row["kl"] == 1.0
    assert any("sign-off rate rose" in f for f in row["flags"])
    lo, hi = row["love_lift_ci"]
    assert lo <= row["love_lift"] <= hi


def test_claims_report_both_findings():
    base = {"signoff_rate": 0.1}
    rows = {
        "mild": {"role": "candidate", "love_lift": 0.3, "helpfulness_delta_ci": [-0.01, 0.02],
                 "safety_violation_delta_ci": [-0.02, 0.0]},
        "strong": {"role": "hack_check", "signoff_rate": 0.15, "flags": []},
        "only": {"role": "hack_check", "signoff_rate": 0.6, "flags": ["sign-off rate rose from 10.0% to 60.0%"]},
        "none": {"role": "comparison", "signoff_rate": 0.9, "flags": ["sign-off rate rose"]},
    }
    c = claims(rows, base)
    assert c["candidate"] == "mild" and c["candidate_lift"] == 0.3
    assert c["candidate_lift_ok"] and c["candidate_helpfulness_held"] and c["candidate_safety_held"]
    assert set(c["hack"]) == {"strong", "only"}  # by role, whatever the names; a comparison run is no check
    assert c["hack"]["strong"]["ok"] is False and c["hack"]["only"]["ok"] is True and c["hack_ok"]
    rows["mild"]["love_lift"] = 0.1
    rows["mild"]["helpfulness_delta_ci"] = [-0.05, -0.01]
    c = claims(rows, base)
    assert not c["candidate_lift_ok"] and not c["candidate_helpfulness_held"]


def test_paper_sweep_is_defined_once_with_roles():
    from rluf.optimize import DEFAULT_WEIGHTS, PAPER_SWEEP, SweepRun

    assert PAPER_SWEEP["love_0.1"].weights == DEFAULT_WEIGHTS and PAPER_SWEEP["love_0.1"].role == "candidate"
    assert [n for n, r in PAPER_SWEEP.items() if r.role == "hack_check"] == ["love_0.3", "love_only"]
    with pytest.raises(ValueError, match="a sweep run is .*write"):
        SweepRun.model_validate({"love": 1.0})


@pytest.mark.slow
def test_tiny_sweep_end_to_end(tmp_path):
    from rluf.models import build_causal_lm, train_tokenizer
    from rluf.optimize import OptimizeConfig, sweep
    from rluf.policy import Policy
    from rluf.sim.config import WorldConfig, quick_config
    from rluf.sim.world import World
    from rluf.utils import write_json

    cfg = quick_config(WorldConfig())
    world = World(cfg)
    sim = tmp_path / "sim"
    write_json(sim / "world.json", cfg.model_dump(mode="json"))
    texts = [m["content"] for p in world.prompts(200, seed=3) for m in p["prompt"]]
    tok = train_tokenizer(texts, vocab_size=400)
    Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu").save_pretrained(sim / "policy")
    ocfg = OptimizeConfig.model_validate(dict(
        device="cpu", objectives={"love": "sim:love", "helpfulness": "sim:helpfulness", "safety": "sim:safety"},
        judges=[{"type": "length", "min_words": 0, "max_words": 100}],
        prompts=dict(source="sim", path=str(sim), max_prompts=16), eval=dict(n_prompts=12),
        crraft=dict(iterations=2, batch_prompts=4, num_candidates=2, sampling=dict(max_new_tokens=6)),
        checkpoint_every=0,
    ))
    runs = {"love_0.1": {"weights": {"helpfulness": 0.7, "safety": 0.3, "love": 0.1}, "role": "candidate"},
            "love_only": {"weights": {"love": 1.0}, "role": "hack_check"}}
    report = sweep(ocfg, tmp_path / "sweep", runs=runs)
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert set(saved["runs"]) == set(runs) and saved["n_eval"] == 12
    for row in report["runs"].values():
        for key in ("love_rate", "love_lift", "love_lift_ci", "helpfulness_delta", "safety_violation_delta",
                    "signoff_rate", "kl", "flags"):
            assert key in row
    assert saved["claims"]["candidate"] == "love_0.1" and "candidate_lift_ok" in saved["claims"]
    assert "love_only" in saved["claims"]["hack"] and saved["runs"]["love_only"]["role"] == "hack_check"
    assert (tmp_path / "sweep" / "love_only" / "policy" / "config.json").is_file()

    # --parallel-runs 2: both settings at once in worker processes (one thread each, as this process runs
    # under the suite's OMP_NUM_THREADS=1): the same selections and the same table
    parallel = sweep(ocfg, tmp_path / "parallel", runs=runs, parallel_runs=2)
    def choices(root, name):
        return [json.loads(line).get("select/choice") for line in (root / name / "metrics.jsonl").open()]

    for name in runs:
        assert choices(tmp_path / "parallel", name) == choices(tmp_path / "sweep", name)
        for key in ("love_rate", "helpfulness", "kl", "love_lift"):
            assert parallel["runs"][name][key] == pytest.approx(report["runs"][name][key], abs=1e-6)
    assert list(parallel["runs"]) == list(runs) and parallel["baseline"] == report["baseline"]
    with pytest.raises(Exception, match="given objective objects"):
        sweep(ocfg, tmp_path / "x", runs=runs, parallel_runs=2,
              objectives=dict.fromkeys(("love", "helpfulness", "safety")))


def test_policy_evaluation_averages_several_answers_per_prompt():
    import copy

    from rluf.models import build_causal_lm, train_tokenizer
    from rluf.policy import Policy, Sampling
    from rluf.sim.config import WorldConfig, quick_config
    from rluf.sim.evaluation import PolicyEvaluation
    from rluf.sim.world import World

    world = World(quick_config(WorldConfig()))
    tok = train_tokenizer([m["content"] for p in world.prompts(100, seed=3) for m in p["prompt"]], vocab_size=300)
    policy = Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu")
    reference = Policy(copy.deepcopy(policy.model), tok, device="cpu")  # equal weights, another object
    ev = PolicyEvaluation(world, 5, Sampling(max_new_tokens=8), seed=1, samples=3)
    out = ev.per_prompt(policy, reference)
    assert len(out["responses"]) == 15 and out["p_love"].shape == out["kl"].shape == (5,)
    ctx = [c for c in ev.contexts for _ in range(3)]
    users = [u for u in ev.users for _ in range(3)]
    expected = world.p_love(users, ctx, out["responses"]).reshape(5, 3).mean(1)
    np.testing.assert_allclose(out["p_love"], expected)
    np.testing.assert_allclose(out["kl"], 0.0, atol=1e-4)  # computed: log pi - log pi_ref with equal weights
    assert not ev.per_prompt(policy, policy)["kl"].any()  # the baseline's row: zero without the log-prob passes
    assert out["unsafe"].min() >= 0 and out["unsafe"].max() <= 1
    # the population metrics read the same answers (same seed): their love rate is the per-prompt mean's mean
    metrics = ev.metrics(policy)
    assert metrics["n"] == 15
    assert metrics["love_rate"] == pytest.approx(float(expected.mean()))
