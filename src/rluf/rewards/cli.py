"""`rluf train-reward love|helpfulness|safety` and `rluf score`: thin wrappers over rluf.rewards."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from rluf.config import load_config, parse_set


class ObjectiveName(StrEnum):
    love = "love"
    helpfulness = "helpfulness"
    safety = "safety"


def resolve_config(objective: str, config: Path | None, options: dict[str, Any],
                   overrides: list[str] | None = None):
    """`config` (or RewardConfig's defaults) for `objective`, with the command-line options (dotted keys,
    None = not given) and `--set KEY=VALUE` overrides, validated."""
    from rluf.rewards.config import RewardConfig

    return load_config(RewardConfig, config, {"objective": objective, **options, **parse_set(overrides)})


def train_reward(
    objective: ObjectiveName = typer.Argument(..., help="love (BCE on curated data) | helpfulness | safety (pairs)"),
    data: Path = typer.Option(..., "--data", help="love: a curated folder; helpfulness/safety: pairs .parquet "
                              "(prompt/chosen/rejected) or HH-RLHF .jsonl.gz"),
    out: Path = typer.Option(..., "--out", help="model folder to write"),
    model: str | None = typer.Option(None, "--model", help="backbone: tiny | small | base | minilm | HF folder"),
    tokenizer: str | None = typer.Option(None, "--tokenizer",
                                         help="tokenizer folder for a preset (e.g. SIMDIR/policy)"),
    config: Path | None = typer.Option(None, "--config", help="YAML (default: RewardConfig's defaults)"),
    truth: Path | None = typer.Option(None, "--truth", help="love: the simulator's truth/ folder, for Bayes figures"),
    epochs: float | None = typer.Option(None, "--epochs"),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="AdamW peak rate (default: the "
                                               "backbone's own: 1e-3 for presets, 5e-5 for minilm and folders)"),
    max_train_examples: int | None = typer.Option(None, "--max-train-examples"),
    calibration: str | None = typer.Option(None, "--calibration",
                                           help="none | temperature | platt | isotonic | centred_isotonic"),
    lora: bool | None = typer.Option(None, "--lora/--no-lora", help="train LoRA adapters (merged on save)"),
    device: str | None = typer.Option(None, "--device"),
    seed: int | None = typer.Option(None, "--seed"),
    overrides: list[str] | None = typer.Option(None, "--set", help="KEY=VALUE, dotted: --set train.epochs=4"),
    resume: bool = typer.Option(False, "--resume", help="continue a killed run from its last checkpoint in "
                                "OUT/trainer/ (give the same data and options)"),
) -> None:
    """Train a reward model and write an HF folder + rluf_reward.json + eval.json."""
    from rluf.rewards.train import train_reward as run

    cfg = resolve_config(objective.value, config, {
        "model.backbone": model, "model.tokenizer": tokenizer, "model.lora.enabled": lora,
        "train.epochs": epochs, "train.learning_rate": learning_rate,
        "train.max_train_examples": max_train_examples, "train.device": device,
        "train.seed": seed, "calibration.method": calibration,
    }, overrides)
    report = run(objective.value, data, out, cfg, truth=truth, progress=True, resume=resume)
    from rluf.rewards.common import is_main_process

    if not is_main_process():  # torchrun / accelerate launch: rank 0 reports
        return
    typer.echo(json.dumps(_summary(report), indent=2))
    typer.echo(f"wrote {out} (eval.json, rluf_reward.json)")


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    if report["objective"] == "love":
        t = report["test"]
        keys = ("auroc", "auprc", "log_loss", "brier", "ece", "ece_relative", "mean_pred_over_observed")
        s = {k: t[k] for k in keys} | {"length_r": report["length_r"]}
        if "bayes" in report:
            e = report["expected"]
            s |= {"bayes_auroc": report["bayes"]["auroc"], "auroc_gap": report["auroc_gap"],
                  "true_length_r": report["true_length_r"],
                  "length_slope_ratio": report["length_slope_ratio"], "expected_auroc": e["model"]["auroc"],
                  "expected_bayes_auroc": e["bayes"]["auroc"], "expected_auroc_gap": e["auroc_gap"],
                  "expected_ece_relative": e["model"]["ece_relative"]}
        return s
    return {"test_accuracy": report["test"]["accuracy"], "train_accuracy": report["train_accuracy"],
            **({"spearman_true": report["test"]["spearman_true"]} if "spearman_true" in report["test"] else {})}


def score(
    model: Path = typer.Argument(..., help="a reward model folder from `rluf train-reward`"),
    data: Path = typer.Argument(..., help="Parquet with prompt + completion (curated), prompt + response, or "
                                "prompt + chosen + rejected (pairs)"),
    out: Path = typer.Option(..., "--out", help="Parquet to write: the input columns + score (+ prob for love)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Score (context, response) rows with a reward model, batched, without gradients."""
    from rluf.rewards.score_file import score_file

    n = score_file(model, data, out, batch_size=batch_size, device=device, progress=True)
    typer.echo(f"scored {n} rows -> {out}")


def register(app: typer.Typer) -> None:
    app.command("train-reward")(train_reward)
    app.command("score")(score)
