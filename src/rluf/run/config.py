"""`rluf run` config: one section per stage, each validated by that stage's own config model.

A section holds only what differs from the stage's defaults; the run fills in the paths that chain the
stages (logs -> curated data -> reward models -> policies). Every section is validated before any stage
starts, so a typo fails in a second, not after ten minutes of simulation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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


class PairsSection(StrictModel):
    helpfulness: str | None = Field(
        None, description="preference pairs: TRL's prompt/chosen/rejected (plain or conversational) or "
        "HH-RLHF chosen/rejected dialogues; a file, folder or `datasets` name. None: an OpenAssistant "
        "export's sibling rankings, or `reward_models.helpfulness`")
    safety: str | None = Field(None, description="the same for safety; None: `reward_models.safety`")


class SourceSection(StrictModel):
    """Your own deployment, in place of `simulate`: logs, the deployed policy, pairs or reward models."""

    logs: str = Field(description="a canonical logs folder, anything `rluf ingest` reads, or the database "
                      "URL of `rluf serve` (sqlite:///... or postgresql+psycopg://...)")
    policy: str = Field(description="the deployed policy: a local Hugging Face causal LM folder with a chat "
                        "template")
    pairs: PairsSection = Field(default_factory=PairsSection)
    reward_models: dict[Literal["helpfulness", "safety"], str] = Field(
        default_factory=dict, description="reward model folders used as they are, instead of pairs")
    signal: str | None = Field(None, description="the curation label rule (e.g. `like`, "
                               "`count(+1) > count(-1)`); None: the signals stage's top-ranked signal")
    ingest: dict[str, Any] = Field(default_factory=dict, description="IngestConfig overrides")

    @model_validator(mode="after")
    def _pairs_or_model(self) -> SourceSection:
        if self.pairs.safety is None and "safety" not in self.reward_models:
            raise ValueError("safety needs `pairs.safety` (preference pairs) or `reward_models.safety` "
                             "(a folder)")
        for name in ("helpfulness", "safety"):
            if getattr(self.pairs, name) is not None and name in self.reward_models:
                raise ValueError(f"give `pairs.{name}` or `reward_models.{name}`, not both")
        return self


class PlanSection(StrictModel):
    """The A/B plan of a run on real logs (`rluf abtest power` at the logs' natural rate)."""

    alpha: float = Field(0.05, gt=0, lt=1)
    power: float = Field(0.8, gt=0, lt=1)
    min_lift: float = Field(0.05, gt=0, description="the relative lift planned for when the offline "
                            "estimate is smaller or missing")
    serve: dict[str, Any] = Field(default_factory=dict, description="ServeConfig overrides of serve.yaml")


class RunConfig(StrictModel):
    """`rluf run`: simulate (or read `source`), signals, curate, three reward models, CRRAFT sweep, evaluate,
    and the A/B test (simulated; on real data, its plan)."""

    seed: int = 0
    quick: bool = Field(False, description="the small world and short training (a few minutes)")
    source: SourceSection | None = Field(None, description="your own logs, policy and pairs, instead of "
                                         "the simulator")
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
    plan: PlanSection = Field(default_factory=lambda: PlanSection())
    workers: int | None = Field(None, ge=1, description="processes for independent work side by side (stages, "
                                "sweep runs); None: the CPUs this process may use, or 1 where a GPU is to share")

    def resolved_workers(self) -> int:
        """`workers`, or its default: the available CPUs (rluf.threads) without a GPU, else 1."""
        if self.workers is not None:
            return self.workers
        import torch

        from rluf.threads import available_cpus

        return 1 if torch.cuda.is_available() else available_cpus()

    @model_validator(mode="after")
    def _source_or_simulate(self) -> RunConfig:
        if self.source is not None and (self.simulate or self.abtest or self.quick):
            raise ValueError("`source` (your own logs) replaces the simulator: drop `simulate`, `abtest` "
                             "and `quick`")
        return self


def stage_config(cls, packaged: str | None, overrides: dict[str, Any], section: str):
    """The stage's model defaults (or a packaged override file) with the run's overrides, validated."""
    from rluf.errors import ConfigError

    try:
        return load_config(cls, packaged, overrides)
    except ConfigError as e:
        raise ConfigError(f"run config section '{section}': {e}") from None


def load_run_config(path: str | Path | None, quick: bool = False, seed: int | None = None,
                    overrides: list[str] | None = None, source: dict[str, Any] | None = None) -> RunConfig:
    """run.yaml / run_quick.yaml (or `path`) with the seed and `--set KEY=VALUE` overrides. `source` (the
    `--logs/--policy/--pairs-*` options) fills the `source` section; without a `path` it starts from the
    model's defaults, not from the simulated run.yaml."""
    from rluf.config import parse_set

    given = {f"source.{k}": v for k, v in (source or {}).items() if v is not None}
    packaged = None if given else ("run_quick.yaml" if quick else "run.yaml")
    cfg = load_config(RunConfig, path or packaged, {"seed": seed, **given, **parse_set(overrides)})
    if quick and not cfg.quick:
        cfg = cfg.model_copy(update={"quick": True})
    return cfg
