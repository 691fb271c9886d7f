"""`rluf.optimize.optimize`: setup -> CRRAFT loop -> save, with resume from the last atomic checkpoint.

Run directory (`out_dir`)::

    config.json        the resolved config (paths filled in)
    pool.jsonl         the prompt pool with y_base per prompt (fixed for the run)
    metrics.jsonl      one record per iteration (iteration 0: the starting policy's true metrics)
    checkpoints/       atomic checkpoints (see checkpoint.py)
    policy/            the trained policy (HF folder; LoRA adapters merged) once all iterations ran
    summary.json       baseline and final metrics, wall time
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from rluf.config import load_config, validate_config
from rluf.errors import ConfigError
from rluf.judges.config import build_judges
from rluf.optimize import checkpoint as ckpt
from rluf.optimize.config import OptimizeConfig
from rluf.optimize.crraft import CRRAFT
from rluf.optimize.objectives import Objective, load_objectives
from rluf.optimize.prompts import PromptItem, draw_pool, load_pool, read_prompt_file, save_pool
from rluf.optimize.simbridge import load_world, sim_prompts
from rluf.policy import Policy, Sampling
from rluf.utils import bf16_supported, read_json, seed_everything, select_device, write_json

log = logging.getLogger(__name__)

MUST_MATCH = ("seed", "policy", "reference", "objectives", "reward_precision", "weights", "judges", "prompts",
              "crraft")


def resolve_config(cfg: OptimizeConfig, world) -> OptimizeConfig:
    """Fill in defaults that depend on the simulator folder (the starting policy)."""
    cfg = cfg.model_copy(deep=True)
    if cfg.policy is None:
        if cfg.prompts.source != "sim" or cfg.prompts.path is None:
            raise ConfigError("policy: not set; give the starting policy folder (e.g. `rluf simulate` DIR/policy)")
        cfg.policy = str(Path(cfg.prompts.path) / "policy")
    if not (Path(cfg.policy) / "config.json").is_file():
        raise ConfigError(f"policy = {cfg.policy!r}: not a Hugging Face model folder (no config.json)")
    return cfg


def _resume_config(given: OptimizeConfig, out_dir: Path) -> OptimizeConfig:
    """On resume the stored config wins for everything that must match; warn about differences."""
    if not (out_dir / "config.json").is_file():
        raise ckpt.CheckpointError(
            f"--resume {out_dir}: not an rluf optimize run (no config.json); start a new run with --out"
        )
    stored = validate_config(OptimizeConfig, read_json(out_dir / "config.json"), source=str(out_dir / "config.json"))
    for key in MUST_MATCH:
        if getattr(given, key) != getattr(stored, key) and given != OptimizeConfig():
            log.warning("resume: %s differs from the checkpointed run; using the run's value", key)
    return stored.model_copy(update={"stop_after": given.stop_after})


def build_pool(cfg: OptimizeConfig, world, reference: Policy) -> list[PromptItem]:
    """Draw the prompt pool and attach y_base: the logged response, or a reference-policy sample."""
    if cfg.prompts.source == "file":
        pool = draw_pool(read_prompt_file(cfg.prompts.path), cfg.prompts.max_prompts, cfg.seed)
    else:
        pool = sim_prompts(world, cfg.prompts.max_prompts, cfg.seed)
    if cfg.prompts.y_base == "logged":
        missing = sum(p.logged is None for p in pool)
        if missing:
            raise ConfigError(
                f"prompts.y_base = 'logged' but {missing} of {len(pool)} prompts have no logged response "
                "(`completion` column); use y_base: reference"
            )
        for p in pool:
            p.y_base = p.logged
    else:
        s = cfg.crraft.sampling
        gens = reference.generate([p.context for p in pool], n=1, sampling=Sampling(
            s.max_new_tokens, s.temperature, s.top_p, s.top_k), generator_seed=cfg.seed + 7)
        for p, g in zip(pool, gens, strict=True):
            p.y_base = g[0]
    return pool


class AdaptersOff:
    """The reference pi_ref of a LoRA run without a second copy of the weights: the policy's own base model,
    called with its adapters disabled (peft's `disable_adapter`), under the starting weights' frozen values."""

    def __init__(self, peft_model):
        self.peft_model = peft_model

    def __call__(self, **inputs):
        with self.peft_model.disable_adapter():
            return self.peft_model(**inputs)

    def generate(self, **kw):
        with self.peft_model.disable_adapter():
            return self.peft_model.generate(**kw)

    def to(self, device):
        return self

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    @property
    def training(self) -> bool:
        return self.peft_model.training


def checkpoint_activations(model) -> None:
    """Gradient checkpointing of a Hugging Face model: each decoder layer keeps only its input and recomputes the
    rest in the backward pass. It acts only in train mode with gradients on, so generation (eval mode, no_grad)
    keeps its KV cache. Non-reentrant checkpoints pass gradients to LoRA adapters even though the frozen
    embeddings' output needs none (the reentrant kind would need `enable_input_require_grads`)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name; the old one warns there
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _models(cfg: OptimizeConfig, device: str) -> tuple[Policy, Policy]:
    """The policy to train (LoRA-wrapped if asked) and the frozen reference: `cfg.reference`, else the starting
    policy (with LoRA, its base with the adapters off, no copy; without, a copy)."""
    policy = Policy.from_pretrained(cfg.policy, device=device)
    lora = cfg.crraft.lora.enabled
    ref_model = (Policy.from_pretrained(cfg.reference, device=device).model if cfg.reference
                 else None if lora else copy.deepcopy(policy.model))
    if ref_model is not None:
        ref_model.eval().requires_grad_(False)
    if cfg.crraft.gradient_checkpointing:  # after the copy: the frozen reference runs no backward
        checkpoint_activations(policy.model)
    if lora:
        from peft import LoraConfig, get_peft_model

        lc = cfg.crraft.lora
        policy.model = get_peft_model(policy.model, LoraConfig(
            r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=lc.target_modules,
            task_type="CAUSAL_LM"))
        ref_model = ref_model if ref_model is not None else AdaptersOff(policy.model)
    return policy, Policy(ref_model, policy.tokenizer, device=device)


def optimize(
    config: OptimizeConfig | str | Path | None,
    out_dir: str | Path,
    resume: bool = False,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
    objectives: dict[str, Objective] | None = None,
) -> dict[str, Any]:
    """Run CRRAFT; returns the summary (also written to out_dir/summary.json).

    `config` is an OptimizeConfig or a YAML path; `objectives` overrides the configured reward models
    (tests and benchmarks pass simple scorers).
    """
    t_start = time.time()
    out_dir = Path(out_dir)
    cfg = config if isinstance(config, OptimizeConfig) else load_config(OptimizeConfig, config)
    if resume:
        cfg = _resume_config(cfg, out_dir)
    world = load_world(cfg.prompts.path) if cfg.prompts.source == "sim" else None
    cfg = resolve_config(cfg, world)
    names = list(objectives) if objectives is not None else list(cfg.objectives)
    cfg.check(names)  # everything validated before any model loads
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    acc = _accelerator(cfg, device, out_dir)
    objectives = objectives if objectives is not None else load_objectives(cfg.objectives, device, world,
                                                                           cfg.reward_precision)
    judges = build_judges(cfg.judges, objectives)
    policy, reference = _models(cfg, device)
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            save_pool(out_dir / "pool.jsonl", build_pool(cfg, world, reference))
            write_json(out_dir / "config.json", cfg.model_dump(mode="json"))
            (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    acc.wait_for_everyone()  # the other processes read the pool rank 0 drew (and its y_base samples)
    pool = load_pool(out_dir / "pool.jsonl")
    trainer = _build_trainer(cfg, policy, reference, objectives, judges, pool, out_dir, world, acc)
    start = _restore(trainer, out_dir) if resume else 0
    last = trainer.train(start, on_iteration=_iteration_hook(trainer, on_iteration, out_dir))
    if cfg.report_to:
        acc.end_training()
    return _finish(cfg, trainer, out_dir, last, time.time() - t_start)


def _accelerator(cfg: OptimizeConfig, device: str, out_dir: Path):
    """accelerate's view of the launch: one process, or N under `accelerate launch` / `torchrun`; bf16 autocast."""
    from accelerate import Accelerator

    bf16 = cfg.crraft.bf16 == "yes" or (cfg.crraft.bf16 == "auto" and bf16_supported(device))
    return Accelerator(cpu=device == "cpu", mixed_precision="bf16" if bf16 else "no",
                       log_with=list(cfg.report_to) or None, project_dir=str(out_dir))


def _build_trainer(cfg, policy, reference, objectives, judges, pool, out_dir, world, acc) -> CRRAFT:
    params = [p for p in policy.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.crraft.lr, weight_decay=cfg.crraft.weight_decay)
    if cfg.report_to:
        acc.init_trackers("rluf-optimize", config=cfg.model_dump(mode="json"))
    evaluator = None
    if world is not None and cfg.eval.enabled:
        from rluf.sim.evaluation import PolicyEvaluation

        evaluation = PolicyEvaluation(world, cfg.eval.n_prompts, cfg.crraft.sampling.to_sampling(),
                                      seed=cfg.seed + 13, items=cfg.eval.items)

        def evaluator(p: Policy) -> dict[str, float]:
            return {k: float(v) for k, v in evaluation.metrics(p).items() if k != "n"}
    config_dump = cfg.model_dump(mode="json")

    def save(iteration: int) -> None:
        if acc.is_main_process:
            ckpt.save_checkpoint(out_dir, iteration, policy.model, opt, config_dump, cfg.keep_checkpoints)
        acc.wait_for_everyone()

    return CRRAFT(cfg, policy, reference, objectives, judges, pool, opt, out_dir, accelerator=acc,
                  evaluator=evaluator, checkpoint_fn=save)


def _restore(trainer: CRRAFT, out_dir: Path) -> int:
    """Load the last checkpoint and cut metrics.jsonl back to it (later lines were the lost iteration)."""
    state = ckpt.load_checkpoint(out_dir)
    start = ckpt.restore(state, trainer.policy.model, trainer.optimizer)
    path = out_dir / "metrics.jsonl"
    if trainer.is_main and path.is_file():
        keep = [r for r in read_records(path) if r["iteration"] <= start]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    trainer.accelerator.wait_for_everyone()
    log.info("resumed %s at iteration %d", out_dir, start)
    return start


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records; a last line cut short by a kill is dropped (resume redoes that iteration)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    records = []
    for i, ln in enumerate(lines):
        try:
            records.append(json.loads(ln))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ckpt.CheckpointError(f"{path}: line {i + 1} is not valid JSON (and not the last line)") from None
            log.warning("%s: dropping the last line, cut short (%d characters)", path, len(ln))
    return records


def _iteration_hook(trainer: CRRAFT, on_iteration, out_dir: Path):
    """After each iteration: log to the trackers, save an intermediate policy when due, call `on_iteration`."""
    acc, cfg = trainer.accelerator, trainer.cfg

    def hook(record: dict[str, Any]) -> None:
        it = record["iteration"]
        if acc is not None and cfg.report_to:
            acc.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=it)
        if cfg.save_policy_every and 0 < it < cfg.crraft.iterations and it % cfg.save_policy_every == 0:
            _save_policy(cfg, trainer, out_dir / "policies" / f"iter-{it:06d}")
        if on_iteration:
            on_iteration(record)

    return hook


def _save_policy(cfg: OptimizeConfig, trainer: CRRAFT, path: Path) -> None:
    """The current policy as a Hugging Face folder (LoRA merged), written beside `path` and renamed into place
    by the main process; the others wait for it."""
    if not trainer.is_main:
        trainer.accelerator.wait_for_everyone()
        return
    model = trainer.policy.model
    if cfg.crraft.lora.enabled:
        model = copy.deepcopy(model).merge_and_unload()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    Policy(model, trainer.policy.tokenizer, device=trainer.policy.device).save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    trainer.accelerator.wait_for_everyone()


def _finish(cfg: OptimizeConfig, trainer: CRRAFT, out_dir: Path, last: dict[str, Any], wall: float) -> dict:
    trainer.accelerator.wait_for_everyone()  # metrics.jsonl complete
    records = read_records(out_dir / "metrics.jsonl")
    done = max((r["iteration"] for r in records), default=0)
    finished = done >= cfg.crraft.iterations
    if finished:
        _save_policy(cfg, trainer, out_dir / "policy")
    baseline = {k: v for k, v in records[0].items() if k.startswith("true/")} if records else {}
    final = {k: v for k, v in records[-1].items() if isinstance(v, int | float)} if records else {}
    summary = {"iterations_done": done, "finished": finished, "policy": str(out_dir / "policy") if finished else None,
               "baseline": baseline, "final": final, "wall_s": round(wall, 2)}
    if trainer.is_main:
        write_json(out_dir / "summary.json", summary)
    return summary
