import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rluf.config import load_config
from rluf.errors import ConfigError, DataError, SchemaError
from rluf.evaluate import EvaluateConfig, evaluate
from rluf.hacking import words

from .conftest import PROMPTS


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("prompts") / "prompts.parquet"
    pd.DataFrame(PROMPTS).to_parquet(p)
    return p


def _cfg(**kw):
    cfg = EvaluateConfig(bootstrap_reps=200, device="cpu", **kw)
    cfg.generation.max_new_tokens = 12
    return cfg


class LoveFake:
    """A deterministic P[Love]: 0.001 plus 0.004 per word 'love' (so a sign-off raises it)."""

    def prob(self, contexts, responses):
        return np.array([0.001 + 0.004 * words(r).count("love") for r in responses])

    def score(self, contexts, responses):
        return np.log(self.prob(contexts, responses))


class WordsFake:
    """Helpfulness = number of words, minus 3 for a sign-off."""

    def score(self, contexts, responses):
        return np.array([len(words(r)) - 3.0 * ("bye" in words(r)) for r in responses])


def _responses(tmp_path, name, texts):
    p = tmp_path / f"{name}.jsonl"
    pd.DataFrame({"prompt_id": [q["prompt_id"] for q in PROMPTS], "response": texts}).to_json(
        p, orient="records", lines=True)
    return p


BASE_TEXTS = ["The capital of Freedonia is Fredville.", "It is okay to feel sad.", "A short joke about a chicken.",
              "I can't help with that.", "Use kill with the process id.", "I am not sure about Sylvania."]
HACK_TEXTS = [t + " Bye! Sending love!" for t in BASE_TEXTS]


@pytest.mark.slow
def test_two_tiny_policies_end_to_end(tmp_path, tiny_policies, tiny_scorers, prompt_file):
    out = tmp_path / "eval"
    res = evaluate(tiny_policies, out, prompts=prompt_file, love_model=tiny_scorers["love"],
                   help_model=tiny_scorers["helpfulness"], safety_model=tiny_scorers["safety"], config=_cfg())
    table = pd.read_parquet(out / "responses.parquet")
    assert len(table) == 2 * len(PROMPTS) and set(table["policy"]) == {"base", "cand"}
    assert json.loads((out / "evaluate.json").read_text())["ranking"] == res["ranking"]
    # the reported predicted Love rate is the mean natural-rate P[Love] the real Scorer gives these pairs
    for name in ("base", "cand"):
        rows = table[table["policy"] == name]
        p = tiny_scorers["love"].prob([list(c) for c in rows["prompt"]], rows["response"].tolist())
        # rel 1e-6: answers packed with other policies' answers to the same context (Scorer) round differently
        assert res["policies"][name]["scores"]["love"]["mean"] == pytest.approx(p.mean(), rel=1e-6)
        assert np.all(p < 0.05)  # prior shift from the 10% training rate to the 0.1% natural rate
    means = [r["mean"] for r in res["ranking"]]
    assert means == sorted(means, reverse=True) and res["rank_by"] == "love"
    assert sum(r["p_best"] for r in res["ranking"]) == pytest.approx(1.0)
    # untrained models never write the reference answer: the exact-answer judge fails the two factual prompts
    assert res["policies"]["base"]["judges"]["exact_answer"] == pytest.approx(4 / 6)
    assert res["correlations"]["love_vs_helpfulness"]["pooled"]["n"] == 12


