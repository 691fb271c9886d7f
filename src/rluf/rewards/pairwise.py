"""Helpfulness and safety reward models: Bradley-Terry on (prompt, chosen, rejected) pairs.

Recipe: read pairs (TRL preference Parquet, e.g. SIMDIR/pairs/helpfulness.parquet, or HH-RLHF jsonl.gz) ->
hold out whole prompts -> train with the Bradley-Terry loss through the HF Trainer -> pairwise accuracy on
the held-out pairs (and, when the pairs carry the simulator's true scores, Spearman rank correlation of the
reward with them) -> save (HF folder + rluf_reward.json + eval.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rluf.errors import DataError
from rluf.rewards.backbone import load_backbone
from rluf.rewards.common import base_meta, fit, is_main_process, report_from_main, save_reward_folder
from rluf.rewards.config import PAIRWISE_OBJECTIVES, RewardConfig
from rluf.rewards.data import Encoder, Pairs, read_pairs, split_pairs
from rluf.rewards.hf_trainer import (
    BradleyTerryTrainer,
    PairCollator,
    SharedPromptPairCollator,
    pairs_dataset,
    shared_pairs_dataset,
)
from rluf.rewards.metrics import pairwise_accuracy, pearson, spearman
from rluf.rewards.scorer import Scorer, shares_prompt
from rluf.utils import seed_everything, select_device

log = logging.getLogger(__name__)

# Column pairs that hold a true score for the chosen and rejected response (simulated pairs).
TRUE_SCORE_COLUMNS = [("chosen_true", "rejected_true"), ("true_chosen", "true_rejected"),
                      ("chosen_score", "rejected_score")]


def train_pairwise(data: str | Path, out: str | Path, config: RewardConfig | None = None, *,
                   progress: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train and evaluate a Bradley-Terry reward model; returns the eval.json contents.

    Args:
        data: preference pairs (.parquet with prompt/chosen/rejected, or HH-RLHF .jsonl[.gz]).
        out: the model folder to write.
        config: a validated RewardConfig with objective helpfulness or safety.
        progress: show the Trainer's progress bar.
        resume: continue from the last checkpoint in out/trainer/.
    """
    cfg = config or RewardConfig(objective="helpfulness")
    if cfg.objective not in PAIRWISE_OBJECTIVES:
        raise DataError(f"train_pairwise got objective = {cfg.objective!r}; use one of {PAIRWISE_OBJECTIVES} "
                        "(P[Love] trains with train_love)")
    out = Path(out)
    seed_everything(cfg.train.seed)
    device = select_device(cfg.train.device)
    pairs = read_pairs(data)
    train, test = split_pairs(pairs, cfg.pairs.test_fraction, cfg.train.seed)
    if cfg.train.max_train_examples is not None and len(train) > cfg.train.max_train_examples:
        idx = np.sort(np.random.default_rng(cfg.train.seed).permutation(len(train))[: cfg.train.max_train_examples])
        train = train.take(idx)

    texts = [m["content"] for c in train.contexts for m in c] + train.chosen + train.rejected
    model, tokenizer, info = load_backbone(cfg.model, texts, seed=cfg.train.seed)
    encoder = Encoder(tokenizer, cfg.model.max_length, cfg.model.context_messages)
    if cfg.pairs.share_prompt and shares_prompt(model):
        dataset = shared_pairs_dataset(encoder.encode_pairs(train.contexts, train.chosen, train.rejected))
        collator = SharedPromptPairCollator(tokenizer.pad_token_id)
    else:
        dataset = pairs_dataset(encoder.encode_many(train.contexts, train.chosen),
                                encoder.encode_many(train.contexts, train.rejected))
        collator = PairCollator(tokenizer.pad_token_id)
    model, train_stats = fit(BradleyTerryTrainer, model, cfg, dataset, collator, out, device, progress, resume)
    if not is_main_process():  # a distributed launch: rank 0 evaluates and saves, this rank waits for it
        return report_from_main(out)

    meta = {**base_meta(cfg, info, device), "pairs": str(data), "train_pairs": len(train), "test_pairs": len(test)}
    scorer = Scorer(model, tokenizer, meta, device=device)
    report = {"objective": cfg.objective, "train": train_stats,
              "train_pairs": len(train), "test_pairs": len(test),
              "train_accuracy": evaluate_pairs(scorer, train.take(np.arange(min(len(train), 500))),
                                               cfg.train.eval_batch_size)["accuracy"],
              "test": evaluate_pairs(scorer, test, cfg.train.eval_batch_size)}
    save_reward_folder(model, tokenizer, meta, out, report)
    return report


def evaluate_pairs(scorer: Scorer, pairs: Pairs, batch_size: int = 64) -> dict[str, Any]:
    """Pairwise accuracy, mean margin, and rank correlation with true scores when the pairs carry them."""
    r_c = scorer.score(pairs.contexts, pairs.chosen, batch_size)
    r_r = scorer.score(pairs.contexts, pairs.rejected, batch_size)
    result: dict[str, Any] = {"pairs": len(pairs), "accuracy": pairwise_accuracy(r_c, r_r),
                              "mean_margin": float(np.mean(r_c - r_r)),
                              "length_r": pearson(np.r_[r_c, r_r], [len(t) for t in pairs.chosen + pairs.rejected])}
    for c_col, r_col in TRUE_SCORE_COLUMNS:
        if c_col in pairs.extra.columns and r_col in pairs.extra.columns:
            truth = np.r_[pairs.extra[c_col].to_numpy(float), pairs.extra[r_col].to_numpy(float)]
            result["spearman_true"] = spearman(np.r_[r_c, r_r], truth)
            result["true_score_columns"] = [c_col, r_col]
            break
    return result
