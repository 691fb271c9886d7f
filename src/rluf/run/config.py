"""`rluf run` config: one section per stage, each validated by that stage's own config model.

A section holds only what differs from the stage's defaults; the run fills in the paths that chain the
stages (logs -> curated data -> reward models -> policies). Every section is validated before any stage
starts, so a typo fails in a second, not after ten minutes of simulation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from rluf.config import StrictModel, load_config
from rluf.optimize.config import PAPER_SWEEP, SweepRun


class SignalsSection(StrictModel):
    outcome_days: float = Field(7.0, gt=0, description="the long-term outcome: the user returns within N days")


class SweepSection(StrictModel):
    runs: dict[str, SweepRun] | None = Field(
        None, description="run name -> {weights, role}; None = the paper's sweep (PAPER_SWEEP: love 0.0 / "
        "0.1 / 0.3 with helpfulness 0.7 and safety 0.3, love 0.1 the candidate; love 0.3 and love-only the "
        "hack checks)")
    extra_runs: dict[str, SweepRun] = Field(default_factory=dict, description="runs added to `runs`")
    renamed_keys = {"candidate": "runs.<name>.role"}

    @model_validator(mode="after")
    def _one_candidate(self) -> SweepSection:
        candidates = [name for name, run in self.all_runs().items() if run.role == "candidate"]
        if len(candidates) != 1:
            raise ValueError(f"exactly one sweep run needs `role: candidate` (the one the A/B test deploys); "
                             f"found {candidates or 'none'}")
        return self

    def all_runs(self) -> dict[str, SweepRun]:
        return {**(PAPER_SWEEP if self.runs is None else self.runs), **self.extra_runs}

    @property
    def candidate(self) -> str:
        """The run promoted to the simulated A/B test."""
        return next(name for name, run in self.all_runs().items() if run.role == "candidate")


class RunConfig(StrictModel):
    """`rluf run`: simulate, signals, curate, three reward models, CRRAFT sweep, evaluate, simulated A/B test."""

    seed: int = 0
    quick: bool = Field(False, description="the small world and short training (a few minutes)")
    simulate: dict[str, Any] = Field(default_factory=dict, description="WorldConfig overrides (configs/sim.yaml)")
    signals: SignalsSection = Field(default_factory=SignalsSection)
    curate: dict[str, Any] = Field(default_factory=dict, description="CurateConfig overrides (configs/curate.yaml)")
    reward_love: dict[str, Any] = Field(default_factory=dict, description="RewardConfig overrides for P[Love]")
    reward_helpfulness: dict[str, Any] = Field(default_factory=dict)
    reward_safety: dict[str, Any] = Field(default_factory=dict)
    optimize: dict[str, Any] = Field(default_factory=dict, description="OptimizeConfig overrides (every sweep run)")
    sweep: SweepSection = Field(default_factory=SweepSection)
    evaluate: dict[str, Any] = Field(default_factory=dict, description="EvaluateConfig overrides")
    abtest: dict[str, Any] = Field(default_factory=dict, description="simulated A/B test: WorldConfig overrides")


def stage_config(cls, packaged: str | None, overrides: dict[str, Any], section: str):
    """The stage's model defaults (or a packaged override file) with the run's overrides, validated."""
    from rluf.errors import ConfigError

    try:
        return load_config(cls, packaged, overrides)
    except ConfigError as e:
        raise ConfigError(f"run config section '{section}': {e}") from None


def load_run_config(path: str | Path | None, quick: bool = False, seed: int | None = None,
                    overrides: list[str] | None = None) -> RunConfig:
    """run.yaml / run_quick.yaml (or `path`) with the seed and `--set KEY=VALUE` overrides."""
    from rluf.config import parse_set

    packaged = "run_quick.yaml" if quick else "run.yaml"
    cfg = load_config(RunConfig, path or packaged, {"seed": seed, **parse_set(overrides)})
    if quick and not cfg.quick:
        cfg = cfg.model_copy(update={"quick": True})
    return cfg
