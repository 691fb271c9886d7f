"""`Scorer`: the one batched reward scorer every later stage uses (optimizer, judges, evaluator, `rluf score`).

    scorer = Scorer.from_pretrained("runs/x/rewards/love")
    raw = scorer.score(contexts, responses)     # (N,) logits / rewards, no gradient
    p = scorer.prob(contexts, responses)        # (N,) P[Love] at the natural rate (BCE models only)

Rows are sorted by token length and batched so that padding stays small; results come back in input order.
Answers whose sequences start with the same context tokens (K candidates for one prompt, several policies'
answers to one context) are read as one packed row by causal models (`pack_shared`), the context computed once;
each score is its one-sequence score to float rounding. A P[Love] model with a context head
(rluf.rewards.context_head) is read with it on either path.
Scoring runs under `torch.inference_mode()` (no autograd records at all) and, with `precision`, in bf16: half the
memory of the frozen weights (docs/crraft.md, "Capacity"). `auto` is bf16 only on a CUDA device that supports
it, so on CPU the scores are the fp32 ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rluf.errors import DataError, ModelFolderError
from rluf.parallel import claim_free_cores
from rluf.rewards.backbone import check_scalar_head
from rluf.rewards.calibration import apply_calibration, prior_shift
from rluf.rewards.context_head import ContextHead, context_head_of, rewards_with_head, scores_and_states
from rluf.rewards.data import Chat, Encoder
from rluf.utils import bf16_supported, length_batches, read_json, select_device

log = logging.getLogger(__name__)

META_FILE = "rluf_reward.json"
PRECISIONS = ("auto", "bf16", "fp32")
MAX_PACKED = 8  # answers read in one packed row (`pack_shared`): longer rows would spend more on attention
PACK_IF_TOKENS_BELOW = 0.8  # pack only when it reads at most this share of the tokens (shared_prompt.py)


def score_dtype(precision: str, device: str) -> torch.dtype:
    """The weights' dtype for scoring: bf16 when asked, or with `auto` on a CUDA device that supports it; else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision = {precision!r}: use one of {', '.join(PRECISIONS)}")
    bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    return torch.bfloat16 if bf16 else torch.float32


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists: returns input_ids and attention_mask, both (B, T)."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def shares_prompt(model) -> bool:
    """Whether `model` can read several answers to one context as one sequence (`pack_shared`): a decoder that
    scores every position with a `score` head (LlamaForSequenceClassification and kin) and takes an explicit 4D
    attention mask and position ids, checked on a few tokens (an architecture that ignores either, e.g. ALiBi
    positions, fails the check). Encoders (BERT's bidirectional attention, first-token pooling) cannot."""
    if not (hasattr(model, "score") and not getattr(model.config, "is_encoder_decoder", False)
            and getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager")):
        return False
    device = next(model.parameters()).device
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab < 8:
        return False
    shared, tails = [3, 4, 5], [[6, 7], [5, 6, 4]]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ids, mask, positions, ends = pack_shared([(shared, tails)], 0)
            packed = score_every_position(model, input_ids=ids.to(device), attention_mask=mask.to(device),
                                          position_ids=positions.to(device))[0, ends[0]].float()
            alone = torch.stack([score_every_position(model, input_ids=torch.tensor([shared + t], device=device))[0, -1]
                                 for t in tails]).float()
        return bool(torch.allclose(packed, alone, rtol=1e-3, atol=1e-4))
    except (RuntimeError, ValueError, TypeError, IndexError):  # the model refuses a 4D mask or position ids
        return False
    finally:
        model.train(was_training)


def pack_shared(rows: list[tuple[list[int], list[list[int]]]],
                pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows [shared | tail 1 | ... | tail k] for a causal model: tail j attends to the shared tokens and to itself
    only, and its positions continue from the shared part, so its last token sees exactly the sequence
    shared + tail j while the shared tokens are computed once. Right padding; a padded position attends to
    itself. Returns input_ids (B, T), attention_mask (B, 1, T, T) bool, position_ids (B, T), and each tail's
    last index (B, K) (0 where a row has fewer tails)."""
    B, K = len(rows), max(len(tails) for _, tails in rows)
    T = max(len(shared) + sum(map(len, tails)) for shared, tails in rows)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    positions = torch.zeros((B, T), dtype=torch.long)
    allowed = torch.eye(T, dtype=torch.bool).repeat(B, 1, 1)  # (B, T, T): query x key
    causal = torch.ones((T, T), dtype=torch.bool).tril()
    ends = torch.zeros((B, K), dtype=torch.long)
    for b, (shared, tails) in enumerate(rows):
        S = start = len(shared)
        ids[b, :S] = torch.tensor(shared, dtype=torch.long)
        positions[b, :S] = torch.arange(S)
        allowed[b, :S, :S] = causal[:S, :S]
        for j, tail in enumerate(tails):
            end = start + len(tail)
            ids[b, start:end] = torch.tensor(tail, dtype=torch.long)
            positions[b, start:end] = torch.arange(S, S + len(tail))
            allowed[b, start:end, :S] = True
            allowed[b, start:end, start:end] = causal[: len(tail), : len(tail)]
            ends[b, j] = end - 1
            start = end
    return ids, allowed[:, None], positions, ends


def score_every_position(model, **inputs: torch.Tensor) -> torch.Tensor:
    """The `score` head's output at every position, (B, T). The model is called as a whole (so DDP and peft
    wrappers see the forward) and the head's per-position output is read with a hook: the model's own pooled
    logits (at the last non-pad token) are not the ends of packed answers."""
    return scores_and_states(model, **inputs)[0]


class Scorer:
    """A scalar-head reward model with its tokenizer, encoder and rluf metadata."""

    def __init__(self, model, tokenizer, meta: dict[str, Any], device: str = "auto", precision: str | None = None):
        """`precision` (auto | bf16 | fp32) casts the model in place, as the move to `device` does; None keeps the
        model's own dtype: a model that training wraps to evaluate it, then saves, stays as it is."""
        self.device = select_device(device)
        dtype = None if precision is None else score_dtype(precision, self.device)
        self.model = (model.to(self.device) if dtype is None else model.to(self.device, dtype)).eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.encoder = Encoder(tokenizer, int(meta.get("max_length", 256)), meta.get("context_messages"))
        self.shares_prompt = shares_prompt(self.model)
        self.context_head = context_head_of(self.model)  # rluf.rewards.context_head: read with the states

    @property
    def objective(self) -> str:
        return self.meta["objective"]

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", precision: str = "auto") -> Scorer:
        """Load a folder written by `rluf train-reward` for scoring, its weights in `precision` (auto | bf16 | fp32).
        Raises ModelFolderError for anything else."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from rluf.models import load_tokenizer

        path = Path(path)
        if not path.is_dir():
            raise ModelFolderError(f"reward model folder {path} does not exist")
        if not (path / META_FILE).is_file():
            raise ModelFolderError(f"{path} has no {META_FILE}: it is not an rluf reward model. Train one with "
                                   "`rluf train-reward love|helpfulness|safety --out DIR`")
        if not any(path.glob("*.safetensors")):
            raise ModelFolderError(f"{path} has no .safetensors weights; rluf loads safetensors only")
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
        check_scalar_head(config, path)
        meta = read_json(path / META_FILE)
        device = select_device(device)
        # loaded straight in the scoring dtype: a bf16 model never holds an fp32 copy
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), trust_remote_code=False, use_safetensors=True, dtype=score_dtype(precision, device)
        )
        if meta.get("context_rank"):
            model.context_head = ContextHead.load(path, config.hidden_size, int(meta["context_rank"]),
                                                  bool(meta.get("context_overlap")))
        return cls(model, load_tokenizer(path), meta, device=device, precision=precision)

    # -- scoring --------------------------------------------------------------------------------------
    @torch.inference_mode()  # frozen at scoring time: not even version counters or views are tracked
    def score_ids(self, seqs: list[list[int]], batch_size: int = 64,
                  progress: Callable[[int], None] | None = None,
                  context_lengths: list[int] | None = None) -> np.ndarray:
        """Raw scalar outputs for pre-encoded sequences, in input order. Shape (N,). A model with a context head
        needs each sequence's number of context tokens (`Encoder.encode_parts`)."""
        if self.context_head is not None and context_lengths is None:
            raise ValueError("this reward model has a context head: give score_ids the context_lengths")
        out = np.zeros(len(seqs), dtype=np.float64)
        pad = self.tokenizer.pad_token_id
        for idx in length_batches([len(s) for s in seqs], batch_size):
            claim_free_cores()
            ids, mask = pad_right([seqs[i] for i in idx], pad)  # (B, T)
            ids, mask = ids.to(self.device), mask.to(self.device)
            if self.context_head is None:
                z = self.model(input_ids=ids, attention_mask=mask).logits[:, 0]  # (B, 1) -> (B,)
            else:
                lengths = torch.tensor([context_lengths[i] for i in idx], device=self.device)
                z = rewards_with_head(self.model, lengths, input_ids=ids, attention_mask=mask)
            out[idx] = z.float().cpu().numpy()
            if progress is not None:
                progress(len(idx))
        return out

    def score(self, contexts: list[Chat], responses: list[str], batch_size: int = 64,
              progress: bool | Callable[[int], None] = False) -> np.ndarray:
        """Raw scores (BCE logits at the training rate, or Bradley-Terry rewards). Shape (N,)."""
        if len(contexts) != len(responses):
            raise DataError(f"score: {len(contexts)} contexts but {len(responses)} responses; give one each")
        if not responses:
            return np.zeros(0)
        if progress is True:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"scoring ({self.objective})", total=len(responses))
                return self._score(contexts, responses, batch_size, lambda n: bar.advance(task, n))
        return self._score(contexts, responses, batch_size, progress or None)

    def _score(self, contexts: list[Chat], responses: list[str], batch_size: int,
               progress: Callable[[int], None] | None) -> np.ndarray:
        parts = self.encoder.encode_parts(contexts, responses)
        context_lengths = [len(head) for head, _ in parts]
        if not self.shares_prompt:
            return self.score_ids([h + t for h, t in parts], batch_size, progress, context_lengths)
        # answers whose sequences start with the same context tokens are read as one packed row
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (head, _) in enumerate(parts):
            groups.setdefault(tuple(head), []).append(i)
        chunks = [rows[k : k + MAX_PACKED] for rows in groups.values() for k in range(0, len(rows), MAX_PACKED)]
        lengths = [len(parts[c[0]][0]) + sum(len(parts[i][1]) for i in c) for c in chunks]
        if sum(lengths) > PACK_IF_TOKENS_BELOW * sum(len(h) + len(t) for h, t in parts):
            # little repeats (64-token models cut most contexts to fit each answer): the mask would cost more
            return self.score_ids([h + t for h, t in parts], batch_size, progress, context_lengths)
        per_batch = max(1, batch_size * len(chunks) // len(parts))  # about `batch_size` answers a batch
        return self._score_packed(parts, chunks, length_batches(lengths, per_batch), progress)

    @torch.inference_mode()
    def _score_packed(self, parts, chunks, batches, progress) -> np.ndarray:
        out = np.zeros(len(parts), dtype=np.float64)
        for batch in batches:
            claim_free_cores()
            rows = [(parts[chunks[c][0]][0], [parts[i][1] for i in chunks[c]]) for c in batch]
            ids, mask, positions, ends = (t.to(self.device) for t in pack_shared(rows, self.tokenizer.pad_token_id))
            per_position, states = scores_and_states(self.model, input_ids=ids, attention_mask=mask,
                                                     position_ids=positions)  # (B, T), (B, T, d)
            row_of = torch.cat([torch.full((len(chunks[c]),), b) for b, c in enumerate(batch)]).to(self.device)
            at = torch.cat([ends[b, : len(chunks[c])] for b, c in enumerate(batch)])
            z = per_position[row_of, at]
            if self.context_head is not None:  # the shared part of a packed row is its context
                shared = torch.tensor([len(parts[chunks[c][0]][0]) for c in batch], device=self.device)
                # each answer starts where the one before it ends (the first: after the shared part)
                first = torch.cat([torch.cat([shared[b : b + 1], ends[b, : len(chunks[c]) - 1] + 1])
                                   for b, c in enumerate(batch)])
                z = z + self.context_head(states, shared, row_of, states[row_of, at], ids, (first, at))
            out[np.concatenate([chunks[c] for c in batch])] = z.float().cpu().numpy()
            if progress is not None:
                progress(sum(len(chunks[c]) for c in batch))
        return out

    def natural_logit(self, raw: np.ndarray) -> np.ndarray:
        """Prior-shift raw BCE logits from the rate the loss saw to the natural rate."""
        self._require_love()
        # folders written before the key's rename call it train_rate
        loss_rate = self.meta.get("loss_positive_rate", self.meta.get("train_rate"))
        return prior_shift(raw, loss_rate, self.meta["natural_rate"])

    def prob_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """P[Love] at the natural rate from raw logits: prior shift, then the fitted calibration."""
        return apply_calibration(self.meta.get("calibration", {}).get("params", {}), self.natural_logit(raw))

    def prob(self, contexts: list[Chat], responses: list[str], batch_size: int = 64,
             progress: bool = False) -> np.ndarray:
        """P[Love] at the natural rate (BCE models only). Shape (N,)."""
        self._require_love()
        return self.prob_from_raw(self.score(contexts, responses, batch_size, progress))

    def _require_love(self) -> None:
        if self.meta.get("objective") != "love":
            raise ModelFolderError(
                f"prob() needs a BCE (love) reward model; this one is {self.meta.get('objective')!r}, a "
                "Bradley-Terry reward with no probability scale: use score()"
            )
