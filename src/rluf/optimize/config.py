"""`rluf optimize` / `rluf sweep` config: one pydantic model, grouped by section, mirrored by the YAML.

Every field is described once, here; docs/crraft.md maps the CGPO symbols to these fields. The whole
config is validated before any model or data is loaded (`OptimizeConfig.check`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from rluf.config import StrictModel
from rluf.errors import ConfigError
from rluf.judges.config import JudgeConfig

# The paper's weights (RLUF, Han et al., 2025): helpfulness 0.7, safety 0.3, love 0.1.
DEFAULT_WEIGHTS = {"helpfulness": 0.7, "safety": 0.3, "love": 0.1}
# A candidate is kept only if every judge passes (CGPO's Mixture of Judges): length, degenerate text, the
# reference answer of factual prompts, and no refusal of a harmless request.
DEFAULT_JUDGES = [
    {"type": "length", "min_words": 1, "max_words": 60},
    {"type": "degenerate"},
    {"type": "exact_answer"},
    {"type": "false_refusal"},
]


class SamplingConfig(StrictModel):
    """How the K candidates per prompt are sampled (HF generate with KV cache)."""

    max_new_tokens: int = Field(40, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    """0 means greedy, which makes the K samples identical: keep it > 0 for best-of-K."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    token_budget: int | None = Field(
        None, ge=1, description="cap on each generation batch's padded tokens, rows x (longest context + "
        "max_new_tokens), so a long prompt cannot blow a batch's memory; null: batches of 64 rows")

    def to_sampling(self):
        """The generation parameters as `rluf.policy.Sampling` (imported here: policy loads torch)."""
        from rluf.policy import Sampling

        return Sampling(self.max_new_tokens, self.temperature, self.top_p, self.top_k, self.token_budget)


class LoraSettings(StrictModel):
    """Optional LoRA (peft). The reference policy is then the base model with adapters disabled (no copy)."""

    enabled: bool = False
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class PromptsConfig(StrictModel):
    """Where the B prompts per iteration come from, and what y_base is."""

    source: Literal["file", "sim"] = "sim"
    """`file`: a Parquet/JSONL file with a `prompt` column (list of chat messages), optional `completion`
    (logged response) and metadata columns; `sim`: the simulated world's prompt distribution."""
    path: str | None = None
    """The prompt file (source=file) or the simulator run/config (source=sim; None = the default world)."""
    max_prompts: int = Field(1024, ge=1)
    """Size of the prompt pool drawn at the start (fixed for the run, so resume sees the same pool)."""
    y_base: Literal["reference", "logged"] = "reference"
    """Baseline response in R_k = sigmoid(r_k(x,y) - r_k(x,y_base)): one sample from the reference policy
    drawn before training, or the logged response (needs `completion` in the file / logged answers in sim)."""


class CrraftConfig(StrictModel):
    """CRRAFT hyper-parameters (CGPO, Xu et al., 2024, Sec. 4.3; symbols in docs/crraft.md)."""

    iterations: int = Field(96, ge=1)
    batch_prompts: int = Field(16, ge=1)
    """B: prompts per iteration."""
    num_candidates: int = 4
    """K: responses sampled per prompt, the best passing one kept (RLUF used best-of-4)."""
    kl_max: float = Field(8.0, gt=0)
    """KL_max: drop candidates whose sequence KL to the reference, sum(log pi - log pi_ref), exceeds it."""
    drop_cut_off: bool = True
    """Drop samples cut off by `sampling.max_new_tokens` before their end-of-sequence token, like a judge failure."""
    fallback: Literal["y_base", "skip"] = "y_base"
    """When no candidate survives: train on y_base if it passes the judges (CGPO), or always skip."""
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(8, ge=1)
    """Selected responses per forward/backward; gradients accumulate over the whole batch of n."""
    epochs: int = Field(1, ge=1)
    """Optimizer steps per iteration on the same selected batch."""
    length_normalize: bool = False
    """Divide log pi(y*|x) by the response length: a per-token SFT loss instead of CGPO's sequence sum."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    bf16: Literal["auto", "yes", "no"] = "auto"
    """Mixed precision through accelerate; 'auto' uses bf16 only on a GPU that supports it."""
    gradient_checkpointing: bool = False
    """Recompute the policy's activations in the backward pass (one decoder layer's kept at a time): the same
    gradients for less memory, at the cost of one more forward pass per update (docs/crraft.md, "Capacity")."""

    renamed_keys = {"k": "num_candidates"}

    @model_validator(mode="after")
    def _check_num_candidates(self) -> CrraftConfig:
        if self.num_candidates < 1:
            raise ValueError(f"crraft.num_candidates = {self.num_candidates}: K (samples per prompt) must be "
                             ">= 1; RLUF used num_candidates: 4")
        return self


class MonitorConfig(StrictModel):
    """The reward-hacking monitor (rluf.hacking), computed on every iteration's K*B samples."""

    ngram: int = Field(3, ge=1)
    top_closings: int = Field(5, ge=1)
    """How many of the most common closing n-grams to log."""
    renamed_keys = {"top_k": "top_closings"}
    signoff_pattern: str | None = None
    """Regex for the sign-off hack; None = rluf.hacking.DEFAULT_SIGNOFF_PATTERN."""


