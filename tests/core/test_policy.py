import torch

from rluf.models import build_causal_lm, train_tokenizer
from rluf.policy import Policy, Sampling


def _policy():
    texts = ["What is the capital of France? Paris.", "I feel sad today. I'm sorry to hear that."] * 20
    tok = train_tokenizer(texts, vocab_size=300)
    return Policy(build_causal_lm(tok, "tiny"), tok, device="cpu")


def test_generate_shapes_and_seed():
    p = _policy()
    ctx = [[{"role": "user", "content": "What is the capital?"}]] * 3
    a = p.generate(ctx, n=2, sampling=Sampling(max_new_tokens=5), generator_seed=1)
    b = p.generate(ctx, n=2, sampling=Sampling(max_new_tokens=5), generator_seed=1)
    assert len(a) == 3 and all(len(r) == 2 for r in a)
    assert a == b


def test_batched_logprobs_equal_one_by_one(tmp_path):
    p = _policy()
    ctx = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "What is the capital of France?"}]]
    rsp = ["Paris.", "I'm sorry to hear that, it is Paris."]
    batched = p.sequence_logprobs(ctx, rsp)
    single = torch.cat([p.sequence_logprobs([c], [r]) for c, r in zip(ctx, rsp, strict=True)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    p.save_pretrained(tmp_path / "m")
    q = Policy.from_pretrained(tmp_path / "m", device="cpu")
    torch.testing.assert_close(q.sequence_logprobs(ctx, rsp), batched, atol=1e-4, rtol=1e-4)
