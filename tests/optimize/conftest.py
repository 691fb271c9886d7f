import json

import pytest

from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy

TEXTS = [
    "What is the capital of France? Paris is the capital.",
    "I feel sad today. I'm sorry to hear that, take care.",
    "Tell me a joke. Why did the chicken cross the road? Bye! Sending love!",
] * 30
QUESTIONS = ["What is the capital of France?", "I feel sad today.", "Tell me a joke.", "How are you?"]


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "policy"
    tok = train_tokenizer(TEXTS, vocab_size=300)
    Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu").save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    with path.open("w") as f:
        for i, q in enumerate(QUESTIONS * 4):
            row = {"prompt": [{"role": "user", "content": q}],
                   "completion": [{"role": "assistant", "content": "Paris"}],
                   "reference": "Paris" if "France" in q else None, "id": i}
            f.write(json.dumps(row) + "\n")
    return path
