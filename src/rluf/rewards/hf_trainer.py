"""Hugging Face Trainer glue for reward models: datasets, collators, two small Trainer subclasses.

Training goes through `transformers.Trainer`, so accelerate (DDP, FSDP, DeepSpeed), gradient
checkpointing and `report_to` trackers work unchanged. The subclasses only swap in rluf's losses
(`rluf.rewards.losses`); batching is dynamic padding over length-grouped batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from rluf.errors import ConfigError
from rluf.parallel import claim_free_cores
from rluf.rewards.config import TrainSection
from rluf.rewards.context_head import context_head_of, rewards_with_head
from rluf.rewards.losses import bradley_terry_loss, love_bce_loss
from rluf.rewards.scorer import pack_shared, pad_right, score_every_position
from rluf.threads import training_is_thread_independent


def training_args(cfg: TrainSection, out: Path, device: str, progress: bool) -> TrainingArguments:
    """TrainingArguments from the `train` section; checkpoints in out/trainer/ every `checkpoint_steps`."""
    if cfg.precision == "fp16" and not device.startswith("cuda"):
        raise ConfigError(f"train.precision = fp16 needs a CUDA device (this run uses {device}); use bf16 or fp32")
    return TrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        activation_checkpointing=cfg.gradient_checkpointing,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        train_sampling_strategy="group_by_length",  # length-grouped batches: little padding
        length_column_name="length",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to=cfg.report_to or "none",
        save_strategy="steps" if cfg.checkpoint_steps else "no",
        save_steps=cfg.checkpoint_steps or 500,
        save_total_limit=2,
        eval_strategy="no",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=device == "cpu",
        optim="adamw_torch",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,  # our collators need every column
        disable_tqdm=not progress,
    )


def class_normalised_weights(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """w_i / mean(w over i's class): keeps within-class weighting, keeps the class balance."""
    out = np.array(weights, dtype=np.float64)
    for c in (0.0, 1.0):
        m = labels == c
        if m.any():
            out[m] = out[m] / out[m].mean()
    return out


def love_dataset(seqs: list[list[int]], labels: np.ndarray, weights: np.ndarray,
                 context_lengths: list[int] | None = None):
    """Rows for `LoveTrainer`; `context_lengths` (each sequence's context tokens) for a model with a context head."""
    from datasets import Dataset

    columns = {"input_ids": seqs, "labels": labels.astype(np.float32).tolist(),
               "weights": weights.astype(np.float32).tolist(), "length": [len(s) for s in seqs]}
    if context_lengths is not None:
        columns["context_lengths"] = context_lengths
    return Dataset.from_dict(columns)


def pairs_dataset(chosen: list[list[int]], rejected: list[list[int]]):
    from datasets import Dataset

    return Dataset.from_dict({"chosen_ids": chosen, "rejected_ids": rejected,
                              "length": [max(len(c), len(r)) for c, r in zip(chosen, rejected, strict=True)]})


class LoveCollator:
    """Dynamic right padding of (input_ids, labels, weights[, context_lengths]) rows."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        ids, mask = pad_right([r["input_ids"] for r in rows], self.pad_id)  # (B, T)
        batch = {"input_ids": ids, "attention_mask": mask,
                 "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.float32),
                 "weights": torch.tensor([r["weights"] for r in rows], dtype=torch.float32)}
        if "context_lengths" in rows[0]:
            batch["context_lengths"] = torch.tensor([r["context_lengths"] for r in rows])
        return batch


class PairCollator:
    """Chosen and rejected in one padded batch: rows 0..B-1 chosen, B..2B-1 rejected."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows]
        ids, mask = pad_right(seqs, self.pad_id)  # (2B, T)
        return {"input_ids": ids, "attention_mask": mask}


SHARE_IF_SHARED_AT_LEAST = 0.1  # one sequence when the shared start is this share of the longer sequence


def is_shared(shared: list[int], chosen_tail: list[int], rejected_tail: list[int]) -> bool:
    """Whether a pair reads as one sequence: when `max_length` cut the context differently for its two answers,
    they share little more than the chat prefix, and one row of both whole sequences under a block mask costs
    more than two rows (27% of the default run's pairs)."""
    return len(shared) >= SHARE_IF_SHARED_AT_LEAST * (len(shared) + max(len(chosen_tail), len(rejected_tail)))


def pair_rows(shared: list[int], chosen_tail: list[int],
              rejected_tail: list[int]) -> list[tuple[list[int], list[list[int]]]]:
    """The rows a pair becomes, as `pack_shared` takes them: one [shared | chosen tail | rejected tail] row when
    `is_shared`, else one row per answer."""
    if is_shared(shared, chosen_tail, rejected_tail):
        return [(shared, [chosen_tail, rejected_tail])]
    return [([], [shared + chosen_tail]), ([], [shared + rejected_tail])]


def shared_pairs_dataset(pairs: list[tuple[list[int], list[int], list[int]]]):
    """(shared, chosen tail, rejected tail) rows from `Encoder.encode_pairs`; `length` is the longest row the
    pair becomes (`pair_rows`), for length-grouped batches."""
    from datasets import Dataset

    lengths = [max(len(head) + sum(map(len, tails)) for head, tails in pair_rows(*p)) for p in pairs]
    return Dataset.from_dict({"shared_ids": [p[0] for p in pairs], "chosen_tail": [p[1] for p in pairs],
                              "rejected_tail": [p[2] for p in pairs], "length": lengths})


class SharedPromptPairCollator:
    """Each pair as `pair_rows` lays it out: one sequence [shared | chosen tail | rejected tail] (`pack_shared`)
    when its answers share a start, whose last tokens each see exactly their own sequence while the shared tokens
    are computed once; else one row per answer. `chosen_at` and `rejected_at` index each answer's last token in
    the flattened (rows x T) batch."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        packed, chosen_at, rejected_at = [], [], []  # (row, tail) of each answer's end
        for r in rows:
            layout = pair_rows(r["shared_ids"], r["chosen_tail"], r["rejected_tail"])
            row = len(packed)
            chosen_at.append((row, 0))
            rejected_at.append((row, 1) if len(layout) == 1 else (row + 1, 0))
            packed += layout
        ids, mask, positions, ends = pack_shared(packed, self.pad_id)
        T = ids.shape[1]
        flat = [[row * T + int(ends[row, tail]) for row, tail in at] for at in (chosen_at, rejected_at)]
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                "chosen_at": torch.tensor(flat[0]), "rejected_at": torch.tensor(flat[1])}


class ClaimFreeCores(TrainerCallback):
    """Before each step: take back the cores of workers that have finished (rluf.parallel.claim_free_cores), so
    the helpfulness model trains on both cores once the stages beside it are done. The weights do not depend on
    when that happens where training gives the same bits on any thread count (MKL's strict mode,
    rluf/__init__.py); where it does not, training keeps its thread count."""

    def __init__(self):
        self.enabled = training_is_thread_independent()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.enabled:
            claim_free_cores()


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """HF's length-grouped order, drawn from a generator seeded by (seed, epoch) (the Trainer calls set_epoch):
    a run resumed mid-epoch sees the same batches as the uninterrupted run. HF's own draws from the global
    RNG, whose state at a checkpoint is not the one the epoch's order was drawn with."""

    def __init__(self, *args, seed: int, **kw):
        super().__init__(*args, **kw)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)


