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


def test_length_sorted_batches_return_answers_in_the_callers_order():
    # generate() batches contexts by length; greedy answers must come back where each context was
    p = _policy()
    long_ctx = [{"role": "user", "content": "I feel sad today."}, {"role": "assistant", "content": "I'm sorry."},
                {"role": "user", "content": "What is the capital of France?"}]
    ctx = [long_ctx, [{"role": "user", "content": "hi"}], long_ctx[:1], [{"role": "user", "content": "Paris?"}]]
    greedy = Sampling(max_new_tokens=6, temperature=0.0)
    batched, finished = p.generate(ctx, n=2, sampling=greedy, batch_size=3, return_finished=True)
    single = [p.generate([c], n=1, sampling=greedy)[0][0] for c in ctx]
    assert [b[0] for b in batched] == single and [b[1] for b in batched] == single
    assert finished.shape == (4, 2)
    assert len({len(p.encode_context(c)) for c in ctx}) == 4  # the order really changes

def test_batched_logprobs_equal_one_by_one(tmp_path):
    p = _policy()
    ctx = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "hi"}],
           [{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "hi"}]]
    rsp = ["I'm sorry to hear that, it is Paris.", "Paris.", "Paris.", "Hello there, how are you?"]
    lengths = [len(p.encode_context(c)) + len(p.encode_response(r)) for c, r in zip(ctx, rsp, strict=True)]
    assert lengths != sorted(lengths)  # batched by length: the order really changes
    batched = p.sequence_logprobs(ctx, rsp, batch_size=2)
    single = torch.cat([p.sequence_logprobs([c], [r]) for c, r in zip(ctx, rsp, strict=True)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    with_grad = p.sequence_logprobs(ctx, rsp, batch_size=2, grad=True)
    with_grad[0].backward()  # gradients reach the weights through the reordering
    assert any(w.grad is not None and w.grad.abs().sum() > 0 for w in p.model.parameters())
    torch.testing.assert_close(with_grad.detach(), batched, atol=1e-4, rtol=1e-4)
    p.save_pretrained(tmp_path / "m")
    q = Policy.from_pretrained(tmp_path / "m", device="cpu")
    torch.testing.assert_close(q.sequence_logprobs(ctx, rsp), batched, atol=1e-4, rtol=1e-4)


def test_logprobs_from_the_response_positions_equal_the_whole_sequence_head():
    # sequence_logprobs runs the LM head on the last max(len(response)) + 1 positions only; the reference here
    # runs it on every position, with a response of every length in one left-padded batch
    p = _policy()
    ctx = [[{"role": "user", "content": "What is the capital of France? I feel sad today."}],
           [{"role": "user", "content": "hi"}], [{"role": "user", "content": "Paris?"}]]
    rsp = ["Paris.", "Hello there, I'm sorry to hear that, how are you today?", ""]
    got = p.sequence_logprobs(ctx, rsp, batch_size=8)
    want = []
    for c, r in zip(ctx, rsp, strict=True):
        c_ids, r_ids = p.encode_context(c), p.encode_response(r)
        ids = torch.tensor([c_ids + r_ids])
        with torch.no_grad():
            logp = torch.log_softmax(p.model(input_ids=ids).logits[0, :-1].float(), -1)  # (T-1, V)
        targets = ids[0, 1:]
        want.append(logp[torch.arange(len(targets)), targets][-len(r_ids):].sum())
    torch.testing.assert_close(got, torch.stack(want), atol=1e-4, rtol=1e-4)


def test_logprobs_summed_while_sampling_equal_a_forward_pass():
    import numpy as np
    import pytest

    p = _policy()
    eos = p.tokenizer.eos_token_id

    def likely_eos(module, inputs, logits):  # about half the answers end within 8 tokens
        logits = logits.clone()
        logits[..., eos] += 4.0
        return logits

    p.model.lm_head.register_forward_hook(likely_eos)
    ctx = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "hi"}]] * 4
    answers, finished, known = p.generate(ctx, n=3, sampling=Sampling(max_new_tokens=8), seeds=list(range(8)),
                                          return_finished=True, return_logprobs=True)
    assert known.shape == finished.shape == (8, 3)
    assert finished.any() and not finished.all()
    assert np.isnan(known[~finished]).all()  # a cut-off answer is not the text plus eos that the pass scores
    assert (~np.isnan(known[finished])).mean() > 0.5
    flat_ctx = [c for c in ctx for _ in range(3)]
    flat = [a for row in answers for a in row]
    full = p.sequence_logprobs(flat_ctx, flat).numpy()
    have = ~np.isnan(known.reshape(-1))
    np.testing.assert_allclose(known.reshape(-1)[have], full[have], rtol=1e-4, atol=1e-4)
    mixed = p.sequence_logprobs(flat_ctx, flat, known=known.reshape(-1)).numpy()
    np.testing.assert_allclose(mixed, full, rtol=1e-4, atol=1e-4)  # the NaN rows take the forward pass
    with pytest.raises(ValueError, match="without gradient"):
        p.sequence_logprobs(flat_ctx, flat, known=known.reshape(-1), grad=True)
    with pytest.raises(ValueError, match="known log-probs for"):
        p.sequence_logprobs(flat_ctx, flat, known=known.reshape(-1)[:-1])


