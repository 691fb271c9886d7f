"""The context head of P[Love]: the user's message sets how much each feature of the answer counts.

    z = w . h_answer + b  +  (U mean_context(h) + c) . (V h_answer)          (rank r = model.context_rank)
          [ + mean over the answer's tokens t of (a_seen . h_t + a0 if token t occurs in the context,
                                                  a_new . h_t + b0 + (W mean_context(h) + e) . (Q h_t)
                                                  otherwise) ]                    (model.context_overlap)

h_answer is the state the model's own head reads (a decoder's `score`: the answer's last token; an encoder's
`classifier`: its pooled first token) and mean_context(h) the mean of the last layer's states over the context's
tokens. A linear head on h_answer weighs a sign-off or a refusal alike for every user; the product lets what
the user wrote scale each direction of the answer's state, which the last token's state alone did not learn
from rare Love labels (docs/decisions/2026-12-07-context-head.md). V starts at zero, so training starts from
the backbone's scalar head. The overlap term is the exact-match feature of reading-comprehension models (DrQA):
whether each answer token appears in the user's message, weighed by what the token's state says it is. Whether a
factual answer names the entity it was asked about is a copy check that a small backbone learns poorly from
rare labels; the flag gives it for free (docs/decisions/2026-12-07-context-overlap.md). The words an answer
adds beyond the question (an opener, a sign-off) count by who asks, so their gate has a rank-r product with the
context too (docs/decisions/2026-12-07-new-words-by-user.md). Its weights start at zero too (Q = 0). Saved
beside the HF weights as `context_head.safetensors`, so the folder stays a plain sequence-classification model
for other tools.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "context_head.safetensors"


class ContextHead(nn.Module):
    def __init__(self, hidden_size: int, rank: int, overlap: bool = False):
        super().__init__()
        self.context = nn.Linear(hidden_size, rank)  # U, c
        self.answer = nn.Linear(hidden_size, rank, bias=False)  # V
        nn.init.zeros_(self.answer.weight)
        self.overlap = overlap
        if overlap:
            self.seen = nn.Linear(hidden_size, 1)  # a_seen, a0: answer tokens that occur in the context
            self.new = nn.Linear(hidden_size, 1)  # a_new, b0: the others
            self.new_context = nn.Linear(hidden_size, rank)  # W, e: how the user scales the others
            self.new_answer = nn.Linear(hidden_size, rank, bias=False)  # Q
            for gate in (self.seen, self.new):
                nn.init.zeros_(gate.weight)
                nn.init.zeros_(gate.bias)
            nn.init.zeros_(self.new_answer.weight)

    def forward(self, states: torch.Tensor, context_lengths: torch.Tensor, rows: torch.Tensor,
                answers: torch.Tensor, input_ids: torch.Tensor | None = None,
                spans: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """states (B, T, d) and input_ids (B, T); context_lengths (B,): each row's context tokens are its first
        ones; rows (N,) and answers (N, d): each answer's row and state; spans (N,), (N,): each answer's first and
        last token (the overlap term needs input_ids and spans). Returns the head's term of each answer, (N,)."""
        T = states.shape[1]
        positions = torch.arange(T, device=states.device)
        in_context = positions[None] < context_lengths[:, None]  # (B, T)
        weights = in_context.to(states.dtype)
        context = (states * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)  # (B, d)
        z = (self.context(context[rows]) * self.answer(answers)).sum(-1)
        if self.overlap:
            if input_ids is None or spans is None:
                raise ValueError("a context head with overlap needs the input_ids and each answer's token span")
            seen = ((input_ids[:, :, None] == input_ids[:, None, :]) & in_context[:, None, :]).any(-1)  # (B, T)
            new = self.new(states)[..., 0] + (self.new_context(context)[:, None] * self.new_answer(states)).sum(-1)
            gate = torch.where(seen, self.seen(states)[..., 0], new)  # (B, T)
            first, last = spans
            in_answer = ((positions[None] >= first[:, None]) & (positions[None] <= last[:, None])).to(states.dtype)
            z = z + (gate[rows] * in_answer).sum(-1) / in_answer.sum(-1).clamp(min=1)
        return z

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}, folder / HEAD_FILE)

    @classmethod
    def load(cls, folder: Path, hidden_size: int, rank: int, overlap: bool = False) -> ContextHead:
        from safetensors.torch import load_file

        head = cls(hidden_size, rank, overlap)
        what = f"{folder / HEAD_FILE}: weights do not fit a rank-{rank} context head (overlap {overlap})"
        try:
            missing, unexpected = head.load_state_dict(load_file(folder / HEAD_FILE), strict=False)
        except RuntimeError as e:  # shapes
            raise RuntimeError(f"{what}: {e}") from e
        # heads saved before the new tokens' product had no new_context / new_answer: Q = 0 scores as they did
        if unexpected or any(not k.startswith(("new_context.", "new_answer.")) for k in missing):
            raise RuntimeError(f"{what}: missing {missing}, unexpected {unexpected}")
        return head


def _unwrap(model):
    inner = getattr(model, "module", model)  # DDP
    return inner.get_base_model() if hasattr(inner, "get_base_model") else inner  # peft


def context_head_of(model) -> ContextHead | None:
    """The head attached to a reward model (`model.context_head`), through DDP and peft wrappers; None if none."""
    return getattr(_unwrap(model), "context_head", None)


def rewards_with_head(model, context_lengths: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
    """Each right-padded row's reward, (B,): the model's own scalar plus its context head's term."""
    head, inner = context_head_of(model), _unwrap(model)
    rows = torch.arange(inputs["input_ids"].shape[0], device=inputs["input_ids"].device)
    ends = inputs["attention_mask"].sum(1) - 1  # right padding: each row's answer ends at its last real token
    spans = (context_lengths, ends)
    if hasattr(inner, "score"):  # a decoder: the answer's last token
        per_position, states = scores_and_states(model, **inputs)  # (B, T), (B, T, d)
        return per_position[rows, ends] + head(states, context_lengths, rows, states[rows, ends],
                                               inputs["input_ids"], spans)
    seen: list[torch.Tensor] = []  # an encoder: what its classifier reads (BERT: the pooled first token)
    hook = inner.classifier.register_forward_hook(lambda _module, args, _out: seen.append(args[0]))
    try:
        out = model(**inputs, output_hidden_states=True)
    finally:
        hook.remove()
    pooled = seen[-1] if seen[-1].dim() == 2 else seen[-1][:, 0]  # heads that take every position read the first
    return out.logits[:, 0] + head(out.hidden_states[-1], context_lengths, rows, pooled, inputs["input_ids"], spans)


def scores_and_states(model, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The `score` head's output at every position (B, T) and the states it reads (B, T, d), from one call of
    the whole model (so DDP and peft wrappers see the forward)."""
    inner = _unwrap(model)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = inner.score.register_forward_hook(lambda _module, args, out: seen.append((out[..., 0], args[0])))
    try:
        model(**inputs)
    finally:
        hook.remove()
    return seen[-1]