class ResumableOrder:
    """Mixin for the Trainers below: the training order is a function of (seed, epoch) only."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps, dataset=dataset,
            lengths=dataset[self.args.length_column_name], seed=self.args.data_seed)


class LoveTrainer(ResumableOrder, Trainer):
    """Trainer whose loss is the weighted BCE of P[Love] (`losses.love_bce_loss`); a context head learns in a
    parameter group of its own, at `context_head_lr_scale` x the backbone's rate."""

    loss_is_scaled_for_ga = False  # our loss is a per-batch mean: let the Trainer divide by accumulation steps
    context_head_lr_scale = TrainSection.model_fields["context_head_lr_scale"].default  # `fit` sets the config's

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        head = context_head_of(self.model)
        if head is not None and len(optimizer.param_groups) == 2:  # HF's decay / no-decay groups
            own = {id(p) for p in head.parameters()}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in own]
            optimizer.add_param_group({"params": list(head.parameters()), "weight_decay": 0.0,
                                       "lr": self.args.learning_rate * self.context_head_lr_scale})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, weights = inputs.pop("labels"), inputs.pop("weights")
        head = context_head_of(model)
        if head is None:
            z = model(**inputs).logits[:, 0]  # (B, 1) -> (B,)
        else:  # rluf.rewards.context_head: w . h_answer + b + (U mean_context(h) + c) . (V h_answer)
            z = rewards_with_head(model, inputs.pop("context_lengths"), **inputs)
        loss = love_bce_loss(z, labels, weights)
        return (loss, {"logits": z}) if return_outputs else loss


class BradleyTerryTrainer(ResumableOrder, Trainer):
    """Trainer whose loss is the Bradley-Terry pairwise loss (`losses.bradley_terry_loss`)."""

    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "chosen_at" in inputs:  # SharedPromptPairCollator: answers' ends in the flattened batch
            chosen_at, rejected_at = inputs.pop("chosen_at"), inputs.pop("rejected_at")
            per_position = score_every_position(model, **inputs).reshape(-1)  # (rows x T,)
            r_chosen, r_rejected = per_position[chosen_at], per_position[rejected_at]  # (B,), (B,)
        else:  # chosen rows then rejected rows (PairCollator)
            r = model(**inputs).logits[:, 0]  # (2B, 1) -> (2B,)
            B = r.shape[0] // 2
            r_chosen, r_rejected = r[:B], r[B:]  # (B,), (B,)
        loss = bradley_terry_loss(r_chosen, r_rejected)
        return (loss, {"r_chosen": r_chosen, "r_rejected": r_rejected}) if return_outputs else loss
