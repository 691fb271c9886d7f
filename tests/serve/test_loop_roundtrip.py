"""The logs the gateway exports are read unchanged by `rluf curate` and `rluf abtest analyze`."""

import random

import httpx
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from rluf.errors import DataError
from rluf.serve import ServeConfig, create_app, export

from .conftest import FixedClock, make_config
from .stub import make_stub_app

N_USERS, N_TURNS = 30, 3
pytestmark = pytest.mark.slow  # ~15 s: 90 turns through the gateway, then two stages


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """30 users x 3-turn conversations through the gateway, loves on about a third of the answers."""
    tmp = tmp_path_factory.mktemp("loop")
    url = f"sqlite:///{tmp / 'gw.db'}"
    keys = {f"key-for-user-{i:02d}-0123456789": f"u{i:02d}" for i in range(N_USERS)}
    cfg = ServeConfig.model_validate(
        {**make_config(url).model_dump(), "auth": {"api_keys": keys, "api_keys_env": None}})
    app = create_app(cfg, transport=httpx.ASGITransport(make_stub_app()), clock_us=FixedClock())
    rng, loves = random.Random(0), {"control": 0, "treatment": 0}
    with TestClient(app) as c:
        for key, user in keys.items():
            h, history, conv = {"Authorization": f"Bearer {key}"}, [], None
            for turn in range(N_TURNS):
                history = history + [{"role": "user", "content": f"{user} asks {turn}: {rng.random():.5f}"}]
                body = {"messages": history, **({"conversation_id": conv} if conv else {})}
                j = c.post("/v1/chat/completions", headers=h, json=body).json()
                conv = j["conversation_id"]
                history = history + [{"role": "assistant", "content": j["choices"][0]["message"]["content"]}]
                if rng.random() < 0.35:
                    r = c.post("/v1/reactions", headers=h, json={"message_id": j["id"], "type": "love"})
                    assert r.status_code == 201
                    loves[app.state.gateway.assign(user)] += 1
        arms = {u: app.state.gateway.assign(u) for u in keys.values()}
    export(url, tmp / "out")
    return tmp / "out", arms, loves


def test_abtest_analyze_reads_the_export(exported):
    from rluf.abtest.analyze import AnalyzeConfig, analyze

    out, arms, loves = exported
    # scripted clients love 35% of answers within a second: the adversarial filters would (rightly) flag them
    with pytest.raises(DataError, match="adversarial filters flagged .* --no-filters"):
        analyze(out, "control", "treatment", signal="love", config=AnalyzeConfig(bootstrap_reps=0))
    res = analyze(out, "control", "treatment", signal="love", config=AnalyzeConfig(bootstrap_reps=0, filters=False))
    for arm in ("control", "treatment"):
        n_users = sum(1 for a in arms.values() if a == arm)
        assert res[arm]["users"] == n_users and res[arm]["responses"] == N_TURNS * n_users
        assert res[arm]["events"] == loves[arm]


def test_curate_reads_the_export(exported, tmp_path):
    from rluf.signals.curate import curate

    out, _, loves = exported
    # 35% of answers loved is far above any natural rate: the adversarial filters would (rightly) flag it
    off = {k: {"enabled": False} for k in ("rate", "burst", "too_fast", "spam")}
    manifest = curate(out / "logs", tmp_path / "cur", {"filters": off})
    assert manifest["reaction_types"] == {"love": sum(loves.values())}
    rows = sum(pq.read_table(tmp_path / "cur" / f"{s}.parquet").num_rows for s in ("train", "validation", "test"))
    assert rows > 0