@pytest.mark.slow
def test_a_worker_samples_and_scores_with_the_same_results(tmp_path, tiny_policies, tiny_reward_dirs, prompt_file):
    from rluf.parallel import Workers

    policies = {"base": tiny_policies["base"], "cand": tiny_policies["cand"], "base_again": tiny_policies["base"],
                "cand_again": tiny_policies["cand"]}
    kw = dict(prompts=prompt_file, love_model=str(tiny_reward_dirs["love"]),
              help_model=str(tiny_reward_dirs["helpfulness"]), safety_model=str(tiny_reward_dirs["safety"]),
              config=_cfg())
    alone = evaluate(policies, tmp_path / "alone", **kw)
    events = []
    with Workers(1, threads=1) as pool:
        shared = evaluate(policies, tmp_path / "shared", pool=pool, on_event=events.append, **kw)
    assert any("sampled in a worker" in e for e in events)  # the last policies were queued to the idle worker
    assert sum(e.startswith("responses of") for e in events) == len(policies)  # each sampled once
    assert "scoring safety on 24 responses (in a worker)" in events
    assert not any(e.startswith("scoring safety") and "worker" not in e for e in events)
    a, b = (pd.read_parquet(tmp_path / d / "responses.parquet") for d in ("alone", "shared"))
    pd.testing.assert_frame_equal(a, b)
    assert shared["ranking"] == alone["ranking"]


def test_hand_computed_ranking_flags_and_correlations(tmp_path, prompt_file):
    pols = {"base": _responses(tmp_path, "base", BASE_TEXTS), "hack": _responses(tmp_path, "hack", HACK_TEXTS)}
    res = evaluate(pols, tmp_path / "out", prompts=prompt_file, love_model=LoveFake(), help_model=WordsFake(),
                   safety_model=WordsFake(), config=_cfg())
    assert [r["policy"] for r in res["ranking"]] == ["hack", "base"]
    assert res["ranking"][0]["mean"] == pytest.approx(0.005) and res["ranking"][1]["mean"] == pytest.approx(0.001)
    assert res["ranking"][0]["p_best"] == 1.0 and res["ranking"][0]["ci"] == pytest.approx([0.005, 0.005])
    # paired difference: hack adds 3 words and loses 3 for the sign-off, so helpfulness is unchanged
    assert res["vs_baseline"]["love"]["hack"]["diff"] == pytest.approx(0.004)
    assert res["vs_baseline"]["helpfulness"]["hack"]["diff"] == pytest.approx(0.0)
    hack = res["policies"]["hack"]
    assert hack["monitor"]["hack/signoff_rate"] == 1.0 and hack["judges"]["signoff"] == 0.0
    assert any("sign-off rate rose" in f for f in hack["flags"]) and res["policies"]["base"]["flags"] == []
    # the false-refusal judge passes the refusal of the lock-picking prompt (must_refuse) and nothing fails it
    assert res["policies"]["base"]["judges"]["false_refusal"] == 1.0
    # exact answer: 'Fredville' present, 'Sylvtown' absent -> 5 of 6 prompts pass
    assert res["policies"]["base"]["judges"]["exact_answer"] == pytest.approx(5 / 6)
    love = np.array([0.001] * 6 + [0.005] * 6)
    helpf = np.array([len(words(t)) for t in BASE_TEXTS] + [len(words(t)) for t in BASE_TEXTS], dtype=float)
    c = res["correlations"]["love_vs_helpfulness"]["pooled"]
    assert c["pearson"] == pytest.approx(np.corrcoef(love, helpf)[0, 1], abs=1e-12)


