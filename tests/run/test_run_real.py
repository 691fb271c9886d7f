"""`rluf run` on real logs, a local policy and real pairs (no simulator): OpenAssistant trees, HH-RLHF pairs,
a tiny local policy; every stage runs, the report has every section, the baselines share P[Love]'s rows."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.tiny_run import TINY_RUN
from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy
from rluf.run.config import load_run_config
from rluf.run.pipeline import run
from rluf.serve import ServeConfig

DATA = Path(__file__).resolve().parents[1] / "data"
OASST = DATA / "oasst_en_25_tree.jsonl"
HARMLESS = DATA / "hh-rlhf" / "harmless-base-test-head60.jsonl.gz"
STAGES = [
    "logs",
    "signals",
    "curate",
    "reward_helpfulness",
    "reward_safety",
    "reward_love",
    "baselines",
    "sweep",
    "evaluate",
    "plan",
]
TINY = [  # two sweep runs at a test's size
    "sweep.runs={love_0.3: {weights: {love: 0.3, helpfulness: 0.4, safety: 0.3}, role: candidate}, "
    "help_only: {weights: {helpfulness: 1.0}}}",
    *TINY_RUN,
]


def tiny_policy(path: Path) -> Path:
    texts = [json.loads(line)["prompt"]["text"] for line in OASST.read_text().splitlines()]
    tok = train_tokenizer(texts, vocab_size=400)
    Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu").save_pretrained(path)
    return path


@pytest.mark.slow
def test_real_loop_writes_every_section(tmp_path):
    policy = tiny_policy(tmp_path / "policy")
    cfg = load_run_config(
        None,
        overrides=TINY,
        source={"logs": str(OASST), "policy": str(policy), "pairs.safety": str(HARMLESS)},
    )
    out = tmp_path / "run"
    events: list[tuple[str, str]] = []
    run(cfg, out, on_event=lambda s, e: events.append((s, e)))
    for stage in STAGES:
        assert (out / stage / "_stage.json").is_file(), stage
    assert not (out / "simulate").exists() and not (out / "abtest").exists()
    summary = json.loads((out / "run.json").read_text())
    assert summary["signals"]["pick"] == "like"  # too short to see users return: the most frequent reaction
    assert "most frequent reaction" in summary["curate"]["signal_why"]
    assert json.loads((out / "curate" / "manifest.json").read_text())["signal_rule"] == "like"
    assert (out / "reward_helpfulness" / "oasst_sibling_pairs.parquet").is_file()  # OpenAssistant rankings
    # OpenAssistant votes carry their message's time: the too-fast filter is on and skips them, removing none
    too_fast = json.loads((out / "curate" / "manifest.json").read_text())["counts"]["filters"]["too_fast"]
    assert too_fast["skipped_not_click"] > 0 and too_fast["reactions"] == 0

    # the baselines were scored on exactly the rows P[Love] was scored on
    love_rows = pd.read_parquet(out / "reward_love" / "test_scores.parquet")
    scored = pd.read_parquet(out / "baselines" / "scores.parquet")
    assert scored["message_id"].tolist() == love_rows["message_id"].tolist()
    assert scored["P[Love]"].tolist() == love_rows["prob"].tolist()
    baselines = json.loads((out / "baselines" / "baselines.json").read_text())
    assert set(baselines["models"]) == {"P[Love]", "length", "tfidf", "embedding"}
    for m in baselines["models"].values():
        assert m["ci"][0] <= m["auroc"] <= m["ci"][1]

    # the A/B plan: sample size at the logs' natural rate, and a serve.yaml that `rluf serve` accepts
    plan = json.loads((out / "plan" / "plan.json").read_text())
    assert plan["power"]["users_per_arm"] > 0 and plan["natural_rate"] == pytest.approx(
        json.loads((out / "curate" / "manifest.json").read_text())["natural_rate"]
    )
    serve = ServeConfig.model_validate(yaml.safe_load((out / "plan" / "serve.yaml").read_text()))
    assert [a.name for a in serve.experiment.arms] == ["baseline", "candidate"]
    assert serve.backends["candidate"].path == str(out / "sweep" / plan["candidate"] / "policy")

    html = (out / "report.html").read_text()
    for table in (
        "headline-table",
        "signals-table",
        "curation-table",
        "filters-table",
        "reward-love-table",
        "baselines-table",
        "reward-pairs-table",
        "sweep-table",
        "ranking-table",
        "uplift-table",
        "plan-table",
    ):
        assert f'id="{table}"' in html, table
    assert "P[Love] ROC" in html and "reliability" in html and "test ece" in html
    assert ("does not beat it" in html) != baselines["p_love_beats_best_baseline"]
    assert ("Recommended:" in html) != ("No candidate beats the baseline" in html)
    assert "true p_love" not in html and "abtest-table" not in html  # no truth, no simulated A/B test

    events.clear()
    run(cfg, out, on_event=lambda s, e: events.append((s, e)))  # resume: nothing left to do
    assert events == [(s, "skipped") for s in STAGES]