class EvalConfig(StrictModel):
    """True metrics of the policy in the simulated world on a fixed evaluation sample."""

    every: int = Field(0, ge=0)
    """Evaluate every N iterations (0: only before and after training)."""
    n_prompts: int = Field(500, ge=1)
    items: Literal["held_out", "deployment"] = "held_out"
    """held_out: questions the deployment never served; deployment: new conversations over its own questions,
    the population a simulated A/B test serves (rluf.sim.World.eval_set)."""
    samples_per_prompt: int = Field(1, ge=1)
    """Answers sampled per prompt, averaged per prompt: the sweep's figures then move less with the seed."""
    enabled: bool = True
    """Needs the simulator; ignored (with a log line) when the prompts do not come from it."""


class SweepRun(StrictModel):
    """One setting of a weight sweep: the objective weights, and what the run is for."""

    weights: dict[str, float]
    role: Literal["candidate", "hack_check", "comparison"] = "comparison"
    """candidate: promoted to the A/B test and judged by the paper's first finding (true Love rises by
    TARGET_LIFT, helpfulness and safety hold); hack_check: pushes Love hard and is judged by the second (the
    sign-off hack rises and the monitor flags it); comparison: a row of the table only."""

    @model_validator(mode="before")
    @classmethod
    def _weights_alone_is_the_old_form(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "weights" not in data and data and all(
                isinstance(v, (int, float)) for v in data.values()):
            raise ValueError("a sweep run is {weights: {...}, role: candidate | hack_check | comparison}; "
                             f"write {{weights: {dict(data)}}}")
        return data


def _paper_sweep() -> dict[str, SweepRun]:
    """RLUF's sweep: love 0.0 / 0.1 / 0.3 next to helpfulness 0.7 and safety 0.3, and love alone."""
    others = {k: w for k, w in DEFAULT_WEIGHTS.items() if k != "love"}
    return {
        "love_0.0": SweepRun(weights={**others, "love": 0.0}),
        "love_0.1": SweepRun(weights=dict(DEFAULT_WEIGHTS), role="candidate"),
        "love_0.3": SweepRun(weights={**others, "love": 0.3}, role="hack_check"),
        "love_only": SweepRun(weights={"love": 1.0}, role="hack_check"),
    }


PAPER_SWEEP = _paper_sweep()


class OptimizeConfig(StrictModel):
    """`rluf optimize`: CRRAFT with a Mixture of Judges over weighted calibrated objectives."""

    seed: int = 0
    device: str = "auto"
    policy: str | None = None
    """Starting policy: a Hugging Face causal-LM folder (the simulator's `policy/` by default)."""
    reference: str | None = None
    """Reference policy for the KL filter; None = the starting policy."""
    objectives: dict[str, str] = Field(default_factory=dict)
    """Objective name -> reward-model folder written by `rluf train-reward` (any scorer can be one);
    `sim:love`, `sim:helpfulness`, `sim:safety` use the simulator's ground truth (oracle runs)."""
    reward_precision: Literal["auto", "bf16", "fp32"] = "auto"
    """Weights of the reward-model objectives at scoring time: 'auto' is bf16 on a CUDA GPU that supports it
    (half the memory of fp32) and fp32 elsewhere (on CPU the scores of fp32)."""
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """w_k in R = sum_k w_k R_k; every key must name a configured objective."""
    judges: list[JudgeConfig] = Field(default_factory=lambda: [dict(j) for j in DEFAULT_JUDGES],
                                      validate_default=True)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    crraft: CrraftConfig = Field(default_factory=CrraftConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint_every: int = Field(5, ge=0)
    """Write an atomic checkpoint every N iterations (0: never)."""
    keep_checkpoints: int = Field(2, ge=1)
    save_policy_every: int = Field(0, ge=0)
    """Also save the policy as a Hugging Face folder every N iterations, in policies/iter-NNNNNN/ (0: only the
    final policy/): candidates for offline evaluation and the offline-online check."""
    stop_after: int | None = Field(None, ge=1)
    """Stop (as if killed) after this many iterations of this invocation; for fault-tolerance tests."""
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    """Extra trackers through accelerate (each must be installed); metrics.jsonl is always written."""

    def check(self, objective_names: list[str] | None = None) -> OptimizeConfig:
        """Cross-field rules. `objective_names` are the available objectives (default: `objectives` keys)."""
        known = sorted(objective_names if objective_names is not None else self.objectives)
        for name, w in self.weights.items():
            if name not in known:
                raise ConfigError(
                    f"weights.{name}: unknown objective {name!r}; configured objectives are {known}. "
                    "Fix the spelling or add it under `objectives: {name: MODEL_FOLDER}`"
                )
            if w < 0:
                raise ConfigError(f"weights.{name} = {w}: weights must be >= 0 (use 0 to switch an objective off)")
        if not self.weights or sum(self.weights.values()) <= 0:
            raise ConfigError(f"weights = {self.weights}: at least one objective needs a positive weight")
        if self.prompts.source == "file" and not self.prompts.path:
            raise ConfigError("prompts.path: required when prompts.source is 'file' (a Parquet or JSONL file)")
        return self
