import json
import shutil

import numpy as np
import pytest
import torch

from rluf.errors import ModelFolderError
from rluf.models import build_causal_lm, train_tokenizer
from rluf.rewards import Scorer
from rluf.rewards.data import read_curated


def test_batched_equals_one_by_one(love_run):
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    splits, _ = read_curated(love_run["data"])
    ctx, rsp = splits["test"].contexts[:12], splits["test"].responses[:12]
    ctx[3] = ctx[3] + [{"role": "assistant", "content": "a much longer earlier turn " * 5},
                       {"role": "user", "content": "and?"}]  # lengths differ -> padding inside batches
    batched = scorer.score(ctx, rsp, batch_size=5)
    single = np.array([scorer.score([c], [r])[0] for c, r in zip(ctx, rsp, strict=True)])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    assert batched.shape == (12,) and batched.std() > 0


def test_score_is_deterministic_and_progress_callback(love_run):
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    seen = []
    ctx = [[{"role": "user", "content": "hi"}]] * 5
    a = scorer.score(ctx, ["Happy to help, friend! hi"] * 5, batch_size=2, progress=seen.append)
    assert sum(seen) == 5  # one context: its five answers are read as one packed row
    np.testing.assert_allclose(a, a[0], rtol=1e-5)
    seen.clear()
    scorer.score([[{"role": "user", "content": f"hi {i}"}] for i in range(5)], ["Happy to help"] * 5,
                 batch_size=2, progress=seen.append)
    assert seen == [2, 2, 1]


def test_answers_to_one_context_read_together_score_as_alone(love_run, monkeypatch):
    """Answers whose sequences start with the same context tokens are read as one packed row (`pack_shared`);
    each scores as it does alone, including rows whose context the answer's length cuts differently."""
    from rluf.rewards import scorer as scorer_module
    from rluf.rewards.scorer import shares_prompt

    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    assert scorer.shares_prompt and shares_prompt(scorer.model)
    packed_rows = []
    pack = scorer_module.pack_shared
    monkeypatch.setattr(scorer_module, "pack_shared", lambda rows, pad: packed_rows.extend(rows) or pack(rows, pad))
    splits, _ = read_curated(love_run["data"])
    test = splits["test"]
    long = [{"role": "user", "content": "tell me about the river " * 12}]  # cut to fit max_length
    ctx = [c for c in test.contexts[:6] for _ in range(3)] + [long] * 4
    rsp = [f"{r} {extra}" for r in test.responses[:6] for extra in ("", "indeed", "the green tree")]
    rsp += ["short", "a longer answer about the river " * 2, "short", "stone"]
    packed = scorer.score(ctx, rsp, batch_size=4)
    groups = {tuple(h) for h, _ in scorer.encoder.encode_parts(ctx, rsp)}
    assert len(groups) < len(ctx) - 8  # most answers were packed with others
    assert len(packed_rows) == len(groups) and sum(len(tails) for _, tails in packed_rows) == len(ctx)
    scorer.shares_prompt = False
    alone = scorer.score(ctx, rsp, batch_size=4)
    np.testing.assert_allclose(packed, alone, rtol=1e-4, atol=1e-5)
    assert alone.std() > 0


def test_folder_without_metadata(tmp_path, love_run):
    folder = tmp_path / "m"
    shutil.copytree(love_run["model"], folder)
    (folder / "rluf_reward.json").unlink()
    with pytest.raises(ModelFolderError, match="has no rluf_reward.json: it is not an rluf reward model"):
        Scorer.from_pretrained(folder)
    with pytest.raises(ModelFolderError, match="does not exist"):
        Scorer.from_pretrained(tmp_path / "missing")


def test_folder_with_wrong_head(tmp_path, love_run):
    tok = train_tokenizer(["some text for a tokenizer"] * 10, vocab_size=300)
    lm = tmp_path / "lm"
    build_causal_lm(tok, "tiny").save_pretrained(lm)
    tok.save_pretrained(lm)
    shutil.copy(love_run["model"] / "rluf_reward.json", lm)
    with pytest.raises(ModelFolderError, match="no sequence-classification head"):
        Scorer.from_pretrained(lm)
    two = tmp_path / "two"
    shutil.copytree(love_run["model"], two)
    cfg = json.loads((two / "config.json").read_text())
    cfg["id2label"] = {"0": "a", "1": "b"}
    cfg["label2id"] = {"a": 0, "b": 1}
    (two / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match="num_labels = 2, a reward model needs exactly 1"):
        Scorer.from_pretrained(two)


