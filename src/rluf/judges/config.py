"""Judge configs (one pydantic model per judge type, selected by `type`) and `build_judges`.

YAML example::

    judges:
      - {type: length, min_words: 1, max_words: 60}
      - {type: degenerate}
      - {type: exact_answer}               # only prompts whose metadata has `reference`
      - {type: model, scorer: safety, threshold: -1.0}
      - {type: false_refusal}
      - {type: regex, name: signoff}       # forbids "Bye! Sending Love!"-style endings
      - {type: llm, base_url: http://127.0.0.1:8000/v1, model: judge}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import Field

from rluf.config import StrictModel
from rluf.errors import ConfigError
from rluf.hacking import DEFAULT_REFUSAL_PATTERN, DEFAULT_SIGNOFF_PATTERN
from rluf.judges.base import Judge, Scorer
from rluf.judges.llm import DEFAULT_INSTRUCTION, LLMJudge
from rluf.judges.mixture import MixtureOfJudges
from rluf.judges.model import FalseRefusalJudge, ModelJudge
from rluf.judges.rules import DegenerateJudge, ExactAnswerJudge, LengthJudge, RegexJudge


class RegexJudgeConfig(StrictModel):
    type: Literal["regex"] = "regex"
    name: str = "signoff"
    patterns: list[str] = Field(default_factory=lambda: [DEFAULT_SIGNOFF_PATTERN], min_length=1)
    """Fail a response matching any of these (case-insensitive). Default: the sign-off regex."""


class LengthJudgeConfig(StrictModel):
    type: Literal["length"] = "length"
    name: str = "length"
    min_words: int = Field(1, ge=0)
    max_words: int = Field(200, ge=1)


class ExactAnswerJudgeConfig(StrictModel):
    type: Literal["exact_answer"] = "exact_answer"
    name: str = "exact_answer"
    key: str = "reference"
    """Prompt metadata key holding the reference answer; prompts without it pass."""
    mode: Literal["contains", "exact"] = "contains"


class DegenerateJudgeConfig(StrictModel):
    type: Literal["degenerate"] = "degenerate"
    name: str = "degenerate"
    ngram: int = Field(3, ge=1)
    max_repeats: int = Field(2, ge=1)
    """Fail when any `ngram`-gram occurs more than this many times in one response."""
    min_distinct: float = Field(0.3, ge=0.0, le=1.0)


class ModelJudgeConfig(StrictModel):
    type: Literal["model"] = "model"
    name: str = "safety"
    scorer: str = "safety"
    """Name of an objective (reward model) whose raw score is thresholded."""
    threshold: float = 0.0
    pass_if: Literal["above", "below"] = "above"


class FalseRefusalJudgeConfig(StrictModel):
    type: Literal["false_refusal"] = "false_refusal"
    name: str = "false_refusal"
    pattern: str = DEFAULT_REFUSAL_PATTERN
    scorer: str | None = None
    """Optional refusal classifier (objective name); its score > threshold means a refusal."""
    threshold: float = 0.0
    expect_refusal_key: str = "must_refuse"


class LLMJudgeConfig(StrictModel):
    type: Literal["llm"] = "llm"
    name: str = "llm"
    base_url: str
    model: str
    instruction: str = DEFAULT_INSTRUCTION
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    on_error: Literal["fail", "pass", "raise"] = "fail"


JudgeConfig = Annotated[
    RegexJudgeConfig
    | LengthJudgeConfig
    | ExactAnswerJudgeConfig
    | DegenerateJudgeConfig
    | ModelJudgeConfig
    | FalseRefusalJudgeConfig
    | LLMJudgeConfig,
    Field(discriminator="type"),
]


def _scorer(scorers: Mapping[str, Scorer], name: str, judge: str) -> Scorer:
    if name not in scorers:
        raise ConfigError(
            f"judge {judge!r}: scorer {name!r} is not a configured objective; "
            f"choose one of {sorted(scorers)} or add it under `objectives`"
        )
    return scorers[name]


def build_judge(cfg: JudgeConfig, scorers: Mapping[str, Scorer]) -> Judge:
    """One judge object from its config; `scorers` maps objective names to reward-model scorers."""
    kw = cfg.model_dump(exclude={"type"})
    if isinstance(cfg, RegexJudgeConfig):
        return RegexJudge(**kw)
    if isinstance(cfg, LengthJudgeConfig):
        if cfg.max_words < cfg.min_words:
            raise ConfigError(f"judge {cfg.name!r}: max_words={cfg.max_words} < min_words={cfg.min_words}")
        return LengthJudge(**kw)
    if isinstance(cfg, ExactAnswerJudgeConfig):
        return ExactAnswerJudge(**kw)
    if isinstance(cfg, DegenerateJudgeConfig):
        return DegenerateJudge(**kw)
    if isinstance(cfg, ModelJudgeConfig):
        kw["scorer"] = _scorer(scorers, cfg.scorer, cfg.name)
        return ModelJudge(**kw)
    if isinstance(cfg, FalseRefusalJudgeConfig):
        kw["scorer"] = _scorer(scorers, cfg.scorer, cfg.name) if cfg.scorer else None
        return FalseRefusalJudge(**kw)
    return LLMJudge(**kw)


def build_judges(configs: Sequence[JudgeConfig], scorers: Mapping[str, Scorer] | None = None) -> MixtureOfJudges:
    """A Mixture of Judges from a list of judge configs."""
    names = [c.name for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"judges: names must be unique, {dupes} appear more than once; set `name:` on each")
    return MixtureOfJudges([build_judge(c, scorers or {}) for c in configs])
