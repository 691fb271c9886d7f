"""`Scorer`: the one batched reward scorer every later stage uses (optimizer, judges, evaluator, `rluf score`).

    scorer = Scorer.from_pretrained("runs/x/rewards/love")
    raw = scorer.score(contexts, responses)     # (N,) logits / rewards, no gradient
    p = scorer.prob(contexts, responses)        # (N,) P[Love] at the natural rate (BCE models only)

Rows are sorted by token length and batched so that padding stays small; results come back in input order.
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
from rluf.rewards.data import Chat, Encoder
from rluf.utils import bf16_supported, length_batches, read_json, select_device

log = logging.getLogger(__name__)

META_FILE = "rluf_reward.json"
PRECISIONS = ("auto", "bf16", "fp32")


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
        self.encoder = Encoder(tokenizer, int(meta.get("max_length", 256)))

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
        return cls(model, load_tokenizer(path), meta, device=device, precision=precision)

    # -- scoring --------------------------------------------------------------------------------------
    @torch.inference_mode()  # frozen at scoring time: not even version counters or views are tracked
    def score_ids(self, seqs: list[list[int]], batch_size: int = 64,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Raw scalar outputs for pre-encoded sequences, in input order. Shape (N,)."""
        out = np.zeros(len(seqs), dtype=np.float64)
        pad = self.tokenizer.pad_token_id
        for idx in length_batches([len(s) for s in seqs], batch_size):
            claim_free_cores()
            ids, mask = pad_right([seqs[i] for i in idx], pad)  # (B, T)
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits  # (B, 1)
            out[idx] = logits[:, 0].float().cpu().numpy()
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
        seqs = self.encoder.encode_many(contexts, responses)
        if progress is True:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task(f"scoring ({self.objective})", total=len(seqs))
                return self.score_ids(seqs, batch_size, lambda n: bar.advance(task, n))
        return self.score_ids(seqs, batch_size, progress or None)

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
