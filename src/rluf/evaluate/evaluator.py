"""Stage 4: offline evaluation of candidate policies (`rluf evaluate`).

setup   check the policies and the config, load the prompt set and the reward models
run     generate (or read) every policy's responses on the same held-out prompts; score them with
        P[Love] at the natural rate, helpfulness and safety; run the Mixture of Judges and the
        reward-hacking monitor; with a simulated world, also the ground truth
summary rank the policies with bootstrap CIs over prompts, paired differences to a baseline, hacking
        flags, and the correlations between objectives over responses
output  evaluate.json and responses.parquet in `out_dir`

Under `torchrun` / `accelerate launch` each process generates for its share of the prompts and scores its share
of the responses; both are gathered, so every process summarizes the whole table and rank 0 writes it.

RLUF (Han et al., 2025) used P[Love]'s mean natural-rate probability on held-out conversations as the
offline evaluator gating releases (Pearson r = 0.95 with the online change in Love rate), and reported
Love as positively correlated with helpfulness and negatively with safety.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from rluf.errors import ConfigError, DataError
from rluf.evaluate.config import OBJECTIVES, EvaluateConfig
from rluf.evaluate.prompts import Chat, EvalPrompt, load_prompts, read_responses
from rluf.evaluate.ranking import correlation, paired_differences, rank_policies
from rluf.hacking import flag_hacking, hack_metrics
from rluf.utils import atomic_write_bytes, write_json

log = logging.getLogger(__name__)


@runtime_checkable
class LoveModel(Protocol):
    """P[Love] at the natural rate for (context, response) pairs, shape (N,) (rluf.rewards.Scorer)."""

    def prob(self, contexts: list[Chat], responses: list[str]) -> np.ndarray: ...


@runtime_checkable
class RewardModel(Protocol):
    """Raw reward for (context, response) pairs, shape (N,) (rluf.rewards.Scorer)."""

    def score(self, contexts: list[Chat], responses: list[str]) -> np.ndarray: ...


if TYPE_CHECKING:  # rluf.policy loads torch
    from rluf.policy import GenerationEngine

    PolicySpec = str | Path | GenerationEngine
Event = Callable[[str], None]


# -- setup ------------------------------------------------------------------------------------------------
def check_policies(policies: Mapping[str, PolicySpec]) -> dict[str, PolicySpec]:
    """Names to HF folders, response files or policy objects; raises for missing paths."""
    if not policies:
        raise ConfigError("no policies given; pass --policies NAME=PATH ... (HF model folders or response files)")
    out = {}
    for name, spec in policies.items():
        if isinstance(spec, str | Path):
            p = Path(spec)
            if not (p.is_dir() and (p / "config.json").is_file()) and not p.is_file():
                raise ConfigError(
                    f"policy {name!r}: {p} is neither a Hugging Face model folder (with config.json) nor a "
                    "responses file (Parquet/JSONL with prompt_id and response)"
                )
            spec = p
        out[str(name)] = spec
    return out


def _load_scorer(spec: Any, objective: str, device: str, precision: str = "auto") -> Any:
    if spec is None or not isinstance(spec, str | Path):
        return spec
    from rluf.rewards.scorer import Scorer

    return Scorer.from_pretrained(spec, device=device, precision=precision)


def resolve_prompts(prompts: Any, cfg: EvaluateConfig, world: Any) -> list[EvalPrompt]:
    """The prompt set: a given list, a file, the config's file, or the world's fixed evaluation sample."""
    if isinstance(prompts, list):
        if prompts and isinstance(prompts[0], EvalPrompt):
            return prompts
        return world_prompts(prompts)
    path = prompts if prompts is not None else cfg.prompts.path
    if path is not None:
        return load_prompts(path, cfg.prompts.n_prompts, cfg.seed)
    if world is not None:
        items = world_prompts(world.eval_set())
        if len(items) > cfg.prompts.n_prompts:  # a seeded subset; ids keep their eval_set() index
            keep = np.sort(np.random.default_rng(cfg.seed).choice(len(items), cfg.prompts.n_prompts, replace=False))
            items = [items[i] for i in keep]
        return items
    raise ConfigError(
        "no prompt set: pass --prompts FILE (e.g. the curated test.parquet, later in time than training) "
        "or set prompts.path in the config, or evaluate in a simulated world (--world SIM_DIR)"
    )


def world_prompts(items: list[dict]) -> list[EvalPrompt]:
    """The simulator's eval_set() items as prompts (id e<i>); the other keys (reference, must_refuse, family,
    user_id, ...) become metadata for the judges and the ground truth."""
    return [EvalPrompt(f"e{i}", it["prompt"], {k: v for k, v in it.items() if k != "prompt"})
            for i, it in enumerate(items)]


# -- run --------------------------------------------------------------------------------------------------
def policy_responses(name: str, spec: PolicySpec, prompts: list[EvalPrompt], cfg: EvaluateConfig) -> list[list[str]]:
    """[M][k] responses of one policy: read from a file, or sampled from a model folder or object."""
    if isinstance(spec, Path) and spec.is_file():
        return read_responses(spec, prompts, name)
    from rluf.policy import Policy, Sampling, generate_sharded

    policy = Policy.from_pretrained(spec, device=cfg.device) if isinstance(spec, Path) else spec
    g = cfg.generation
    sampling = Sampling(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p)
    return generate_sharded(policy, [p.context for p in prompts], g.samples_per_prompt, sampling, cfg.seed,
                            g.batch_size)


def all_responses(specs: Mapping[str, PolicySpec], prompts: list[EvalPrompt], cfg: EvaluateConfig, on_event: Event,
                  pool: Any = None) -> dict[str, list[list[str]]]:
    """Every policy's responses, in `specs`' order. With `pool` (rluf.parallel.Workers), the model folders are
    also queued to its workers from the last one back while this process samples from the first one on; a
    queued policy that no worker has taken yet when this process reaches it is taken back (cancelled). Two
    one-thread processes sample a small model about 1.6x faster than one two-thread process
    (benchmarks/README.md, `levers.py`). A worker still busy with another stage holds at most the next one or
    two queued policies (the executor hands them over in advance) and samples them once it is free."""
    queued = {}
    if pool is not None:
        queued = {name: pool.submit(policy_responses, name, spec, prompts, cfg)
                  for name, spec in reversed(list(specs.items())) if isinstance(spec, Path) and spec.is_dir()}
    out = {}
    for name, spec in specs.items():
        if name in queued and not queued[name].cancel():
            continue  # a worker has it
        on_event(f"responses of {name}")
        out[name] = policy_responses(name, spec, prompts, cfg)
    for name, future in queued.items():
        if name not in out:
            on_event(f"responses of {name} (sampled in a worker)")
            out[name] = future.result()
    return {name: out[name] for name in specs}


def build_table(prompts: list[EvalPrompt], responses: dict[str, list[list[str]]]) -> pd.DataFrame:
    """One row per (policy, prompt, sample): the long table every score is attached to."""
    rows = []
    for name, per_prompt in responses.items():
        for m, (p, rs) in enumerate(zip(prompts, per_prompt, strict=True)):
            for k, r in enumerate(rs):
                rows.append({"policy": name, "prompt_id": p.prompt_id, "prompt_index": m, "sample": k,
                             "response": r})
    return pd.DataFrame(rows)


def objective_scores(scorer: Any, objective: str, contexts: list[Chat], responses: list[str],
                     precision: str = "auto") -> np.ndarray:
    """P[Love] at the natural rate for `love`, raw rewards for the others; `scorer` may be a reward-model folder
    (loaded here on the CPU in `precision`: a worker process scores from the path)."""
    if isinstance(scorer, str | Path):
        scorer = _load_scorer(scorer, objective, "cpu", precision)
    vals = scorer.prob(contexts, responses) if objective == "love" else scorer.score(contexts, responses)
    return np.asarray(vals, dtype=float)


def score_table(
    table: pd.DataFrame, prompts: list[EvalPrompt], scorers: dict[str, Any], judges: Any, world: Any,
    on_event: Event, elsewhere: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Adds love / helpfulness / safety scores, judge verdicts, lengths and (with a world) the truth.
    `elsewhere`: objective -> a Future of its scores, computed in a worker meanwhile."""
    from rluf.hacking import words
    from rluf.judges import make_items

    elsewhere = elsewhere or {}
    contexts = [prompts[i].context for i in table["prompt_index"]]
    responses = table["response"].tolist()
    for obj in OBJECTIVES:
        if obj in elsewhere:
            table[obj] = np.nan  # its place among the columns; filled below
        elif scorers.get(obj) is not None:
            on_event(f"scoring {obj} on {len(responses)} responses")
            table[obj] = objective_scores(scorers[obj], obj, contexts, responses)
    for obj, future in elsewhere.items():
        table[obj] = future.result()
    on_event("judging")
    metas = [prompts[i].metadata for i in table["prompt_index"]]
    result = judges.judge(make_items(contexts, responses, metas))
    table["judge_pass"] = result.passed
    for name, verdicts in result.verdicts.items():
        table[f"judge/{name}"] = [v.passed for v in verdicts]
    table["judge_reasons"] = ["; ".join(result.reasons(i)) for i in range(len(table))]
    table["n_words"] = [len(words(r)) for r in responses]
    if world is not None:
        on_event("ground truth from the simulated world")
        users = [prompts[i].metadata.get("user_id") for i in table["prompt_index"]]
        table["true_p_love"] = world.p_love(users, contexts, responses)
        table["true_helpfulness"] = world.helpfulness(contexts, responses)
        table["true_safe"] = world.safe(contexts, responses)
        table["true_signoff"] = world.signoff_hack(responses)
    return table


