
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rluf.policy import Policy
from rluf.schema import check_table
from rluf.sim import World, simulate, simulate_ab
from rluf.sim.deployment import hash_split, template_arm
from rluf.sim.traffic import deploy

from .conftest import micro_config

LOGS = ("messages", "reactions", "users")


def test_tiny_baseline_trains_saves_loads_generates(tiny_baseline):
    folder, _ = tiny_baseline
    import json

    info = json.loads((folder / "rluf_baseline.json").read_text())
    assert info["final_loss"] < info["first_loss"]
    assert (folder / "model.safetensors").is_file()
    policy = Policy.from_pretrained(folder, device="cpu")
    assert policy.tokenizer.chat_template
    out = policy.generate([[{"role": "user", "content": "What is the capital of Kalmora?"}]], n=2)
    assert len(out[0]) == 2 and all(isinstance(r, str) for r in out[0])


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory, tiny_baseline):
    folder, _ = tiny_baseline
    out = tmp_path_factory.mktemp("sim") / "a"
    summary = simulate(micro_config(), out, policy_path=folder)
    return out, summary, folder


def test_simulate_writes_canonical_logs(sim_dir):
    out, summary, _ = sim_dir
    tables = {n: pq.read_table(out / "logs" / f"{n}.parquet") for n in LOGS}
    for name, t in tables.items():
        assert check_table(t, name).num_rows == t.num_rows > 0
    msgs, reacts = tables["messages"], tables["reactions"]
    asst = msgs.filter(pc.equal(msgs["role"], "assistant"))
    assert set(pc.unique(asst["model_id"]).to_pylist()) == {"policy"}
    assert msgs.filter(pc.equal(msgs["role"], "user"))["model_id"].null_count == asst.num_rows
    assert pc.all(pc.is_in(reacts["message_id"], value_set=asst["message_id"])).as_py()
    assert set(pc.unique(reacts["type"]).to_pylist()) <= {"love", "like", "dislike", "regenerate"}
    assert summary["counts"]["assistant_messages"] == asst.num_rows
    truth = pq.read_table(out / "truth" / "messages.parquet")
    assert truth["message_id"].to_pylist() == asst["message_id"].to_pylist()
    adv = pq.read_table(out / "truth" / "adversarial.parquet")
    assert set(adv["kind"].to_pylist()) == {"spammer", "burst"}
    for f in (
        "world.json",
        "simulate.json",
        "prompts.parquet",
        "pairs/helpfulness.parquet",
        "pairs/safety.parquet",
    ):
        assert (out / f).is_file(), f
    assert World.load(out).love_intercept == World(micro_config()).love_intercept


