import json

import numpy as np
import pytest

from rluf.errors import DataError
from rluf.rewards import Scorer, train_reward
from rluf.rewards.data import read_pairs

from .conftest import HH_DIR, tiny_config


def test_bradley_terry_ranks_chosen_above_rejected(bt_run):
    rep = bt_run["report"]
    assert rep["train"]["last_loss"] < rep["train"]["first_loss"]
    assert rep["test_pairs"] == 24 and rep["train_pairs"] == 216  # 10% of prompts held out
    assert rep["test"]["accuracy"] > 0.8  # chance is 0.5
    assert rep["test"]["spearman_true"] > 0.5  # the true scores rank chosen above rejected too
    meta = json.loads((bt_run["model"] / "rluf_reward.json").read_text())
    assert meta["objective"] == "helpfulness" and "natural_rate" not in meta


def test_saved_bt_model_scores_like_the_report(bt_run):
    scorer = Scorer.from_pretrained(bt_run["model"], device="cpu")
    pairs = read_pairs(bt_run["pairs"])
    r_c = scorer.score(pairs.contexts, pairs.chosen)
    r_r = scorer.score(pairs.contexts, pairs.rejected)
    assert np.mean(r_c > r_r) > 0.8


def test_trains_on_hh_rlhf(tmp_path):
    rep = train_reward("safety", HH_DIR / "harmless-base-test-head60.jsonl.gz", tmp_path / "m",
                       tiny_config("safety", epochs=1, batch_size=8).model_copy(
                           update={"model": tiny_config().model.model_copy(update={"max_length": 128})}))
    assert rep["test_pairs"] >= 5 and 0.0 <= rep["test"]["accuracy"] <= 1.0
    assert np.isfinite(rep["train"]["mean_loss"])
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_love_objective_needs_train_love(tmp_path, bt_run):
    from rluf.rewards import train_pairwise

    with pytest.raises(DataError, match="train_pairwise got objective = 'love'"):
        train_pairwise(bt_run["pairs"], tmp_path / "m", tiny_config("love"))


def test_training_takes_the_cores_of_finished_workers_with_the_same_weights(tmp_path, monkeypatch):
    """`rluf run` trains the helpfulness model while a worker runs other stages beside it; once the worker is
    done, training goes on with this process's full thread count (rluf.parallel.claim_free_cores), and the
    weights are those of a run on a fixed thread count."""
    import torch

    from rluf import parallel
    from rluf.parallel import Workers
    from rluf.rewards import hf_trainer

    from .conftest import make_pairs, one_thread

    pairs = make_pairs(tmp_path / "pairs.parquet", n=120)
    cfg = tiny_config("helpfulness", epochs=1)
    with one_thread():
        train_reward("helpfulness", pairs, tmp_path / "fixed", cfg)
    monkeypatch.setattr(parallel, "available_cpus", lambda: 2)
    threads_per_step = []
    loss = hf_trainer.bradley_terry_loss

    def recording_loss(*args):
        threads_per_step.append(torch.get_num_threads())
        return loss(*args)

    monkeypatch.setattr(hf_trainer, "bradley_terry_loss", recording_loss)

    def train_beside_an_idle_worker(out):
        threads_per_step.clear()
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            with Workers(1, threads=1):  # no job: the worker is done before training starts
                assert torch.get_num_threads() == 1
                train_reward("helpfulness", pairs, tmp_path / out, cfg)
        finally:
            torch.set_num_threads(before)

    train_beside_an_idle_worker("claimed")
    assert threads_per_step and set(threads_per_step) == {2}  # taken back before the first training step
    fixed, claimed = (tmp_path / d / "model.safetensors" for d in ("fixed", "claimed"))
    assert fixed.read_bytes() == claimed.read_bytes()

    # MKL_CBWR without STRICT (a user's own value): bits would depend on the thread count, so training keeps it
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    train_beside_an_idle_worker("kept")
    assert threads_per_step and set(threads_per_step) == {1}


def test_a_pair_read_as_one_sequence_gives_the_loss_and_gradients_of_two(tmp_path):
    """`pairs.share_prompt`: [shared | chosen tail | rejected tail] under the block mask scores each answer as its
    own sequence would, so the Bradley-Terry loss and every gradient equal those of the two-sequence batch; a pair
    whose contexts were cut differently is two rows in the same batch."""
    import torch

    from rluf.rewards.backbone import load_backbone
    from rluf.rewards.data import Encoder
    from rluf.rewards.hf_trainer import BradleyTerryTrainer, PairCollator, SharedPromptPairCollator, is_shared
    from rluf.rewards.scorer import shares_prompt

    from .conftest import make_pairs

    pairs = read_pairs(make_pairs(tmp_path / "pairs.parquet", n=24))
    cfg = tiny_config("helpfulness")
    model, tok, _ = load_backbone(cfg.model, [m["content"] for c in pairs.contexts for m in c] + pairs.chosen)
    assert shares_prompt(model)
    # at 20 tokens the limit cuts contexts, differently for answers of different lengths
    cut = {}
    for max_length in (64, 20):
        enc = Encoder(tok, max_length)
        cut[max_length] = triples = enc.encode_pairs(pairs.contexts, pairs.chosen, pairs.rejected)
        assert all(c and r for _, c, r in triples)
        # each answer reads exactly the sequence it reads alone (and when scored)
        assert [s + c for s, c, _ in triples] == enc.encode_many(pairs.contexts, pairs.chosen)
        assert [s + r for s, _, r in triples] == enc.encode_many(pairs.contexts, pairs.rejected)
        shared = [len(s) for s, _, _ in triples]
        if max_length == 64:
            assert min(shared) > 5  # the whole context is shared
        else:
            assert min(shared) <= 2  # cut differently: such a pair shares only its first tokens
    # a pair that shares only its first tokens is two rows of the batch, the others one
    for triples, two_rows in ((cut[64], 0), (cut[20], 24), (cut[64][:12] + cut[20][12:], 12)):
        assert sum(not is_shared(*t) for t in triples) == two_rows
        rows = [{"shared_ids": s, "chosen_tail": c, "rejected_tail": r} for s, c, r in triples]
        shared = SharedPromptPairCollator(tok.pad_token_id)(rows)
        separate = PairCollator(tok.pad_token_id)([{"chosen_ids": s + c, "rejected_ids": s + r}
                                                   for s, c, r in triples])
        assert shared["input_ids"].shape[0] == len(triples) + two_rows
        if not two_rows:
            assert shared["input_ids"].numel() < separate["input_ids"].numel()
        losses, grads = [], []
        for batch in (shared, separate):
            model.zero_grad()
            loss, out = BradleyTerryTrainer.compute_loss(None, model, dict(batch), return_outputs=True)
            loss.backward()
            losses.append((loss.item(), out["r_chosen"].detach(), out["r_rejected"].detach()))
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)
        torch.testing.assert_close(losses[0][1], losses[1][1], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(losses[0][2], losses[1][2], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-6)