def test_no_remote_code_and_safetensors_only(love_run, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    calls = []
    original = AutoModelForSequenceClassification.from_pretrained.__func__

    def spy(cls, *args, **kw):
        calls.append(kw)
        return original(cls, *args, **kw)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", classmethod(spy))
    Scorer.from_pretrained(love_run["model"], device="cpu")
    assert calls and all(kw.get("trust_remote_code") is False and kw.get("use_safetensors") for kw in calls)


def test_prob_needs_a_love_model(bt_run):
    scorer = Scorer.from_pretrained(bt_run["model"], device="cpu")
    with pytest.raises(ModelFolderError, match="prob\\(\\) needs a BCE \\(love\\) reward model"):
        scorer.prob([[{"role": "user", "content": "hi"}]], ["yo"])


def _pairs(love_run, n=120):
    splits, _ = read_curated(love_run["data"])
    return splits["test"].contexts[:n], splits["test"].responses[:n]


def test_auto_precision_on_cpu_is_the_fp32_of_before(love_run):
    from transformers import AutoModelForSequenceClassification

    ctx, rsp = _pairs(love_run)
    auto = Scorer.from_pretrained(love_run["model"], device="cpu")
    assert auto.model.dtype == torch.float32
    # what the Scorer loaded before `precision` existed: the folder as saved, moved to the device
    model = AutoModelForSequenceClassification.from_pretrained(str(love_run["model"]), use_safetensors=True)
    before = Scorer(model, auto.tokenizer, auto.meta, device="cpu")
    fp32 = Scorer.from_pretrained(love_run["model"], device="cpu", precision="fp32")
    np.testing.assert_array_equal(auto.score(ctx, rsp), before.score(ctx, rsp))  # bit for bit
    np.testing.assert_array_equal(fp32.score(ctx, rsp), before.score(ctx, rsp))
    with pytest.raises(ValueError, match="precision = 'fp16': use one of auto, bf16, fp32"):
        Scorer.from_pretrained(love_run["model"], device="cpu", precision="fp16")


def test_bf16_scores_agree_with_fp32(love_run):
    from scipy.stats import spearmanr

    from rluf.models import build_classifier

    ctx, rsp = _pairs(love_run, 200)
    fp32 = Scorer.from_pretrained(love_run["model"], device="cpu", precision="fp32").score(ctx, rsp)
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu", precision="bf16")
    assert scorer.model.dtype == torch.bfloat16
    bf16 = scorer.score(ctx, rsp)
    assert not np.array_equal(bf16, fp32)  # it did run in bf16
    # bf16 keeps 8 significant bits: one step is 2^-7 of a number's size, and the returned score is itself a bf16
    # number. Each score stays within one step of the fp32 one (measured: at most half a step, 0.006), every two
    # scores more than 2^-6 apart keep their order (measured: 8 pairs between 2^-7 and 2^-6 apart swap), and a
    # mean over responses, what evaluate ranks by, moves by far less (measured 1.4e-4).
    step = 2.0**-7 * np.maximum(np.abs(fp32), 1.0)
    assert np.all(np.abs(bf16 - fp32) <= step)
    i, j = np.triu_indices(len(fp32), 1)
    apart = np.abs(fp32[i] - fp32[j]) > 2.0**-6
    assert apart.sum() > 10_000 and np.all(np.sign(fp32[i] - fp32[j])[apart] == np.sign(bf16[i] - bf16[j])[apart])
    assert abs(bf16.mean() - fp32.mean()) < 1e-3
    # This trained model puts the answers in two tight clusters (warm, cold) whose inner differences are below one
    # bf16 step, so a rank correlation over all of them measures rounding (0.97). Where scores spread out, as an
    # untrained model's do, bf16 keeps the ranking (measured 0.9996).
    model = build_classifier(scorer.tokenizer, "tiny", max_positions=256, seed=2)
    spread = Scorer(model, scorer.tokenizer, scorer.meta, "cpu").score(ctx, rsp)  # a model handed in keeps fp32
    assert model.dtype == torch.float32
    assert spearmanr(spread, Scorer(model, scorer.tokenizer, scorer.meta, "cpu", precision="bf16").score(
        ctx, rsp)).statistic > 0.99
    assert model.dtype == torch.bfloat16  # an explicit precision casts it in place


def test_scoring_records_no_autograd(love_run):
    ctx, rsp = _pairs(love_run, 10)
    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    assert all(p.requires_grad for p in scorer.model.parameters())  # as loaded, or fresh from training
    seen = []
    scorer.model.register_forward_hook(
        lambda m, args, out: seen.append((torch.is_inference_mode_enabled(), out.logits)))
    scorer.score(ctx, rsp, batch_size=4)
    assert len(seen) == 3
    for inference, logits in seen:
        assert inference and torch.is_inference(logits) and logits.grad_fn is None and not logits.requires_grad
    assert all(p.grad is None for p in scorer.model.parameters())


def test_a_model_that_ignores_packed_positions_reads_answers_alone(love_run):
    """`shares_prompt` checks the packed layout on a few tokens: a model that drops the position ids (as an
    architecture with its own positions would) fails the check and the Scorer scores each answer alone."""
    from rluf.rewards.scorer import shares_prompt

    scorer = Scorer.from_pretrained(love_run["model"], device="cpu")
    model = scorer.model
    assert shares_prompt(model)
    forward = model.forward
    model.forward = lambda *args, position_ids=None, **kw: forward(*args, **kw)
    assert not shares_prompt(model)
    assert not Scorer(model, scorer.tokenizer, scorer.meta, device="cpu").shares_prompt