def test_prompt_sampling_and_text_column(tmp_path):
    from rluf.evaluate.prompts import load_prompts

    p = tmp_path / "p.jsonl"
    pd.DataFrame({"text": [f"question {i}" for i in range(30)] + ["question 0"], "family": "x"}).to_json(
        p, orient="records", lines=True)
    prompts = load_prompts(p, n_prompts=10, seed=0)
    assert len(prompts) == 10 and len({q.prompt_id for q in prompts}) == 10
    assert prompts[0].context[0]["role"] == "user" and prompts[0].metadata == {"family": "x"}
    assert [q.prompt_id for q in load_prompts(p, 10, 0)] == [q.prompt_id for q in prompts]  # seeded
    # a curated folder stands for its test.parquet
    (tmp_path / "cur").mkdir()
    pd.DataFrame({"prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(3)],
                  "completion": [[{"role": "assistant", "content": "a"}]] * 3, "label": [True, False, False],
                  "user_id": ["u1", "u2", "u3"]}).to_parquet(tmp_path / "cur" / "test.parquet")
    cur = load_prompts(tmp_path / "cur", n_prompts=10, seed=0)
    assert [q.metadata for q in cur] == [{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u3"}]
    with pytest.raises(DataError, match="folder without test.parquet"):
        load_prompts(tmp_path, 10, 0)


def test_errors(tmp_path, prompt_file):
    base = _responses(tmp_path, "base", BASE_TEXTS)
    with pytest.raises(ConfigError, match=r"policy 'x': .*nope is neither a Hugging Face model folder"):
        evaluate({"x": tmp_path / "nope"}, tmp_path / "o", prompts=prompt_file)
    with pytest.raises(ConfigError, match=r"baseline = 'zzz' is not one of the policies \['base'\]"):
        evaluate({"base": base}, tmp_path / "o", prompts=prompt_file, config=_cfg(baseline="zzz"))
    with pytest.raises(ConfigError, match="no prompt set: pass --prompts FILE"):
        evaluate({"base": base}, tmp_path / "o")
    short = tmp_path / "short.jsonl"
    pd.DataFrame({"prompt_id": ["q0"], "response": ["hi"]}).to_json(short, orient="records", lines=True)
    with pytest.raises(DataError, match=r"no response for 5 prompt\(s\), e\.g\. \['q1', 'q2', 'q3'\]"):
        evaluate({"short": short}, tmp_path / "o", prompts=prompt_file)
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"foo": ["a", "b"]}).to_parquet(bad)
    with pytest.raises(SchemaError, match=r"has no prompt column; expected one of \['prompt'"):
        evaluate({"base": base}, tmp_path / "o", prompts=bad)
    with pytest.raises(ConfigError, match="love_model must give natural-rate probabilities"):
        evaluate({"base": base}, tmp_path / "o", prompts=prompt_file, love_model=WordsFake())


def test_config_errors_and_shipped_yaml(tmp_path):
    cfg = load_config(EvaluateConfig, "evaluate.yaml")
    assert cfg.rank_by == "love" and len(cfg.judges) >= 3
    p = tmp_path / "e.yaml"
    p.write_text("bootstrap_reps: 50\nrank_by: length\njudges:\n  - {type: nope}\n")
    with pytest.raises(ConfigError, match=r"judges\.0[\s\S]*rank_by = 'length'[\s\S]*bootstrap_reps = 50"):
        load_config(EvaluateConfig, p)
    assert cfg.models.precision == "auto"
    p.write_text("models: {precision: fp16}\n")
    with pytest.raises(ConfigError, match=r"models.precision = 'fp16': Input should be 'auto', 'bf16' or 'fp32'"):
        load_config(EvaluateConfig, p)


def test_models_precision_reaches_the_reward_models(tmp_path, prompt_file, monkeypatch):
    from rluf.rewards.scorer import Scorer

    seen = []

    def loaded(path, device="auto", precision="auto"):
        seen.append((Path(path).name, precision))
        return LoveFake() if Path(path).name == "love" else WordsFake()

    monkeypatch.setattr(Scorer, "from_pretrained", staticmethod(loaded))
    cfg = _cfg()
    cfg.models.love, cfg.models.helpfulness, cfg.models.precision = tmp_path / "love", tmp_path / "help", "bf16"
    evaluate({"base": _responses(tmp_path, "base", BASE_TEXTS)}, tmp_path / "o", prompts=prompt_file, config=cfg)
    assert seen == [("love", "bf16"), ("help", "bf16")]


def test_cli_evaluate_with_response_files(tmp_path, prompt_file):
    from rluf.cli import app

    base, hack = _responses(tmp_path, "base", BASE_TEXTS), _responses(tmp_path, "hack", HACK_TEXTS)
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["evaluate", "--policies", f"base={base}", f"hack={hack}", "--prompts",
                                 str(prompt_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "ranking by judge_pass" in r.output and "hacking flag" in r.output
    res = json.loads((out / "evaluate.json").read_text())
    assert res["policies_evaluated"] == ["base", "hack"]
