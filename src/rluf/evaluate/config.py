"""EvaluateConfig: every option of `rluf evaluate` (configs/evaluate.yaml mirrors it; docs/evaluate.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from rluf.config import StrictModel
from rluf.judges.config import JudgeConfig

OBJECTIVES = ("love", "helpfulness", "safety")


class ModelsConfig(StrictModel):
    """Reward-model folders written by `rluf train-reward` (any may be omitted; its columns are then absent)."""

    love: Path | None = None
    """P[Love] (BCE) model: its natural-rate probability is the offline evaluator (RLUF Sec. 4)."""
    helpfulness: Path | None = None
    """Bradley-Terry helpfulness model (raw reward)."""
    safety: Path | None = None
    """Bradley-Terry safety model (raw reward)."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Weights of the folders above at scoring time: 'auto' is bf16 on a CUDA GPU that supports it (half the
    memory of fp32) and fp32 elsewhere (on CPU the scores of fp32)."""


class PromptsConfig(StrictModel):
    """The fixed held-out prompt set."""

    path: Path | None = None
    """Parquet or JSONL with a `prompt` column (chat messages) or a `text` column; default: the simulated
    world's evaluation sample when a world is given, else required (e.g. the curated test.parquet, whose
    contexts are later in time than all training data)."""
    n_prompts: int = Field(200, ge=2)
    """Prompts drawn (seeded, without replacement) when the file, or the world's evaluation sample, holds more."""


class GenerationConfig(StrictModel):
    """Sampling of each policy's responses (rluf.policy.Sampling)."""

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, ge=0)
    """0 means greedy decoding."""
    top_p: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(64, ge=1)
    samples_per_prompt: int = Field(1, ge=1)
    """Responses per prompt and policy; scores are averaged per prompt before the bootstrap."""


class EvaluateConfig(StrictModel):
    """`rluf evaluate`: score candidate policies offline, rank them, flag reward hacking."""

    seed: int = 0
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    judges: list[JudgeConfig] = Field(
        default_factory=lambda: [{"type": "degenerate"}, {"type": "regex"}, {"type": "length"},
                                 {"type": "exact_answer"}, {"type": "false_refusal"}],
        validate_default=True,
    )
    """Mixture of Judges applied to every response (rluf.judges; model judges may use the scorers
    `love`, `helpfulness`, `safety`). Prompt metadata columns (e.g. `reference`, `must_refuse`) reach them."""
    rank_by: Literal["love", "helpfulness", "safety"] = "love"
    """Objective whose mean ranks the policies (P[Love] at the natural rate, as in the paper's release gate)."""
    baseline: str | None = None
    """Policy name the others are compared with (paired differences, hacking flags); default: the first."""
    bootstrap_reps: int = Field(1000, ge=0)
    """Bootstrap replicates over prompts for CIs and rank distributions (0 = none)."""
    alpha: float = Field(0.05, gt=0, lt=1)
    device: str = "auto"

    @field_validator("bootstrap_reps")
    @classmethod
    def _reps(cls, v: int) -> int:
        if 0 < v < 100:
            raise ValueError("use 0 (no bootstrap) or at least 100 replicates, e.g. 1000")
        return v
