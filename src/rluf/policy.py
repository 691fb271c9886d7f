"""A chat policy: a Hugging Face causal LM plus its tokenizer, with batched sampling and sequence log-probs.

Used by the simulator (deployment), the optimizer (best-of-K generation, log pi and log pi_ref), the
evaluator and the gateway's local backend. Contexts are lists of chat messages
``[{"role": "user", "content": "..."}, ...]``; responses are plain strings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from rluf.parallel import claim_free_cores
from rluf.utils import chat_key, length_batches, select_device

ENCODED_CONTEXTS_KEPT = 200_000  # Policy's cache of encoded contexts (a few MB of token ids)

Chat = list[dict[str, str]]


@dataclass
class Sampling:
    """Sampling parameters for generation."""

    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    token_budget: int | None = None  # per generate batch: rows x (longest context + max_new_tokens); None: no cap


class InverseCdfDraw:
    """Draws the next token as a logits processor (greedy decoding then takes it): one uniform per row and a
    binary search in the cumulative distribution. HF's sampling calls torch.multinomial, which on CPU draws an
    exponential for every vocabulary entry: a third of the simulator's generation time (2,048 tokens, 512 rows).

    With `generators` (one per row), row i draws from its own stream: its sample depends on its seed only,
    not on which rows share its batch or process (data-parallel CRRAFT selects the same answers on N processes).
    """

    def __init__(self, generators: list[torch.Generator] | None = None):
        self.generators = generators

    def uniforms(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        """(rows, 1) uniforms: one from each row's generator, or `rows` from the global stream."""
        if self.generators is None:
            return torch.rand(rows, 1, dtype=like.dtype, device=like.device)
        u = [torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators]
        return torch.stack(u).to(dtype=like.dtype, device=like.device)  # (B, 1)

    @staticmethod
    def draw(scores: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """(B,) tokens: the first index whose cumulative probability exceeds u (B, 1) of the total."""
        cdf = torch.softmax(scores.double(), dim=-1).cumsum(-1)  # (B, V); excluded tokens add 0
        return torch.searchsorted(cdf, u.to(cdf.dtype) * cdf[:, -1:], right=True).clamp_(max=cdf.shape[1] - 1)[:, 0]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # HF LogitsProcessor
        token = self.draw(scores, self.uniforms(scores.shape[0], scores.double()))[:, None]  # (B, 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)


def logit_warpers(sampling: Sampling):
    """HF's temperature, top-k and top-p warpers, in HF's order."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    procs = [TemperatureLogitsWarper(sampling.temperature)]
    if sampling.top_k > 0:
        procs.append(TopKLogitsWarper(sampling.top_k))
    if sampling.top_p < 1:
        procs.append(TopPLogitsWarper(sampling.top_p))
    return LogitsProcessorList(procs)


def sampling_processors(sampling: Sampling, generators: list[torch.Generator] | None = None):
    """The warpers then the draw, as one HF LogitsProcessorList (for `model.generate`); nothing for greedy."""
    from transformers import LogitsProcessorList

    if sampling.temperature <= 0:
        return LogitsProcessorList()
    return LogitsProcessorList([*logit_warpers(sampling), InverseCdfDraw(generators)])


def token_budget_batches(lengths: list[int], max_rows: int, new_tokens: int, budget: int | None) -> list[np.ndarray]:
    """Rows sorted by length, cut into batches of at most `max_rows` whose padded size, rows x (longest length +
    new_tokens), stays within `budget` tokens (the KV cache and activations grow with it): many short prompts
    share a batch, a long one gets a small batch (alone if it alone exceeds the budget)."""
    if budget is None:
        return length_batches(lengths, max_rows, longest_first=False)
    batches, current = [], []
    for i in np.argsort(np.asarray(lengths), kind="stable"):  # ascending: row i is the batch's longest so far
        if current and (len(current) == max_rows or (len(current) + 1) * (lengths[i] + new_tokens) > budget):
            batches.append(np.asarray(current))
            current = []
        current.append(i)
    return batches + [np.asarray(current)] if current else batches


def row_seed(*key: int) -> int:
    """A well-mixed 63-bit seed from integers, e.g. (seed, iteration, prompt id) or (that, candidate k)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@runtime_checkable
class GenerationEngine(Protocol):
    """The seam through which CRRAFT, `rluf evaluate` and the simulator's evaluation generate. `Policy` (a Hugging
    Face model's forward and KV cache in rluf's decode loop) is the engine rluf tests; a faster one (vLLM) would
    implement this method and receive the trained weights after each optimizer step (docs/crraft.md, "Generation
    engines").

    Returns [len(contexts)][n] answers (with `return_finished`, also a (len(contexts), n) bool array; with
    `return_logprobs`, also a (len(contexts), n) float array of the policy's log pi(answer | context), NaN where
    the engine does not know it); `seeds`, one per context, make answer k to context i a function of
    (seeds[i], k) alone."""

    def generate(self, contexts: list[Chat], n: int = 1, sampling: Sampling | None = None, batch_size: int = 64,
                 generator_seed: int | None = None, return_finished: bool = False,
                 seeds: list[int] | None = None, return_logprobs: bool = False): ...


def shard(items, rank: int, world: int) -> np.ndarray:
    """Process `rank`'s contiguous share of `items` under data parallelism: every item once, in order; shares
    differ by at most one (5 items on 2 processes: 3 + 2)."""
    return np.array_split(np.asarray(items), world)[rank]


def process_state():
    """accelerate's view of the launch (rank, number of processes). Made with `cpu=True` where there is no GPU:
    a bare PartialState() under torchrun on a CPU-only machine reports one process, and, being shared, would
    make every later Accelerator a 1-process one too."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def generate_sharded(policy: GenerationEngine, contexts: list[Chat], n: int, sampling: Sampling, seed: int,
                     batch_size: int = 64, return_logprobs: bool = False):
    """[M][n] answers, each process of a distributed launch generating its share of the M contexts (one process:
    all of them), gathered to every process in order. Answer k to context m is seeded by (seed, m, k), so
    the answers do not depend on the number of processes. `return_logprobs` (a `Policy` only): also the (M, n)
    log-probs summed while sampling (`Policy.generate`)."""
    from accelerate.utils import gather_object

    state = process_state()
    ids = shard(np.arange(len(contexts)), state.process_index, state.num_processes)
    kw = {"return_logprobs": True} if return_logprobs else {}
    mine = policy.generate([contexts[i] for i in ids], n=n, sampling=sampling, batch_size=batch_size,
                           seeds=[row_seed(seed, i) for i in ids], **kw)
    if not return_logprobs:
        return gather_object(mine) if state.num_processes > 1 else mine
    answers, logps = mine
    if state.num_processes > 1:
        answers, logps = gather_object(answers), np.concatenate(gather_object([logps]))
    return answers, logps


def forward_parameters(model) -> frozenset[str]:
    """The names the forward of `model` takes, through peft and AdaptersOff wrappers: newer transformers name
    the KV cache argument `cache` (`past_key_values` is deprecated there)."""
    model = getattr(model, "peft_model", model)  # rluf.optimize.runner.AdaptersOff
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return _forward_parameters_of(type(model))


@functools.cache
def _forward_parameters_of(cls: type) -> frozenset[str]:
    """Read once per model class: log-prob passes ask for every batch."""
    import inspect

    return frozenset(inspect.signature(cls.forward).parameters)


class Policy:
    def __init__(self, model, tokenizer, device: str = "auto", max_context_tokens: int = 384):
        self.device = select_device(device)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens
        # a context is encoded once: CRRAFT renders each prompt for K samples, two log-prob passes and every
        # iteration; the evaluations render the same fixed sample for every policy
        self._encoded: dict[str, list[int]] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", **kw) -> Policy:
        from rluf.models import load_causal_lm, load_tokenizer

        tok = load_tokenizer(path)
        model = load_causal_lm(path)
        return cls(model, tok, device=device, **kw)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))

    # -- encoding -------------------------------------------------------------------------------------
    def encode_context(self, context: Chat) -> list[int]:
        """Chat-template the context with the generation prompt; keep the most recent tokens (left-truncate)."""
        key = chat_key(context)
        ids = self._encoded.get(key)
        if ids is None:
            text = self.tokenizer.apply_chat_template(context, add_generation_prompt=True, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > self.max_context_tokens:
                ids = [self.tokenizer.bos_token_id] + ids[-(self.max_context_tokens - 1) :]
            if len(self._encoded) >= ENCODED_CONTEXTS_KEPT:
                self._encoded.clear()
            self._encoded[key] = ids
        return list(ids)

    def encode_response(self, response: str) -> list[int]:
        return self.encode_responses([response])[0]

    def encode_responses(self, responses: list[str]) -> list[list[int]]:
        """Token ids of each response plus the closing eos (one batched tokenizer call)."""
        if not responses:
            return []
        eos = self.tokenizer.eos_token_id
        return [ids + [eos] for ids in self.tokenizer(list(responses), add_special_tokens=False)["input_ids"]]

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        T = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), T), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, T - len(s) :] = torch.tensor(s)
            mask[i, T - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # -- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, contexts: list[Chat], n: int = 1, sampling: Sampling | None = None, batch_size: int = 64,
        generator_seed: int | None = None, return_finished: bool = False, seeds: list[int] | None = None,
        return_logprobs: bool = False,
    ) -> list[list[str]] | tuple:
        """Sample `n` responses per context (batches of similar length; `_decode`). Returns [len(contexts)][n];
        with `return_finished`, also a (len(contexts), n) bool array: False where a response was cut off by
        `max_new_tokens` before its end-of-sequence token; with `return_logprobs`, also a (len(contexts), n)
        float array: log pi(response | context) as `sequence_logprobs` defines it, summed while sampling (no
        second forward pass), NaN where it is not that quantity (a cut-off answer, or one whose text encodes to
        other tokens than those sampled); pass it to `sequence_logprobs(known=...)`.

        `seeds` (one per context) gives answer k of context i its own random stream, seeded by (seeds[i], k):
        the answers then do not depend on the batch or on the other contexts."""
        sampling = sampling or Sampling()
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        if seeds is not None and len(seeds) != len(contexts):
            raise ValueError(f"generate: {len(seeds)} seeds for {len(contexts)} contexts")
        row_seeds = [row_seed(s, k) for s in seeds for k in range(n)] if seeds is not None else None
        was_training = self.model.training
        self.model.eval()
        flat = [self.encode_context(c) for c in contexts for _ in range(n)]
        texts, done = [""] * len(flat), [False] * len(flat)
        logps = np.full(len(flat), np.nan)
        # Batches of similar context length: left padding to the longest context of a batch costs compute on
        # every generated token (long multi-turn contexts next to one-line questions).
        for idx in token_budget_batches([len(s) for s in flat], batch_size, sampling.max_new_tokens,
                                        sampling.token_budget):
            claim_free_cores()
            # the n copies of a context share one prefill: the batch's distinct contexts, and each row's one
            distinct: dict[tuple[int, ...], int] = {}
            copy_of = torch.tensor([distinct.setdefault(tuple(flat[i]), len(distinct)) for i in idx])  # (B,)
            ids, mask = self._left_pad([list(c) for c in distinct])  # (distinct, T)
            new, ended, logp = self._decode(ids, mask, sampling, None if row_seeds is None else [
                torch.Generator().manual_seed(row_seeds[i]) for i in idx], copy_of.to(self.device),
                return_logprobs)  # (B, new), (B,), (B,) or None
            answers = [a.strip() for a in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
            for i, text, end in zip(idx, answers, ended.tolist(), strict=True):  # back to the callers' order
                texts[i], done[i] = text, end
            if return_logprobs:  # encode_responses ends each with eos: equal ids mean the drawn answer, whole
                for b, (i, ids_again) in enumerate(zip(idx, self.encode_responses(answers), strict=True)):
                    if done[i] and new[b, : len(ids_again)].tolist() == ids_again:
                        logps[i] = float(logp[b])
        if was_training:
            self.model.train()
        nested = [texts[i * n : (i + 1) * n] for i in range(len(contexts))]
        extra = ([np.array(done, dtype=bool).reshape(len(contexts), n)] if return_finished else []) + (
            [logps.reshape(len(contexts), n)] if return_logprobs else [])
        return (nested, *extra) if extra else nested

    def _decode(self, ids: torch.Tensor, mask: torch.Tensor, sampling: Sampling,
                generators: list[torch.Generator] | None, copy_of: torch.Tensor,
                return_logprobs: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Sample a batch token by token from the model's KV cache: row b continues the left-padded context
        `ids[copy_of[b]]` (each context's prefill is computed once). Returns the (B, max_new_tokens) new tokens
        (pad after a row's eos), a (B,) bool: the row ended with eos, and with `return_logprobs` (B,)
        log pi(new tokens | context) under the model's own (unwarped) distribution (else None).

        The tokens `model.generate` gives with `sampling_processors` (the same forward passes, warpers and
        uniforms), in our own loop for two reasons: rows that have ended leave the batch (answers are short:
        most rows end long before the longest), and a step is one forward pass and a draw, without the
        per-token machinery of `generate` that costs as much as the forward of a small model."""
        from transformers import DynamicCache

        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        B, max_new = len(copy_of), sampling.max_new_tokens
        warpers = logit_warpers(sampling) if sampling.temperature > 0 else None
        new = torch.full((B, max_new), pad, dtype=torch.long, device=ids.device)
        # summed in fp32, as sequence_logprobs sums
        logp = torch.zeros(B, dtype=torch.float32, device=ids.device) if return_logprobs else None
        rows = torch.arange(B, device=ids.device)  # the batch's rows still in the cache
        running = torch.ones(B, dtype=torch.bool, device=ids.device)  # of those, the ones without eos yet
        cache = DynamicCache()
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding must not shift positions
        params = forward_parameters(self.model)
        logits = self._forward(ids, mask, pos, cache, params, prefill=True)  # (distinct, V): the next token's
        cache.batch_select_indices(copy_of)  # one row per answer from here on
        logits, mask, pos = logits[copy_of], mask[copy_of], pos[copy_of, -1:]
        for t in range(max_new):
            scores = logits.float()
            if warpers is None:
                token = scores.argmax(-1)
            else:
                if generators is None:  # the global stream, one uniform per row of the whole batch (as generate)
                    u = torch.rand(B, 1, dtype=torch.float64, device=scores.device)[rows]
                else:  # each running row's own (CPU) generator
                    drawn = torch.stack([torch.rand(1, generator=generators[i], dtype=torch.float64)
                                         for i in rows[running].tolist()]).to(scores.device)
                    u = torch.zeros(len(rows), 1, dtype=torch.float64, device=scores.device)
                    u = u.masked_scatter_(running[:, None], drawn)
                token = InverseCdfDraw.draw(warpers(None, scores), u)  # (rows,)
            token = torch.where(running, token, eos)
            new[rows[running], t] = token[running]
            if logp is not None:
                tok_logp = torch.log_softmax(scores, dim=-1).gather(-1, token[:, None])[:, 0]  # (rows,)
                logp[rows[running]] += tok_logp[running]
            running &= token != eos
            if not running.any() or t == max_new - 1:
                break
            if running.sum() <= 0.75 * len(rows):  # drop ended rows: the cache copy costs less than their steps
                keep = running.nonzero()[:, 0]
                cache.batch_select_indices(keep)
                rows, running, token, mask, pos = rows[keep], running[keep], token[keep], mask[keep], pos[keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            pos = pos + 1
            logits = self._forward(token[:, None], mask, pos, cache, params)
        ended = torch.ones(B, dtype=torch.bool, device=ids.device)  # a row leaves `running` only at its eos
        ended[rows[running]] = False
        return new, ended, logp

    def _forward(self, ids, mask, pos, cache, params: set[str], prefill: bool = False) -> torch.Tensor:
        """The last position's logits (B, V), extending `cache`; `params`: the model's forward_parameters."""
        kw = {"cache" if "cache" in params else "past_key_values": cache}
        if prefill and "logits_to_keep" in params:
            kw["logits_to_keep"] = 1  # the LM head on the last position only
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        return out.logits[:, -1]

    # -- log-probabilities ----------------------------------------------------------------------------
    def sequence_logprobs(
        self, contexts: list[Chat], responses: list[str], batch_size: int = 32, grad: bool = False, model=None,
        known: np.ndarray | None = None,
    ) -> torch.Tensor:
        """log pi(y | x) summed over the response tokens (incl. the closing eos). Shape (N,).

        `model` lets the reference policy reuse this policy's tokenizer and encoding. `known` (N,): this policy's
        log-probs already summed while sampling (`generate(return_logprobs=True)`), NaN where not; only the NaN
        rows take a forward pass. The weights must not have changed since those answers were sampled.
        """
        if known is not None and (grad or (model is not None and model is not self.model)):
            raise ValueError("sequence_logprobs: `known` log-probs are this policy's, without gradient")
        model = model if model is not None else self.model
        out = torch.zeros(len(responses), device=self.device)  # (N,)
        todo = np.arange(len(responses))
        if known is not None:
            known = np.asarray(known, dtype=np.float64).reshape(-1)
            if len(known) != len(responses):
                raise ValueError(f"sequence_logprobs: {len(known)} known log-probs for {len(responses)} responses")
            have = ~np.isnan(known)
            out[torch.as_tensor(np.flatnonzero(have), device=out.device)] = torch.as_tensor(
                known[have], dtype=out.dtype, device=out.device)
            todo = np.flatnonzero(~have)
        ctx = [self.encode_context(contexts[i]) for i in todo]
        rsp = self.encode_responses([responses[i] for i in todo])
        # Batches of similar total length (as in generate): padding costs a full forward per padded token.
        for idx in length_batches([len(c) + len(r) for c, r in zip(ctx, rsp, strict=True)], batch_size,
                                  longest_first=False):
            out[torch.as_tensor(todo[idx], device=out.device)] = self._batch_logprobs(  # the callers' order
                model, [ctx[i] for i in idx], [rsp[i] for i in idx], grad)
        return out

    def _batch_logprobs(self, model, ctx: list[list[int]], rsp: list[list[int]], grad: bool) -> torch.Tensor:
        seqs = [c + r for c, r in zip(ctx, rsp, strict=True)]
        ids, mask = self._left_pad(seqs)  # (B, T)
        T = ids.shape[1]
        resp_mask = torch.zeros_like(mask)
        for i, r in enumerate(rsp):
            resp_mask[i, T - len(r) :] = 1
        # Left padding ends every row at T, so the response tokens are among the last L = max len(r) positions:
        # the LM head (a third of a small model's FLOPs) and the softmax run on the last L + 1 positions only.
        keep = min(max(len(r) for r in rsp) + 1, T)
        kw = {"logits_to_keep": keep} if "logits_to_keep" in forward_parameters(model) else {}
        with torch.set_grad_enabled(grad):
            pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding must not shift positions
            # one forward pass: a KV cache would only hold memory (and gradient checkpointing refuses one)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **kw).logits
            logits = logits[:, -keep:]  # (B, keep, V): positions T-keep .. T-1 (all of them without logits_to_keep)
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, keep-1, V): predicts token t+1
            tok_logp = logp.gather(-1, ids[:, T - keep + 1 :].unsqueeze(-1)).squeeze(-1)  # (B, keep-1)
            return (tok_logp * resp_mask[:, T - keep + 1 :]).sum(-1)  # (B,)
