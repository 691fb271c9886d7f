"""Tiny real CRRAFT runs: reward goes up, metrics are logged, fallback/skip, resume == uninterrupted, LoRA."""

import json

import numpy as np
import pytest
import torch

from optimize.optimize_helpers import ShareOfA, tiny_config
from rluf.optimize import optimize
from rluf.optimize.prompts import load_pool
from rluf.policy import Policy, Sampling


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _expected_score(policy_dir, contexts):
    p = Policy.from_pretrained(policy_dir, device="cpu")
    g = p.generate(contexts, n=8, sampling=Sampling(max_new_tokens=8), generator_seed=5)
    return ShareOfA().score(contexts * 8, [x for gs in g for x in gs]).mean()


@pytest.mark.slow
def test_tiny_run_raises_reward_and_logs_metrics(tiny_policy_dir, prompt_file, tmp_path):
    # the untrained tiny policy rarely ends within 8 tokens: keep its cut-off samples
    cfg = tiny_config(tiny_policy_dir, prompt_file, iterations=12, batch_prompts=8, num_candidates=4,
                      sampling=dict(max_new_tokens=8), drop_cut_off=False)
    summary = optimize(cfg, tmp_path / "run", objectives={"a": ShareOfA()})
    assert summary["finished"] and summary["iterations_done"] == 12
    contexts = [p.context for p in load_pool(tmp_path / "run" / "pool.jsonl")]
    before, after = _expected_score(tiny_policy_dir, contexts), _expected_score(tmp_path / "run" / "policy", contexts)
    assert after > before + 0.1, (before, after)
    recs = _records(tmp_path / "run")
    assert [r["iteration"] for r in recs] == list(range(13))
    last = recs[-1]
    for key in ("reward/a", "reward/combined", "judge/length_pass", "judge/all_pass", "kl/mean", "select/skipped",
                "select/fallback", "hack/signoff_rate", "hack/distinct_1", "hack/distinct_2", "hack/refusal_rate",
                "hack/closing_repeat_rate", "len/mean", "loss", "grad_norm"):
        assert isinstance(last[key], float | int), key
    assert isinstance(last["hack/top_closing"], list)
    assert recs[1]["kl/mean"] == pytest.approx(0.0, abs=1e-4)  # iteration 1 samples from pi = pi_ref
    assert last["kl/mean"] > 0.1
    assert (tmp_path / "run" / "config.json").is_file() and (tmp_path / "run" / "summary.json").is_file()


def _strip(recs):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in recs]


