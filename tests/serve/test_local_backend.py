"""The default backend: a local Hugging Face model folder generated in-process (tiny model here)."""

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from rluf.errors import ConfigError
from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy
from rluf.serve import ServeConfig, create_app

from .conftest import ALICE, ALICE_KEY, FixedClock, counting_ids

CORPUS = ["hello there, how are you today?", "the capital of France is Paris.", "I am fine, thanks for asking!"]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy")
    tok = train_tokenizer(CORPUS, vocab_size=300)
    Policy(build_causal_lm(tok, "tiny", max_positions=256), tok, device="cpu").save_pretrained(path)
    return path


def local_config(db_url, path, **backend):
    return ServeConfig.model_validate({
        "database": {"url": db_url},
        "backends": {"base": {"kind": "local", "path": str(path), "device": "cpu", "max_new_tokens": 12,
                              "temperature": 0.0, **backend}},
        "experiment": {"name": "local", "arms": [{"name": "baseline", "backend": "base", "share": 1.0}]},
        "auth": {"api_keys": {ALICE_KEY: "alice"}, "api_keys_env": None},
    })


@pytest.mark.slow  # ~10 s: trains a tokenizer and builds a tiny model
def test_local_model_answers_plain_and_streamed_identically(policy_dir, tmp_path):
    logged = []
    for stream in (False, True):
        url = f"sqlite:///{tmp_path / f'local{stream}.db'}"
        app = create_app(local_config(url, policy_dir), clock_us=FixedClock(), new_id=counting_ids())
        with TestClient(app) as c:
            r = c.post("/v1/chat/completions", headers=ALICE, json={
                "stream": stream, "messages": [{"role": "user", "content": "hello there"}]})
            assert r.status_code == 200, r.text
            if stream:
                chunks = [json.loads(x[5:]) for x in r.text.split("\n") if x.startswith("data: {")]
                answer = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks)
            else:
                answer = r.json()["choices"][0]["message"]["content"]
        engine = create_engine(url)
        with engine.connect() as conn:
            rows = [tuple(x) for x in conn.execute(text(
                "SELECT message_id, role, text, model_id, created_at FROM messages ORDER BY turn_index"))]
        engine.dispose()
        assert rows[1][1:4] == ("assistant", answer, "baseline") and answer
        logged.append(rows)
    assert logged[0] == logged[1]  # greedy decoding: same answer, same rows, same ids and times


@pytest.mark.slow  # the tiny model of policy_dir
def test_lone_surrogate_is_refused_before_the_model(policy_dir, tmp_path):
    """The tokenizer cannot take text with a lone surrogate (TypeError): the gateway refuses it first."""
    url = f"sqlite:///{tmp_path / 'local.db'}"
    with TestClient(create_app(local_config(url, policy_dir))) as c:
        for stream in (False, True):
            body = {"stream": stream, "messages": [{"role": "user", "content": "hi \udfff"}]}
            r = c.post("/v1/chat/completions", headers={**ALICE, "Content-Type": "application/json"},
                       content=json.dumps(body))
            assert r.status_code == 422 and r.json()["error"]["code"] == "bad_text", r.text
        r = c.post("/v1/chat/completions", headers=ALICE,
                   json={"messages": [{"role": "user", "content": "hello"}]})
        assert r.status_code == 200  # and the gateway still answers


def test_missing_model_folder_is_a_clear_error(tmp_path):
    db = tmp_path / "runs" / "x.db"
    cfg = local_config(f"sqlite:///{db}", tmp_path / "no-policy")
    with pytest.raises(ConfigError, match=r"backends\.base\.path = .*no-policy.* `rluf simulate --out runs/default"):
        create_app(cfg)
    assert not db.exists() and not db.parent.exists()  # the config is checked before the database is made
