"""P[Love]: a scalar-head classifier trained with BCE on curated (context, response, Love) rows.

Recipe (RLUF, Han et al. 2025, Sec. 3.2): setup (read the curated folder, build the backbone) -> train
(weighted BCE through the HF Trainer) -> calibrate (Bayes prior shift from the training rate to the natural
rate, then optional temperature/Platt/isotonic on validation) -> evaluate on the later-in-time test split
(and against the simulator's true p_love when given) -> save (HF folder + rluf_reward.json + eval.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rluf.errors import ConfigError, DataError
from rluf.rewards.backbone import load_backbone
from rluf.rewards.calibration import apply_calibration, fit_calibration
from rluf.rewards.common import base_meta, fit, is_main_process, report_from_main, save_reward_folder
from rluf.rewards.config import RewardConfig
from rluf.rewards.context_head import ContextHead
from rluf.rewards.data import Encoder, LoveSplit, natural_rate_of, read_curated
from rluf.rewards.hf_trainer import LoveCollator, LoveTrainer, class_normalised_weights, love_dataset
from rluf.rewards.metrics import (
    binary_metrics,
    expected_metrics,
    length_slope_ratio,
    pearson,
    plot_reliability,
    plot_roc,
)
from rluf.rewards.scorer import Scorer
from rluf.utils import seed_everything, select_device

log = logging.getLogger(__name__)


def train_love(data: str | Path, out: str | Path, config: RewardConfig | None = None, *,
               truth: str | Path | None = None, progress: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train, calibrate, evaluate and save a P[Love] model. Returns the eval.json contents.

    Args:
        data: a curated folder (train/validation/test.parquet, manifest.json) from `rluf curate`.
        out: the model folder to write.
        config: a validated RewardConfig (objective must be "love"); None for defaults.
        truth: the simulator's truth/ folder (or a file) with true p_love per message_id, for Bayes figures.
        progress: show the Trainer's progress bar.
        resume: continue from the last checkpoint in out/trainer/ (`rluf train-reward --resume`).
    Raises:
        DataError, SchemaError: unusable curated data; ConfigError: bad backbone.
    """
    cfg = config or RewardConfig()
    if cfg.objective != "love":
        raise DataError(f"train_love got objective = {cfg.objective!r}; use train_pairwise for helpfulness/safety")
    out = Path(out)
    seed_everything(cfg.train.seed)
    device = select_device(cfg.train.device)
    splits, manifest = read_curated(data)
    true_p = load_true_p_love(truth) if truth is not None else None
    if true_p is not None:
        check_truth(true_p, splits["test"])  # fail before training
    natural_rate = natural_rate_of(splits, manifest)
    train = _subsample(splits["train"], cfg.train.max_train_examples, cfg.train.seed)
    for name in ("validation", "test"):  # later-in-time splits keep the natural rate: mostly negatives
        splits[name] = downsample_negatives(splits[name], cfg.train.eval_max_negatives, cfg.train.seed)

    # 1. setup
    texts = [m["content"] for c in train.contexts for m in c] + train.responses
    model, tokenizer, info = load_backbone(cfg.model, texts, seed=cfg.train.seed)
    encoder = Encoder(tokenizer, cfg.model.max_length, cfg.model.context_messages)
    weights, loss_rate = loss_weights(train, cfg.train.sample_weights)
    parts = encoder.encode_parts(train.contexts, train.responses)
    context_lengths = None
    if cfg.model.context_rank:
        attach_context_head(model, cfg.model.context_rank, cfg.model.backbone, cfg.model.context_overlap)
        context_lengths = [len(head) for head, _ in parts]
    dataset = love_dataset([h + t for h, t in parts], train.labels, weights, context_lengths)

    # 2. train
    model, train_stats = fit(LoveTrainer, model, cfg, dataset, LoveCollator(tokenizer.pad_token_id), out,
                             device, progress, resume)
    if not is_main_process():  # a distributed launch: rank 0 evaluates and saves, this rank waits for it
        return report_from_main(out)

    # 3. calibrate on validation at the natural rate
    meta = {**base_meta(cfg, info, device), "natural_rate": natural_rate, "loss_positive_rate": loss_rate,
            "curated": str(data), "manifest": manifest}
    scorer = Scorer(model, tokenizer, meta, device=device)
    val = splits["validation"]
    z_val = scorer.natural_logit(_raw(scorer, val, cfg))
    meta["calibration"] = calibrate(z_val, val, cfg)
    scorer.meta = meta

    # 4. evaluate on test, 5. save
    report = evaluate_love(scorer, splits["test"], out, true_p=true_p, n_bins=cfg.calibration.ece_bins,
                           batch_size=cfg.train.eval_batch_size)
    report.update({"objective": "love", "natural_rate": natural_rate, "loss_positive_rate": loss_rate,
                   "train": train_stats, "calibration": meta["calibration"]})
    save_reward_folder(model, tokenizer, meta, out, report)
    return report


