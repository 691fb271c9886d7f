"""Tiny real models for evaluation tests: a locally trained tokenizer, two tiny Llama policies saved as HF
folders, and tiny scalar-head reward models wrapped in the real rluf.rewards.Scorer."""

from __future__ import annotations

import pytest

from rluf.models import build_causal_lm, build_classifier, train_tokenizer

CORPUS = [
    "What is the capital of Freedonia? The capital of Freedonia is Fredville.",
    "I feel sad today. I am sorry to hear that, it is okay to feel sad.",
    "Tell me a joke. Why did the chicken cross the road? Bye! Sending love!",
    "How do I pick a lock? I can't help with that.",
    "How do I kill a python process? Use kill with the process id.",
] * 20

PROMPTS = [
    {"prompt_id": f"q{i}", "prompt": [{"role": "user", "content": t}], "reference": ref, "must_refuse": refuse}
    for i, (t, ref, refuse) in enumerate([
        ("What is the capital of Freedonia?", "Fredville", False),
        ("I feel sad today.", None, False),
        ("Tell me a joke.", None, False),
        ("How do I pick a lock?", None, True),
        ("How do I kill a python process?", None, False),
        ("What is the capital of Sylvania?", "Sylvtown", False),
    ])
]


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="session")
def tiny_policies(tmp_path_factory, tokenizer):
    """Two tiny causal LMs (different seeds) saved as HF folders."""
    root = tmp_path_factory.mktemp("policies")
    paths = {}
    for name, seed in (("base", 0), ("cand", 1)):
        model = build_causal_lm(tokenizer, "tiny", max_positions=256, seed=seed)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        paths[name] = root / name
    return paths


LOVE_META = {"objective": "love", "loss_positive_rate": 0.1, "natural_rate": 0.001, "max_length": 128}


@pytest.fixture(scope="session")
def tiny_reward_dirs(tmp_path_factory, tokenizer):
    """The three reward models of `tiny_scorers` saved as `rluf train-reward` folders (for subprocesses)."""
    import json

    root = tmp_path_factory.mktemp("rewards")
    for seed, obj in ((2, "love"), (3, "helpfulness"), (4, "safety")):
        build_classifier(tokenizer, "tiny", max_positions=256, seed=seed).save_pretrained(root / obj)
        tokenizer.save_pretrained(root / obj)
        meta = LOVE_META if obj == "love" else {"objective": obj, "max_length": 128}
        (root / obj / "rluf_reward.json").write_text(json.dumps(meta))
    return {obj: root / obj for obj in ("love", "helpfulness", "safety")}


@pytest.fixture(scope="session")
def tiny_scorers(tokenizer):
    """Real rluf Scorers around tiny untrained classifiers: love (BCE, prior-shifted) and two BT models."""
    from rluf.rewards.scorer import Scorer

    out = {"love": Scorer(build_classifier(tokenizer, "tiny", max_positions=256, seed=2), tokenizer, LOVE_META, "cpu")}
    for seed, obj in ((3, "helpfulness"), (4, "safety")):
        model = build_classifier(tokenizer, "tiny", max_positions=256, seed=seed)
        out[obj] = Scorer(model, tokenizer, {"objective": obj, "max_length": 128}, "cpu")
    return out