def test_pairs_are_trl_preference_format(sim_dir):
    out = sim_dir[0]
    for name, n in (("helpfulness", 60), ("safety", 30)):
        t = pq.read_table(out / "pairs" / f"{name}.parquet")
        assert t.num_rows == n
        row = t.slice(0, 1).to_pylist()[0]
        assert row["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in row["chosen"]] == ["assistant"] == [m["role"] for m in row["rejected"]]
        flipped = np.array(t["label_flipped"].to_pylist())
        better = np.array(t["chosen_score"].to_pylist()) > np.array(t["rejected_score"].to_pylist())
        assert (better == ~flipped).all()


@pytest.mark.slow
def test_simulate_is_byte_identical(sim_dir, tmp_path):
    out, _, folder = sim_dir
    simulate(micro_config(), tmp_path / "b", policy_path=folder)
    for f in [f"logs/{n}.parquet" for n in LOGS] + ["pairs/helpfulness.parquet", "truth/messages.parquet"]:
        assert (out / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_natural_love_rate_within_tolerance():
    w = World(micro_config(population={"n_users": 3000}))
    arm = template_arm(w)
    tables = deploy(w, [arm], np.zeros(len(w.user_ids), np.int64), np.random.default_rng(0))
    truth, reacts = tables["truth_messages"], tables["reactions"]
    normal = pc.equal(truth["adversarial"], "")
    true_rate = pc.mean(truth.filter(normal)["p_love"]).as_py()
    assert true_rate == pytest.approx(w.cfg.signals.natural_love_rate, rel=0.2)
    loves = reacts.filter(pc.equal(reacts["type"], "love"))
    ids = truth.filter(normal)["message_id"]
    observed = pc.sum(pc.is_in(ids, value_set=loves["message_id"])).as_py() / len(ids)
    assert observed == pytest.approx(w.cfg.signals.natural_love_rate, rel=0.35)


@pytest.mark.slow
def test_simulate_ab_splits_users_by_stable_hash(tmp_path, tiny_baseline):
    _, policy = tiny_baseline
    s = simulate_ab(micro_config(), policy, policy, tmp_path / "ab", arms=("control", "treatment"))
    msgs = pq.read_table(tmp_path / "ab" / "logs" / "messages.parquet")
    asst = msgs.filter(pc.equal(msgs["role"], "assistant")).to_pandas()
    assert set(asst["model_id"]) == {"control", "treatment"}
    assert (asst.groupby("user_id")["model_id"].nunique() == 1).all()
    users = sorted(set(asst["user_id"]))
    expected = np.array(["control", "treatment"])[hash_split(users, 2)]
    assert (asst.groupby("user_id")["model_id"].first().loc[users].to_numpy() == expected).all()
    assert set(s["by_arm"]) == {"control", "treatment"}


def test_simulated_logs_ingest_with_zero_quarantined(sim_dir, tmp_path):
    from rluf.ingest import ingest

    report = ingest([sim_dir[0] / "logs"], tmp_path / "ing")
    for name in LOGS:
        t = report["tables"][name]
        assert t["quarantined"] == 0 and t["accepted"] == t["read"] > 0, (name, t)


def test_baseline_loss_on_response_tokens_matches_hf_loss_and_batches_cover_the_corpus(tiny_baseline):
    import torch

    from rluf.sim.baseline import _batch, _length_grouped_batches, _response_loss

    tok, model = tiny_baseline[1].tokenizer, tiny_baseline[1].model
    examples = [([1, 5, 6, 7, 8, 9], 3), ([1, 5, 6, 10, 11, 12, 13, 14, 2], 4), ([1, 9, 9, 2], 2)]
    batch = _batch(examples, tok.pad_token_id)
    with torch.no_grad():  # the LM head only at response positions gives HF's full-sequence loss exactly
        assert float(_response_loss(model, batch)) == pytest.approx(float(model(**batch).loss), rel=1e-5)
    lengths = np.random.default_rng(0).integers(5, 100, 1000)
    batches = _length_grouped_batches(list(lengths), 32, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    padded = np.mean([lengths[b].max() for b in batches])
    random_padded = np.mean([lengths[b].max() for b in np.array_split(np.random.default_rng(2).permutation(1000), 32)])
    assert padded < 0.7 * random_padded


def test_interleave_takes_plain_and_chunked_arrays():
    # Arrow returns chunked arrays from `take` on large string columns (an A/B test with 60,000 users did)
    import pyarrow as pa

    from rluf.sim.traffic import _interleave

    users = pa.array(["q0", "q1", "q2"])
    answers = pa.chunked_array([pa.array(["a0"]), pa.array(["a1", "a2"])])
    assert _interleave(users, answers).to_pylist() == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert _interleave(pa.nulls(2, pa.string()), pa.array(["m", "m"])).to_pylist() == [None, "m", None, "m"]


def test_pooled_arm_reuses_the_first_answers_of_a_simulated_pool(sim_dir, tmp_path):
    from rluf.errors import ConfigError
    from rluf.sim.deployment import pooled_arm

    out, _, policy = sim_dir
    # same content, new users, a pool of one
    world = World(micro_config(traffic_seed=9, pool={"answers_per_message": 1}))
    arm = pooled_arm(world, out)
    pool = pq.read_table(out / "truth" / "pool.parquet").to_pandas()
    first = pool[pool["k"] == 0].sort_values("item_id")
    assert arm.item_ids.tolist() == first["item_id"].tolist() == np.flatnonzero(world.item_split == "train").tolist()
    assert [r[0] for r in arm.responses] == first["text"].tolist()
    assert np.array_equal(arm.table["taste"][:, 0], first["taste"].to_numpy())  # the same truth, recomputed

    for bad, field in ((micro_config(seed=4), "seed"),
                       (micro_config(pool={"answers_per_message": 3}), "pool.answers_per_message"),
                       (micro_config(pool={"temperature": 0.5}), "pool sampling")):
        with pytest.raises(ConfigError, match=field):
            pooled_arm(World(bad), out)

    # the A/B test's control arm: the pooled answers, the policy never loaded (the path does not exist)
    ab = simulate_ab(micro_config(traffic_seed=9), tmp_path / "no-policy", policy, tmp_path / "ab",
                     control_pool=out)
    ab_pool = pq.read_table(tmp_path / "ab" / "truth" / "pool.parquet").to_pandas()
    control = ab_pool[ab_pool["arm"] == "control"].sort_values(["item_id", "k"])
    assert control["text"].tolist() == pool.sort_values(["item_id", "k"])["text"].tolist()
    assert set(ab["by_arm"]) == {"control", "treatment"}