def score_sharded(
    table: pd.DataFrame, prompts: list[EvalPrompt], scorers: dict[str, Any], judges: Any, world: Any,
    on_event: Event,
) -> pd.DataFrame:
    """`score_table` with each process of a distributed launch scoring its contiguous share of the rows (one
    process: all of them), gathered to every process in row order. Every score depends on its own row only, so
    the table is the one process's (to float rounding: the reward models' batches are padded differently)."""
    from rluf.policy import process_state, shard

    state = process_state()
    if state.num_processes == 1:
        return score_table(table, prompts, scorers, judges, world, on_event)
    from accelerate.utils import gather_object

    rows = shard(np.arange(len(table)), state.process_index, state.num_processes)
    mine = table.iloc[rows].reset_index(drop=True)
    if len(mine):  # more processes than rows leaves some with none
        mine = score_table(mine, prompts, scorers, judges, world, on_event)
    parts = gather_object([mine])  # one frame per process, rank order
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


def per_prompt_matrix(table: pd.DataFrame, column: str, names: list[str], n_prompts: int) -> np.ndarray:
    """(P, M) mean of `column` per policy and prompt (samples of one prompt averaged)."""
    g = table.groupby(["policy", "prompt_index"])[column].mean()
    return np.stack([g.loc[name].reindex(range(n_prompts)).to_numpy(dtype=float) for name in names])