def test_resume_after_stop_matches_uninterrupted_run(tiny_policy_dir, prompt_file, tmp_path):
    cfg = tiny_config(tiny_policy_dir, prompt_file)
    full = optimize(cfg, tmp_path / "full", objectives={"a": ShareOfA()})
    # "killed" after 3 iterations: checkpoint at 2, iteration 3 logged but lost
    part = optimize(cfg.model_copy(update={"stop_after": 3}), tmp_path / "part", objectives={"a": ShareOfA()})
    assert not part["finished"] and part["iterations_done"] == 3 and part["policy"] is None
    assert json.loads((tmp_path / "part" / "checkpoints" / "latest.json").read_text())["iteration"] == 2
    resumed = optimize(cfg, tmp_path / "part", resume=True, objectives={"a": ShareOfA()})
    assert resumed["finished"]
    assert _strip(_records(tmp_path / "part")) == _strip(_records(tmp_path / "full"))
    a = Policy.from_pretrained(tmp_path / "full" / "policy", device="cpu").model.state_dict()
    b = Policy.from_pretrained(tmp_path / "part" / "policy", device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["final"]["reward/combined"] == resumed["final"]["reward/combined"]


def test_fallback_to_logged_y_base_and_skip(tiny_policy_dir, prompt_file, tmp_path):
    # every prompt's reference is "Paris" only for the France question; give all of them the reference so
    # that random candidates fail the exact-answer judge while the logged y_base ("Paris") passes
    cfg = tiny_config(tiny_policy_dir, prompt_file, iterations=2).model_copy(deep=True)
    cfg.prompts.y_base = "logged"
    cfg.judges = [*cfg.judges]
    from rluf.judges.config import ExactAnswerJudgeConfig, LengthJudgeConfig

    cfg.judges = [ExactAnswerJudgeConfig(key="id_is_ref")]
    pool_ref = {"id_is_ref": "Paris"}
    from rluf.optimize import runner

    orig = runner.build_pool

    def with_refs(c, world, reference):
        pool = orig(c, world, reference)
        for p in pool:
            p.metadata.update(pool_ref)
        return pool

    runner.build_pool = with_refs
    try:
        optimize(cfg, tmp_path / "fb", objectives={"a": ShareOfA()})
    finally:
        runner.build_pool = orig
    recs = _records(tmp_path / "fb")[1:]
    assert all(r["select/fallback"] == 1.0 and r["select/skipped"] == 0.0 for r in recs)
    assert all(r["reward/selected"] == pytest.approx(0.5) for r in recs)  # sigmoid(0) * w_a
    assert all(r["judge/y_base_pass"] == 1.0 and r["judge/exact_answer_pass"] == 0.0 for r in recs)

    # nothing passes (not even y_base): every prompt is skipped and the weights do not move
    cfg2 = tiny_config(tiny_policy_dir, prompt_file, iterations=2)
    cfg2.judges = [LengthJudgeConfig(min_words=90, max_words=100)]
    optimize(cfg2, tmp_path / "skip", objectives={"a": ShareOfA()})
    recs = _records(tmp_path / "skip")[1:]
    assert all(r["select/skipped"] == 1.0 and r["select/n"] == 0 for r in recs)
    a = Policy.from_pretrained(tiny_policy_dir, device="cpu").model.state_dict()
    b = Policy.from_pretrained(tmp_path / "skip" / "policy", device="cpu").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lora_run_trains_adapters_and_saves_a_merged_model(tiny_policy_dir, prompt_file, tmp_path):
    cfg = tiny_config(tiny_policy_dir, prompt_file, iterations=2, lr=5e-2,
                      lora=dict(enabled=True, r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    optimize(cfg, tmp_path / "lora", objectives={"a": ShareOfA()})
    state = torch.load(next((tmp_path / "lora" / "checkpoints").glob("ckpt-*.pt")), weights_only=True)
    assert state["model"] and all("lora_" in k for k in state["model"])
    a = Policy.from_pretrained(tiny_policy_dir, device="cpu").model.state_dict()
    b = Policy.from_pretrained(tmp_path / "lora" / "policy", device="cpu").model.state_dict()
    assert set(a) == set(b)  # merged: a plain HF model again
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    assert np.isfinite(_records(tmp_path / "lora")[-1]["loss"])


def test_intermediate_policies_are_saved_and_become_run_candidates(tiny_policy_dir, prompt_file, tmp_path):
    from safetensors.torch import load_file

    from rluf.run.pipeline import candidate_policies

    cfg = tiny_config(tiny_policy_dir, prompt_file).model_copy(update={"save_policy_every": 2})
    optimize(cfg, tmp_path / "sweep" / "love_only", objectives={"a": ShareOfA()})
    run = tmp_path / "sweep" / "love_only"
    # iterations 4 with every 2: iteration 2 is saved as an intermediate policy; 4 is the final policy/
    assert sorted(p.name for p in (run / "policies").iterdir()) == ["iter-000002"]
    mid = load_file(run / "policies" / "iter-000002" / "model.safetensors")
    final = load_file(run / "policy" / "model.safetensors")
    assert any(not torch.equal(mid[k], final[k]) for k in final)
    assert Policy.from_pretrained(run / "policies" / "iter-000002", device="cpu").generate(
        [[{"role": "user", "content": "hi"}]], n=1, sampling=Sampling(max_new_tokens=4))
    (tmp_path / "simulate" / "policy").mkdir(parents=True)
    assert candidate_policies(tmp_path) == {"baseline": tmp_path / "simulate" / "policy",
                                           "love_only@2": run / "policies" / "iter-000002",
                                           "love_only": run / "policy"}


def test_lora_reference_is_the_base_with_adapters_off_not_a_copy(tiny_policy_dir, prompt_file):
    from rluf.optimize.runner import AdaptersOff, _models

    cfg = tiny_config(tiny_policy_dir, prompt_file,
                      lora=dict(enabled=True, r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    policy, reference = _models(cfg, "cpu")
    assert isinstance(reference.model, AdaptersOff) and reference.model.peft_model is policy.model
    ctx, rsp = [[{"role": "user", "content": "hi"}]] * 2, ["Paris is nice", "bye"]
    base = Policy.from_pretrained(tiny_policy_dir, device="cpu").sequence_logprobs(ctx, rsp)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)  # the adapters now change the policy
    moved = policy.sequence_logprobs(ctx, rsp)
    ref = policy.sequence_logprobs(ctx, rsp, model=reference.model)
    torch.testing.assert_close(ref, base)
    assert (moved - base).abs().max() > 1e-3
    assert reference.generate(ctx[:1], n=1, sampling=Sampling(max_new_tokens=3), seeds=[0])[0][0] == \
        Policy.from_pretrained(tiny_policy_dir, device="cpu").generate(
            ctx[:1], n=1, sampling=Sampling(max_new_tokens=3), seeds=[0])[0][0]


def _counting_checkpoint(monkeypatch) -> list[int]:
    """Counts the decoder layers Hugging Face runs through torch's checkpoint (looked up when it is enabled)."""
    import transformers.modeling_utils as mu

    calls, real = [], mu.checkpoint

    def counted(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(mu, "checkpoint", counted)
    return calls


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_run(tiny_policy_dir, prompt_file, tmp_path, monkeypatch, lora):
    calls = _counting_checkpoint(monkeypatch)
    extra = dict(lr=5e-2, lora=dict(enabled=True, r=4, alpha=8, target_modules=["q_proj", "v_proj"])) if lora else {}
    runs, layers = {}, {}
    for on in (False, True):
        calls.clear()
        cfg = tiny_config(tiny_policy_dir, prompt_file, iterations=2, drop_cut_off=False, gradient_checkpointing=on,
                          **extra)
        optimize(cfg, tmp_path / str(on), objectives={"a": ShareOfA()})
        runs[on], layers[on] = _strip(_records(tmp_path / str(on))), len(calls)
    assert layers[False] == 0 and layers[True] > 0  # the layers were recomputed, in the training passes only
    for x, y in zip(runs[False], runs[True], strict=True):
        assert x.keys() == y.keys() and x.get("select/choice") == y.get("select/choice")
        for k, v in x.items():
            if isinstance(v, float):  # the recomputed forward is the same arithmetic: equal to float32 rounding
                assert y[k] == pytest.approx(v, rel=1e-5, abs=1e-5), k
    assert all(r["select/n"] > 0 and np.isfinite(r["loss"]) for r in runs[True][1:])  # both iterations trained
    a = Policy.from_pretrained(tmp_path / "False" / "policy", device="cpu").model.state_dict()
    b = Policy.from_pretrained(tmp_path / "True" / "policy", device="cpu").model.state_dict()
    start = Policy.from_pretrained(tiny_policy_dir, device="cpu").model.state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)


def test_generation_under_gradient_checkpointing_keeps_its_kv_cache(tiny_policy_dir, monkeypatch):
    from rluf.optimize.runner import checkpoint_activations

    calls = _counting_checkpoint(monkeypatch)
    plain, ckpt = (Policy.from_pretrained(tiny_policy_dir, device="cpu") for _ in range(2))
    checkpoint_activations(ckpt.model)
    ckpt.model.train()  # as CRRAFT leaves it after an update
    fed = []  # tokens fed to each forward pass of generate: 1 per step once the KV cache holds the context
    ckpt.model.register_forward_pre_hook(lambda m, args, kw: fed.append(kw["input_ids"].shape[1]), with_kwargs=True)
    ctx, s = [[{"role": "user", "content": "What is the capital of France?"}]] * 2, Sampling(max_new_tokens=5)
    got = ckpt.generate(ctx, n=2, sampling=s, seeds=[1, 2])
    assert got == plain.generate(ctx, n=2, sampling=s, seeds=[1, 2])
    assert len(fed) > 1 and fed[0] > 1 and set(fed[1:]) == {1}
    assert calls == [] and ckpt.model.training
    assert any(getattr(m, "gradient_checkpointing", False) for m in ckpt.model.modules())  # still enabled
    ckpt.sequence_logprobs(ctx, ["Paris", "Paris is"], grad=True).sum().backward()
    assert calls  # a training pass does recompute
