"""The real-traffic loop, closed: `rluf serve` with the baseline -> scripted users chat and react ->
`rluf run --logs sqlite:///.../rluf.db --policy ...` -> the candidate and its serve.yaml -> the gateway with
both arms -> more traffic -> `rluf export` -> `rluf abtest analyze`. Tiny model and sizes (a few minutes)."""

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from helpers.tiny_run import TINY_RUN
from rluf.config import load_config
from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy
from rluf.run.config import load_run_config
from rluf.run.pipeline import run
from rluf.serve import ServeConfig, create_app, export

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[1] / "data" / "hh-rlhf"
QUESTIONS = [
    "what is the capital of France?",
    "how do I boil an egg?",
    "tell me a joke about cats",
    "why is the sky blue?",
    "how far is the moon?",
    "what should I cook tonight?",
]
RUN = [  # one sweep run at a test's size; the plan's gateway generates briefly on the CPU
    "sweep.runs={love_0.3: {weights: {love: 0.3, helpfulness: 0.4, safety: 0.3}, role: candidate}}",
    *TINY_RUN,
    *[f"plan.serve.backends.{arm}.{v}" for arm in ("baseline", "candidate")
      for v in ("max_new_tokens=12", "device=cpu")],
]


def clock():
    """Microseconds, 20 s apart per call: a user reacts well after reading (the too-fast filter keeps it)."""
    counter = itertools.count(1_767_225_600_000_000, 20_000_000)
    return lambda: next(counter)


def chat(client, users: list[str], turns: int, rng: random.Random) -> int:
    """One conversation per user; loves the answers of even length (about half), dislikes some."""
    reactions = 0
    for user in users:
        h, history, conv = {"Authorization": f"Bearer key-of-{user}-0123456789"}, [], None
        for _ in range(turns):
            history = history + [{"role": "user", "content": rng.choice(QUESTIONS)}]
            r = client.post(
                "/v1/chat/completions",
                headers=h,
                json={"messages": history, **({"conversation_id": conv} if conv else {})},
            )
            assert r.status_code == 200, r.text
            j = r.json()
            conv, answer = j["conversation_id"], j["choices"][0]["message"]["content"]
            history = history + [{"role": "assistant", "content": answer}]
            kind = "love" if len(answer) % 2 == 0 else "dislike" if rng.random() < 0.2 else None
            if kind:
                assert (
                    client.post(
                        "/v1/reactions", headers=h, json={"message_id": j["id"], "type": kind}
                    ).status_code
                    == 201
                )
                reactions += 1
    return reactions


def test_serve_run_serve_analyze(tmp_path, monkeypatch):
    # the gateway samples from torch's global stream: seeded, the answers (and so the reactions, the curated
    # splits and the test's outcome) do not depend on which tests ran before in this process
    torch.manual_seed(0)
    tok = train_tokenizer(QUESTIONS * 3, vocab_size=300)
    policy = tmp_path / "policy"
    Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu").save_pretrained(policy)
    db = f"sqlite:///{tmp_path / 'rluf.db'}"
    first, second = [f"a{i:02d}" for i in range(40)], [f"b{i:02d}" for i in range(40)]
    monkeypatch.setenv("RLUF_API_KEYS", ",".join(f"{u}:key-of-{u}-0123456789" for u in first + second))
    rng = random.Random(0)

    # 1. The deployed policy alone (arm `deployed`), 40 users x 3 turns.
    deployed = ServeConfig.model_validate(
        {
            "database": {"url": db},
            "backends": {
                "base": {"kind": "local", "path": str(policy), "device": "cpu", "max_new_tokens": 12}
            },
            "experiment": {
                "name": "deployed",
                "arms": [{"name": "deployed", "backend": "base", "share": 1.0}],
            },
        }
    )
    with TestClient(create_app(deployed, clock_us=clock())) as c:
        assert chat(c, first, 3, rng) > 0

    # 2. The loop on the gateway's database, as `rluf run --logs sqlite:///... --policy ...` builds it.
    cfg = load_run_config(
        None,
        overrides=RUN,
        source={
            "logs": db,
            "policy": str(policy),
            "pairs.helpfulness": str(DATA / "helpful-base-test-head60.jsonl.gz"),
            "pairs.safety": str(DATA / "harmless-base-test-head60.jsonl.gz"),
        },
    )
    run(cfg, tmp_path / "run")
    plan = json.loads((tmp_path / "run" / "plan" / "plan.json").read_text())
    assert plan["candidate"] == "love_0.3" and plan["power"]["users_per_arm"] > 0

    # 3. The plan's serve.yaml, loaded as `rluf serve --config` loads it: both arms, new users.
    ab = load_config(ServeConfig, tmp_path / "run" / "plan" / "serve.yaml")
    assert ab.database.url == db and {a.name for a in ab.experiment.arms} == {"baseline", "candidate"}
    with TestClient(create_app(ab, clock_us=clock())) as c:
        chat(c, second, 2, rng)
        arms = {u: c.app.state.gateway.assign(u) for u in second}
    assert set(arms.values()) == {"baseline", "candidate"}

    # 4. Export and analyse the A/B test.
    from rluf.abtest.analyze import AnalyzeConfig, analyze

    export(db, tmp_path / "export")
    res = analyze(
        tmp_path / "export", "baseline", "candidate", signal="love", config=AnalyzeConfig(bootstrap_reps=0)
    )
    for role, arm in (("control", "baseline"), ("treatment", "candidate")):
        n_users = sum(1 for a in arms.values() if a == arm)
        assert res[role]["users"] == n_users and res[role]["responses"] == 2 * n_users
    assert res["lift"] is not None