# -- summary ----------------------------------------------------------------------------------------------
def policy_summary(
    table: pd.DataFrame, name: str, prompts: list[EvalPrompt], world: Any, baseline_monitor: dict | None,
) -> dict[str, Any]:
    """Judge pass rates, monitor statistics, hacking flags and (with a world) the true metrics of one policy."""
    rows = table[table["policy"] == name]
    responses = rows["response"].tolist()
    judge_cols = [c for c in rows.columns if c.startswith("judge/")]
    out: dict[str, Any] = {
        "n_responses": len(rows),
        "judges": {c.split("/", 1)[1]: float(rows[c].mean()) for c in judge_cols}
        | {"all": float(rows["judge_pass"].mean())},
        "monitor": hack_metrics(responses),
    }
    out["flags"] = flag_hacking(out["monitor"], baseline_monitor) if baseline_monitor is not None else []
    if world is not None:
        items = [{**prompts[i].metadata, "prompt": prompts[i].context} for i in rows["prompt_index"]]
        out["true"] = world.true_metrics(items, responses)
    return out


def objective_correlations(table: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """Love vs helpfulness and love vs safety over responses: pooled over policies and per policy."""
    out: dict[str, Any] = {}
    if "love" not in table:
        return out
    for other in ("helpfulness", "safety"):
        if other not in table:
            continue
        out[f"love_vs_{other}"] = {
            "pooled": correlation(table["love"], table[other]),
            "per_policy": {n: correlation(table.loc[table["policy"] == n, "love"],
                                          table.loc[table["policy"] == n, other]) for n in names},
        }
    if "true_p_love" in table:
        out["love_vs_true_p_love"] = {"pooled": correlation(table["love"], table["true_p_love"])}
    return out


def summarize(
    table: pd.DataFrame, prompts: list[EvalPrompt], names: list[str], baseline: str, cfg: EvaluateConfig,
    world: Any,
) -> dict[str, Any]:
    """Rankings per objective with bootstrap CIs over prompts, paired differences, flags, correlations."""
    M, b = len(prompts), names.index(baseline)
    columns = [o for o in OBJECTIVES if o in table] + ["judge_pass"]
    if world is not None:
        columns += ["true_p_love", "true_helpfulness"]
    rankings, vs_baseline = {}, {}
    for col in columns:
        S = per_prompt_matrix(table, col, names, M)  # (P, M)
        rankings[col] = rank_policies(S, names, reps=cfg.bootstrap_reps, alpha=cfg.alpha, seed=cfg.seed)
        vs_baseline[col] = paired_differences(S, names, b, reps=cfg.bootstrap_reps, alpha=cfg.alpha, seed=cfg.seed)
    rank_by = cfg.rank_by if cfg.rank_by in table else next((o for o in OBJECTIVES if o in table), "judge_pass")
    base = policy_summary(table, baseline, prompts, world, None)
    policies = {n: base if n == baseline else policy_summary(table, n, prompts, world, base["monitor"]) for n in names}
    for n in names:
        policies[n]["scores"] = {col: next(r for r in rankings[col] if r["policy"] == n) for col in columns}
    return {
        "n_prompts": M, "policies_evaluated": names, "baseline": baseline, "rank_by": rank_by,
        "ranking": rankings[rank_by], "rankings": rankings, "vs_baseline": vs_baseline, "policies": policies,
        "correlations": objective_correlations(table, names),
    }


def write_outputs(out_dir: Path, table: pd.DataFrame, prompts: list[EvalPrompt], summary: dict) -> None:
    """evaluate.json (summary) and responses.parquet (one row per response, with every score)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    t = table.copy()
    t.insert(2, "prompt", [prompts[i].context for i in t["prompt_index"]])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), sink)
    atomic_write_bytes(out_dir / "responses.parquet", sink.getvalue().to_pybytes())
    write_json(out_dir / "evaluate.json", summary)


# -- the stage --------------------------------------------------------------------------------------------
def evaluate(
    policies: Mapping[str, PolicySpec],
    out_dir: str | Path,
    prompts: str | Path | list | None = None,
    love_model: Any = None,
    help_model: Any = None,
    safety_model: Any = None,
    judges: Any = None,
    world: Any = None,
    *,
    config: EvaluateConfig | None = None,
    on_event: Event | None = None,
    pool: Any = None,
) -> dict[str, Any]:
    """Evaluate candidate policies offline on one fixed prompt set and write evaluate.json + responses.parquet.

    policies: name -> HF model folder, responses file (prompt_id, response) or policy object.
    love_model / help_model / safety_model: reward-model folders or scorer objects (default: the config's
    `models`); P[Love] is read at the natural rate (`prob`), the others as raw rewards (`score`).
    judges: a MixtureOfJudges, or judge configs (default: the config's `judges`).
    world: a simulated World (rluf.sim) for ground truth and its fixed evaluation sample.
    pool: an open rluf.parallel.Workers whose workers, once free, sample some of the model folders' answers
    (`all_responses`) and score with the safety model when it is a folder; the answers and scores are the same
    wherever they are computed.
    Returns the summary written to evaluate.json.
    """
    from rluf.judges import MixtureOfJudges, build_judges

    cfg = config or EvaluateConfig()
    on_event = on_event or (lambda msg: log.info("evaluate: %s", msg))
    specs = check_policies(policies)
    names = list(specs)
    baseline = cfg.baseline or names[0]
    if baseline not in specs:
        raise ConfigError(f"baseline = {baseline!r} is not one of the policies {names}; set baseline to one of them")
    prompt_set = resolve_prompts(prompts, cfg, world)
    given = {"love": love_model, "helpfulness": help_model, "safety": safety_model}
    model_specs = {o: given[o] if given[o] is not None else getattr(cfg.models, o) for o in OBJECTIVES}
    scorers = {o: _load_scorer(model_specs[o], o, cfg.device, cfg.models.precision) for o in OBJECTIVES}
    if scorers["love"] is not None and not isinstance(scorers["love"], LoveModel):
        raise ConfigError("love_model must give natural-rate probabilities (a `prob` method, rluf.rewards.Scorer)")
    if not isinstance(judges, MixtureOfJudges):
        judges = build_judges(cfg.judges if judges is None else judges, {k: v for k, v in scorers.items() if v})

    table = build_table(prompt_set, all_responses(specs, prompt_set, cfg, on_event, pool))
    if table.empty:
        raise DataError("no responses to evaluate")
    from rluf.policy import process_state
    from rluf.utils import select_device

    safety_path = model_specs["safety"]
    if pool is not None and isinstance(safety_path, str | Path) and select_device(cfg.device) == "cpu" \
            and process_state().num_processes == 1:
        # the safety model reads the most tokens: a worker scores with it while this process scores the others
        on_event(f"scoring safety on {len(table)} responses (in a worker)")
        contexts = [prompt_set[i].context for i in table["prompt_index"]]
        elsewhere = {"safety": pool.submit(objective_scores, str(safety_path), "safety", contexts,
                                           table["response"].tolist(), cfg.models.precision)}
        table = score_table(table, prompt_set, scorers, judges, world, on_event, elsewhere)
    else:
        table = score_sharded(table, prompt_set, scorers, judges, world, on_event)
    summary = summarize(table, prompt_set, names, baseline, cfg, world)
    summary["config"] = cfg.model_dump(mode="json")
    if process_state().is_main_process:  # under a distributed launch every process holds the whole table
        write_outputs(Path(out_dir), table, prompt_set, summary)
    return summary