def attach_context_head(model, rank: int, backbone: str, overlap: bool = False) -> None:
    """`model.context_head` (rluf.rewards.context_head), trained with the model and saved beside it."""
    if not (hasattr(model, "score") or hasattr(model, "classifier")):
        raise ConfigError(f"model.context_rank needs a sequence classifier with a `score` (decoder) or "
                          f"`classifier` (encoder) head; backbone {backbone!r} is a {type(model).__name__}. "
                          "Set model.context_rank: 0")
    model.context_head = ContextHead(model.config.hidden_size, rank, overlap)


def calibrate(z_val: np.ndarray, val: LoveSplit, cfg: RewardConfig) -> dict[str, Any]:
    """Fit `calibration.method` on prior-corrected validation logits; validation metrics before and after."""
    n_pos = int(val.labels.sum())
    if cfg.calibration.method != "none" and n_pos < cfg.calibration.min_positives:
        log.warning("validation has %d positives (< calibration.min_positives = %d): keeping the prior shift alone",
                    n_pos, cfg.calibration.min_positives)
        params = {"method": "none", "skipped": f"{n_pos} validation positives"}
    else:
        params = fit_calibration(cfg.calibration.method, z_val, val.labels, val.weights)
    bins = cfg.calibration.ece_bins
    return {"params": params,
            "validation_before": binary_metrics(val.labels, 1 / (1 + np.exp(-z_val)), val.weights, bins),
            "validation_after": binary_metrics(val.labels, apply_calibration(params, z_val), val.weights, bins)}


def _subsample(split: LoveSplit, cap: int | None, seed: int) -> LoveSplit:
    if cap is None or cap >= len(split):
        return split
    return split.take(np.sort(np.random.default_rng(seed).permutation(len(split))[:cap]))


def downsample_negatives(split: LoveSplit, max_negatives: int | None, seed: int) -> LoveSplit:
    """Every positive and at most `max_negatives` negatives; kept negatives' weights grow by the inverse
    keep rate, so weighted AUROC, ECE and calibration fits estimate the same quantities as on all rows."""
    neg = np.flatnonzero(split.labels == 0)
    if max_negatives is None or len(neg) <= max_negatives:
        return split
    keep_neg = np.random.default_rng(seed).choice(neg, size=max_negatives, replace=False)
    idx = np.sort(np.concatenate([np.flatnonzero(split.labels == 1), keep_neg]))
    weights = split.weights * np.where(split.labels == 0, len(neg) / max_negatives, 1.0)
    log.info("%s: scoring all %d positives and %d of %d negatives (weights x %.2f)", split.path.name,
             int(split.labels.sum()), max_negatives, len(neg), len(neg) / max_negatives)
    return split.take(idx, weights)


def loss_weights(split: LoveSplit, mode: str) -> tuple[np.ndarray, float]:
    """Per-example loss weights and the positive rate the loss sees, which the model learns and the prior
    shift maps back to the natural rate (`loss_positive_rate`; the manifest's `train_rate` is the curated
    file's rate, which this equals unless `sample_weights: full`)."""
    y, w = split.labels, split.weights
    if mode == "full":
        return w / w.mean(), float(np.sum(w * y) / np.sum(w))
    rate = float(y.mean())
    if mode == "ignore":
        return np.ones_like(w), rate
    return class_normalised_weights(y, w), rate


