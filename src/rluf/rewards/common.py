"""Steps shared by the P[Love] and Bradley-Terry recipes: fit with the HF Trainer, save the folder."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import rluf
from rluf.errors import ConfigError
from rluf.rewards.backbone import unwrap_lora, wrap_lora
from rluf.rewards.config import RewardConfig
from rluf.rewards.context_head import context_head_of
from rluf.rewards.hf_trainer import ClaimFreeCores, training_args
from rluf.rewards.scorer import META_FILE
from rluf.utils import JsonlLogger, write_json

log = logging.getLogger(__name__)


def fit(trainer_cls, model, cfg: RewardConfig, dataset, collator, out: Path, device: str,
        progress: bool, resume: bool = False) -> tuple[Any, dict[str, Any]]:
    """Train `model` on `dataset` with `trainer_cls`; returns the (LoRA-merged) model and train stats.

    With `resume`, the Trainer continues from the last checkpoint in out/trainer/ (weights, optimizer,
    scheduler, RNG states and the position in the data)."""
    model = wrap_lora(model, cfg.model)
    args = training_args(cfg.train, out, device, progress)
    checkpoint = last_checkpoint(out) if resume else None
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator,
                          callbacks=[ClaimFreeCores()])
    trainer.context_head_lr_scale = cfg.train.context_head_lr_scale
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - t0
    history = [h for h in trainer.state.log_history if "loss" in h]
    logger = JsonlLogger(out / "train_log.jsonl")
    for h in history:
        logger.log({"step": h.get("step"), "epoch": h.get("epoch"), "train/loss": h["loss"],
                    "train/lr": h.get("learning_rate"), "train/grad_norm": h.get("grad_norm")})
    n_seen = len(dataset) * cfg.train.epochs
    stats = {
        "examples": len(dataset),
        "steps": trainer.state.global_step,
        "seconds": seconds,
        "examples_per_s": n_seen / seconds if seconds > 0 else float("nan"),
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "mean_loss": float(result.training_loss),
    }
    log.info("trained %d examples x %.1f epochs in %.1fs (%.0f examples/s), loss %s -> %s", len(dataset),
             cfg.train.epochs, seconds, stats["examples_per_s"], stats["first_loss"], stats["last_loss"])
    return unwrap_lora(trainer.model), stats


def last_checkpoint(out: Path) -> str:
    from transformers.trainer_utils import get_last_checkpoint

    folder = out / "trainer"
    found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if found is None:
        raise ConfigError(f"--resume: no Trainer checkpoint in {folder} (train.checkpoint_steps = 0, or the run "
                              "was killed before its first checkpoint); train again without --resume")
    log.info("resuming reward-model training from %s", found)
    return found


def is_main_process() -> bool:
    """False on the non-zero ranks of a distributed launch (torchrun, `accelerate launch`): only rank 0 evaluates
    and writes the model folder, the others wait for it (`report_from_main`)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def report_from_main(out: Path) -> dict[str, Any]:
    """On a non-zero rank: wait until rank 0 has written `out`, then return its eval.json."""
    wait_for_everyone()
    return json.loads((out / "eval.json").read_text())


def save_reward_folder(model, tokenizer, meta: dict[str, Any], out: Path, report: dict[str, Any]) -> None:
    """A plain HF folder (safetensors) + tokenizer, then rluf_reward.json: its presence marks completion; then
    eval.json (`report`). Under a distributed launch, the other ranks are released once it is all written."""
    out.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    head = context_head_of(model)
    if head is None:
        model.save_pretrained(str(out), safe_serialization=True)
    else:  # the HF weights alone in model.safetensors, the head beside them
        weights = {k: v for k, v in model.state_dict().items() if not k.startswith("context_head.")}
        model.save_pretrained(str(out), safe_serialization=True, state_dict=weights)
        head.save(out)
    tokenizer.save_pretrained(str(out))
    write_json(out / META_FILE, {"rluf_version": rluf.__version__, **meta})
    write_json(out / "eval.json", report)
    shutil.rmtree(out / "trainer", ignore_errors=True)  # the checkpoints: the folder is complete now
    wait_for_everyone()


def base_meta(cfg: RewardConfig, backbone_info: dict[str, Any], device: str) -> dict[str, Any]:
    return {"objective": cfg.objective, "max_length": cfg.model.max_length,
            "context_messages": cfg.model.context_messages, "context_rank": cfg.model.context_rank,
            "context_overlap": cfg.model.context_overlap,
            "backbone": backbone_info,
            "device": device, "config": cfg.model_dump(mode="json")}