def test_sampling_draws_from_the_warped_distribution():
    import numpy as np
    from scipy.stats import chisquare

    from rluf.policy import sampling_processors

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0, 0.5]]).repeat(20_000, 1)  # (N, V), one row per draw
    torch.manual_seed(0)
    ids = torch.zeros(len(logits), 1, dtype=torch.long)
    for sampling, expected in (
        (Sampling(temperature=1.0), torch.softmax(logits[0], 0)),
        (Sampling(temperature=0.5, top_k=3), torch.softmax(torch.tensor([4.0, 2.0, -60, -60, -60, 1.0]), 0)),
        # top-p keeps the fewest tokens reaching 0.6: token 0 (p = 0.56) and token 1 (0.21)
        (Sampling(temperature=1.0, top_p=0.6), torch.softmax(torch.tensor([2.0, 1.0, -60, -60, -60, -60]), 0)),
    ):
        out = sampling_processors(sampling)(ids, logits.clone())
        assert torch.isfinite(out).sum(1).eq(1).all()  # one token left per row: greedy decoding takes it
        counts = np.bincount(out.argmax(1).numpy(), minlength=6)
        exp = expected.double().numpy()
        keep = exp > 1e-9
        assert counts[~keep].sum() == 0  # tokens the warpers removed are never drawn
        assert chisquare(counts[keep], exp[keep] / exp[keep].sum() * counts.sum()).pvalue > 1e-3
    assert len(sampling_processors(Sampling(temperature=0))) == 0  # greedy: no draw at all


def _hf_generate(p, contexts, sampling, seeds=None, n=1):
    """The reference: transformers' own `generate` with our warpers and draw, one batch of n copies a context."""
    from rluf.policy import row_seed, sampling_processors

    ids, mask = p._left_pad([p.encode_context(c) for c in contexts for _ in range(n)])
    gens = None if seeds is None else [torch.Generator().manual_seed(row_seed(s, k)) for s in seeds for k in range(n)]
    out = p.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=sampling.max_new_tokens,
                           do_sample=False, logits_processor=sampling_processors(sampling, gens),
                           pad_token_id=p.tokenizer.pad_token_id, eos_token_id=p.tokenizer.eos_token_id)
    new = out[:, ids.shape[1]:]
    return ([t.strip() for t in p.tokenizer.batch_decode(new, skip_special_tokens=True)],
            (new == p.tokenizer.eos_token_id).any(1).tolist())


def test_own_decode_loop_gives_the_tokens_of_transformers_generate():
    # rluf samples in its own loop (rows that end leave the batch); it must draw exactly what HF's generate draws
    p = _policy()
    with torch.no_grad():  # a large eos embedding: rows end at scattered steps, so the batch really shrinks
        p.model.get_input_embeddings().weight[p.tokenizer.eos_token_id] *= 12
        for layer in p.model.model.layers:  # sharp attention: a wrong position or mask changes the tokens
            layer.self_attn.q_proj.weight *= 8
            layer.self_attn.k_proj.weight *= 8
    ctx = [[{"role": "user", "content": "What is the capital? " * (i + 1)}] for i in range(12)]  # sorted by length
    ends = []
    nucleus, greedy = Sampling(max_new_tokens=24, temperature=0.8, top_k=20, top_p=0.9), Sampling(24, temperature=0)
    for sampling, seeds, global_seed, n in ((Sampling(max_new_tokens=24), list(range(12)), None, 2),  # shared prefill
                                            (nucleus, None, 5, 1), (greedy, None, None, 1)):
        if global_seed is not None:
            torch.manual_seed(global_seed)
        expected, expected_ended = _hf_generate(p, ctx, sampling, seeds, n)
        ours, ended = p.generate(ctx, n=n, sampling=sampling, batch_size=24, return_finished=True, seeds=seeds,
                                 generator_seed=global_seed)
        assert [a for o in ours for a in o] == expected
        assert ended.ravel().tolist() == expected_ended
        ends.append(sum(expected_ended) / len(expected_ended))
    assert any(0 < e < 1 for e in ends)  # some rows ended early, some ran to the limit