def _raw(scorer: Scorer, split: LoveSplit, cfg: RewardConfig) -> np.ndarray:
    return scorer.score(split.contexts, split.responses, batch_size=cfg.train.eval_batch_size)


def evaluate_love(scorer: Scorer, test: LoveSplit, out: Path, *, true_p: pd.Series | None = None,
                  n_bins: int = 15, batch_size: int = 64) -> dict[str, Any]:
    """Metrics of P[Love] on the test split at the natural rate; plots and per-row scores into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    raw = scorer.score(test.contexts, test.responses, batch_size=batch_size)
    p = scorer.prob_from_raw(raw)
    p_uncal = 1 / (1 + np.exp(-scorer.natural_logit(raw)))
    length = np.array([len(r) for r in test.responses], dtype=float)  # characters
    y, w = test.labels, test.weights
    report: dict[str, Any] = {"test": binary_metrics(y, p, w, n_bins),
                              "test_prior_shift_only": binary_metrics(y, p_uncal, w, n_bins),
                              "length_r": pearson(p, length), "length_r_logit": pearson(raw, length)}
    curves = {"P[Love]": p}
    rows = pd.DataFrame({"message_id": test.message_ids, "label": y.astype(bool), "weight": w,
                         "score": raw, "prob": p, "response_chars": length})
    if true_p is not None:
        tp = check_truth(true_p, test)
        bayes = binary_metrics(y, tp, w, n_bins)
        report["bayes"] = bayes
        report["true_length_r"] = pearson(tp, length)
        report["length_slope_ratio"] = length_slope_ratio(p, tp, length, w)
        report["auroc_gap"] = bayes["auroc"] - report["test"]["auroc"]
        report["expected"] = {"model": expected_metrics(tp, p, w, n_bins), "bayes": expected_metrics(tp, tp, w, n_bins)}
        report["expected"]["auroc_gap"] = report["expected"]["bayes"]["auroc"] - report["expected"]["model"]["auroc"]
        report["pearson_with_true_p"] = pearson(p, tp)
        curves["true p_love (Bayes)"] = tp
        rows["true_p_love"] = tp
    if len(np.unique(y)) == 2:
        plot_roc(y, curves, w, out / "roc.png")
        plot_reliability(y, curves, w, out / "reliability.png", n_bins=min(n_bins, max(2, int(y.sum()))))
    rows.to_parquet(out / "test_scores.parquet", index=False)
    return report


def check_truth(true_p: pd.Series, test: LoveSplit) -> np.ndarray:
    """The true p_love of every test row, in row order; DataError if any message_id is missing."""
    tp = true_p.reindex(test.message_ids).to_numpy(dtype=float)
    if np.isnan(tp).any():
        missing = int(np.isnan(tp).sum())
        raise DataError(f"truth has no p_love for {missing} of {len(tp)} test message_ids (e.g. "
                        f"{test.message_ids[int(np.flatnonzero(np.isnan(tp))[0])]!r}); give the truth/ of "
                        "the simulation the curated data came from")
    return tp


def load_true_p_love(truth: str | Path) -> pd.Series:
    """True p_love per message_id from the simulator's truth/ (a folder of Parquet files, or one file)."""
    truth = Path(truth)
    files = sorted(truth.rglob("*.parquet")) if truth.is_dir() else [truth]
    for f in files:
        if not f.is_file():
            continue
        import pyarrow.parquet as pq

        cols = pq.read_schema(f).names
        col = next((c for c in ("p_love", "true_p_love") if c in cols), None)
        if "message_id" in cols and col:
            df = pd.read_parquet(f, columns=["message_id", col])
            return df.drop_duplicates("message_id").set_index("message_id")[col].astype(float)
    raise DataError(f"{truth}: found no Parquet file with columns message_id and p_love; pass the simulator's "
                    "truth/ folder (written by `rluf simulate`)")
