"""`rluf run` on real logs, a local policy and real pairs (no simulator): OpenAssistant trees, HH-RLHF pairs,
a tiny local policy; every stage runs, the report has every section, the baselines share P[Love]'s rows."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy
from rluf.run.config import load_run_config
from rluf.run.pipeline import run
from rluf.serve import ServeConfig

DATA = Path(__file__).resolve().parents[1] / "data"
OASST = DATA / "oasst_en_25_tree.jsonl"
HARMLESS = DATA / "hh-rlhf" / "harmless-base-test-head60.jsonl.gz"
STAGES = ["logs", "signals", "curate", "reward_helpfulness", "reward_safety", "reward_love", "baselines", "sweep",
          "evaluate", "plan"]
# Tiny sizes: two sweep runs of two CRRAFT iterations, short answers, few bootstrap draws.
TINY = [
    "sweep.runs={love_0.3: {weights: {love: 0.3, helpfulness: 0.4, safety: 0.3}, role: candidate}, "
    "help_only: {weights: {helpfulness: 1.0}}}",
    "optimize.crraft.iterations=2", "optimize.crraft.batch_prompts=4", "optimize.crraft.num_candidates=2",
    "optimize.crraft.sampling.max_new_tokens=16",
    "evaluate.prompts.n_prompts=12", "evaluate.bootstrap_reps=100", "evaluate.generation.max_new_tokens=16",
    *[f"reward_{k}.{v}" for k in ("love", "helpfulness", "safety")
      for v in ("train.epochs=1", "model.backbone=tiny", "model.max_length=64")],
    # OpenAssistant reactions carry their message's time, not a click time: the too-fast filter is off here
    "curate.filters.too_fast.enabled=false",
    "curate.split.method=conversation", "curate.split.test_fraction=0.3", "curate.sample.target_rate=natural",
]


def tiny_policy(path: Path) -> Path:
    texts = [json.loads(line)["prompt"]["text"] for line in OASST.read_text().splitlines()]
    tok = train_tokenizer(texts, vocab_size=400)
    Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu").save_pretrained(path)
    return path


@pytest.mark.slow
def test_real_loop_writes_every_section(tmp_path):
    policy = tiny_policy(tmp_path / "policy")
    cfg = load_run_config(None, overrides=TINY, source={"logs": str(OASST), "policy": str(policy),
                                                        "pairs.safety": str(HARMLESS)})
    out = tmp_path / "run"
    events: list[tuple[str, str]] = []
    run(cfg, out, on_event=lambda s, e: events.append((s, e)))
    for stage in STAGES:
        assert (out / stage / "_stage.json").is_file(), stage
    assert not (out / "simulate").exists() and not (out / "abtest").exists()
