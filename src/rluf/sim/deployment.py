"""`rluf simulate` and `simulate_ab`: build (or load) a policy, pool its responses, deploy, write the run folder.

setup   World(cfg); baseline policy trained into DIR/policy (or --policy loaded)
run     pool K responses per train item; deploy to the population; sample reactions
write   logs/ (canonical schema), truth/, pairs/, prompts.parquet, world.json, simulate.json
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rluf.errors import ConfigError
from rluf.policy import Policy
from rluf.schema import CHAT
from rluf.sim.baseline import generate_pool, train_baseline
from rluf.sim.config import BehaviourMix, WorldConfig, quick_config
from rluf.sim.evaluation import PolicyEvaluation
from rluf.sim.stats import pool_mix, signal_summary
from rluf.sim.traffic import Arm, deploy
from rluf.sim.world import World
from rluf.utils import peak_rss_mb, write_json

log = logging.getLogger(__name__)
StageProgress = Callable[[str, int, int, dict], None]  # (stage, done, total, info)

# A wide behaviour mix for expert pairs, so that pairs differ in every dimension the truth scores.
PAIR_MIX = BehaviourMix(
    warm=0.35,
    cold=0.3,
    correct=0.5,
    on_topic=0.5,
    second_line=0.3,
    signoff=0.25,
    neutral_closer=0.3,
    unsafe_compliance=0.5,
    false_refusal=0.3,
    other_refusal=0.1,
)


def _stage(progress: StageProgress | None, stage: str):
    if progress is None:
        return None
    return lambda done, total, info: progress(stage, done, total, info)


def load_policy(policy: Policy | str | Path, device: str = "auto") -> Policy:
    if isinstance(policy, Policy):
        return policy
    path = Path(policy)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"policy folder {path} is not a Hugging Face model folder (no config.json); "
            "give the policy/ folder written by `rluf simulate` or `rluf optimize`"
        )
    return Policy.from_pretrained(path, device=device)


def build_arm(
    world: World, name: str, policy: Policy, seed: int = 0, progress: StageProgress | None = None
) -> Arm:
    """Pool K responses from `policy` for every train item and precompute their truth."""
    item_ids = np.flatnonzero(world.item_split == "train")
    responses = generate_pool(world, policy, item_ids, seed=seed, progress=_stage(progress, f"pool {name}"))
    return Arm(name, item_ids, responses, world.response_table(item_ids, responses))


def pooled_arm(world: World, sim_dir: str | Path) -> Arm:
    """The pool an earlier simulation of the same world wrote (sim_dir/truth/pool.parquet), first K answers per
    item: a policy already deployed there (the baseline, as an A/B test's control) needs no new generation.

    The pool must come from the same content and sampling settings (its world.json); only
    pool.answers_per_message may be larger, since any K of its i.i.d. answers are a pool of K.
    """
    sim_dir = Path(sim_dir)
    path, meta = sim_dir / "truth" / "pool.parquet", sim_dir / "world.json"
    if not path.is_file() or not meta.is_file():
        raise ConfigError(f"{sim_dir} holds no pooled responses "
                          "(truth/pool.parquet and world.json from `rluf simulate`)")
    theirs = WorldConfig.model_validate_json(meta.read_text())
    ours = world.cfg
    for field, a, b in (("seed", theirs.seed, ours.seed), ("content", theirs.content, ours.content),
                        ("population.tastes", theirs.population.tastes, ours.population.tastes)):
        if a != b:  # these make the items (World._build_items)
            raise ConfigError(f"{meta}: `{field}` differs from this world's; its pool answers other messages")
    strip = {"answers_per_message", "batch_size"}
    if theirs.pool.model_dump(exclude=strip) != ours.pool.model_dump(exclude=strip):
        raise ConfigError(f"{meta}: pool sampling {theirs.pool.model_dump(exclude=strip)} differs from this "
                          f"world's {ours.pool.model_dump(exclude=strip)}")
    K = ours.pool.answers_per_message
    if theirs.pool.answers_per_message < K:
        raise ConfigError(f"{meta}: pool.answers_per_message = {theirs.pool.answers_per_message}, this world "
                          f"needs {K}")
    pool = pq.read_table(path, columns=["arm", "item_id", "k", "text"]).to_pandas()
    if pool["arm"].nunique() != 1:
        raise ConfigError(f"{path} holds the pools of several arms {sorted(pool['arm'].unique())}; give one policy's")
    pool = pool[pool["k"] < K].sort_values(["item_id", "k"])
    item_ids = np.flatnonzero(world.item_split == "train")
    if not np.array_equal(pool["item_id"].to_numpy()[::K], item_ids):
        raise ConfigError(f"{path}: its items are not this world's training items")
    responses = pool["text"].to_numpy().reshape(len(item_ids), K).tolist()
    return Arm(str(pool["arm"].iloc[0]), item_ids, responses, world.response_table(item_ids, responses))


def template_arm(
    world: World, name: str = "template", mix: BehaviourMix | None = None, k: int | None = None, seed: int = 0
) -> Arm:
    """An arm whose pool comes from the template sampler (no LM): for tests, benchmarks and oracles."""
    rng = np.random.default_rng([world.cfg.seed, seed, 41])
    item_ids = np.flatnonzero(world.item_split == "train")
    k = k or world.cfg.pool.answers_per_message
    responses = [[world.sample_response(rng, world.item_prompt[i], mix) for _ in range(k)] for i in item_ids]
    return Arm(name, item_ids, responses, world.response_table(item_ids, responses))


def hash_split(user_ids: list[str], n_arms: int, salt: str = "rluf-ab") -> np.ndarray:
    """Stable arm of each user: blake2b(salt:user_id) mod n_arms (the gateway uses the same rule)."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{salt}:{u}".encode(), digest_size=8).digest(), "big") % n_arms
            for u in user_ids
        ],
        dtype=np.int64,
    )


def _chat_col(chats: list[list[dict]]) -> pa.Array:
    return pa.array([[{"role": m["role"], "content": m["content"]} for m in c] for c in chats], CHAT)


def expert_pairs(world: World, objective: str, n: int, seed: int = 0) -> pa.Table:
    """Expert preference pairs (TRL preference format) from the true helpfulness or safety + label noise."""
    rng = np.random.default_rng([world.cfg.seed, seed, 31 if objective == "safety" else 37])
    rows: dict[str, list] = {
        k: []
        for k in ("prompt", "chosen", "rejected", "family", "chosen_score", "rejected_score", "label_flipped")
    }
    safe_mix = PAIR_MIX.model_copy(update={"unsafe_compliance": 0.0})
    unsafe_mix = PAIR_MIX.model_copy(update={"unsafe_compliance": 1.0})
    family = None if objective == "helpfulness" else "unsafe"
    pool = world.prompts(3 * n + 10, "train", seed=seed + 101, family=family)
    for it in pool:
        if len(rows["prompt"]) >= n:
            break
        p = world.item_prompt[it["item_id"]]
        if objective == "safety":
            a, b = world.sample_response(rng, p, safe_mix), world.sample_response(rng, p, unsafe_mix)
            sa, sb = world.safe([it["prompt"]] * 2, [a, b]).astype(float)
        else:
            a, b = world.sample_response(rng, p, PAIR_MIX), world.sample_response(rng, p, PAIR_MIX)
            sa, sb = world.helpfulness([it["prompt"]] * 2, [a, b])
        if abs(sa - sb) < 0.02:
            continue
        (c, sc), (r, sr) = sorted([(a, sa), (b, sb)], key=lambda x: -x[1])
        flip = bool(rng.random() < world.cfg.pairs.label_noise)
        if flip:
            (c, sc), (r, sr) = (r, sr), (c, sc)
        rows["prompt"].append(it["prompt"])
        rows["chosen"].append([{"role": "assistant", "content": c}])
        rows["rejected"].append([{"role": "assistant", "content": r}])
        rows["family"].append(it["family"])
        rows["chosen_score"].append(float(sc))
        rows["rejected_score"].append(float(sr))
        rows["label_flipped"].append(flip)
    return pa.table(
        {
            "prompt": _chat_col(rows["prompt"]),
            "chosen": _chat_col(rows["chosen"]),
            "rejected": _chat_col(rows["rejected"]),
            "family": pa.array(rows["family"], pa.string()),
            "chosen_score": pa.array(rows["chosen_score"], pa.float64()),
            "rejected_score": pa.array(rows["rejected_score"], pa.float64()),
            "label_flipped": pa.array(rows["label_flipped"], pa.bool_()),
        }
    )


def write_expert_pairs(world: World, out_dir: Path) -> None:
    """`out_dir/helpfulness.parquet` and `out_dir/safety.parquet`: the world's expert pairs (config `pairs`)."""
    _pq(expert_pairs(world, "helpfulness", world.cfg.pairs.n_helpfulness), out_dir / "helpfulness.parquet")
    _pq(expert_pairs(world, "safety", world.cfg.pairs.n_safety), out_dir / "safety.parquet")


def prompts_table(world: World) -> pa.Table:
    """Train prompts and the fixed eval set, with family, reference and must_refuse."""
    train = world.prompts(world.cfg.content.n_train_prompts, "train", seed=202)
    items = [dict(it, split="train") for it in train] + [dict(it, split="eval") for it in world.eval_set()]
    return pa.table(
        {
            "prompt": _chat_col([it["prompt"] for it in items]),
            "family": pa.array([it["family"] for it in items], pa.string()),
            "reference": pa.array([it["reference"] for it in items], pa.string()),
            "must_refuse": pa.array([it["must_refuse"] for it in items], pa.bool_()),
            "user_id": pa.array([it["user_id"] for it in items], pa.string()),
            "segment": pa.array([it["segment"] for it in items], pa.string()),
            "split": pa.array([it["split"] for it in items], pa.string()),
        }
    )


def _pool_table(arms: list[Arm]) -> pa.Table:
    cols: dict[str, list] = {"arm": [], "item_id": [], "k": [], "text": []}
    for a in arms:
        K = len(a.responses[0])
        cols["arm"] += [a.name] * (len(a.item_ids) * K)
        cols["item_id"] += np.repeat(a.item_ids, K).tolist()
        cols["k"] += np.tile(np.arange(K), len(a.item_ids)).tolist()
        cols["text"] += [r for rs in a.responses for r in rs]
    extra = {c: np.concatenate([a.table[c].ravel() for a in arms]) for c in arms[0].table}
    return pa.table({**cols, **extra})


def _write(out: Path, tables: dict[str, pa.Table], arms: list[Arm]) -> None:
    for name in ("messages", "reactions", "users"):
        _pq(tables[name], out / "logs" / f"{name}.parquet")
    _pq(tables["truth_messages"], out / "truth" / "messages.parquet")
    _pq(tables["truth_users"], out / "truth" / "users.parquet")
    tu = tables["truth_users"]
    adv = (
        tu.filter(tu["is_adversarial"]).select(["user_id", "adversarial"]).rename_columns(["user_id", "kind"])
    )
    _pq(adv, out / "truth" / "adversarial.parquet")
    _pq(_pool_table(arms), out / "truth" / "pool.parquet")


def _pq(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def _run(
    world: World, out: Path, arms: list[Arm], user_arm: np.ndarray, progress: StageProgress | None
) -> tuple[dict, dict[str, pa.Table], float]:
    t0 = time.perf_counter()
    tables = deploy(world, arms, user_arm, world.deploy_rng())
    deploy_s = time.perf_counter() - t0
    if progress:
        progress("deploy", 1, 1, {"assistant_messages": tables["truth_messages"].num_rows})
    _write(out, tables, arms)
    write_json(out / "world.json", world.cfg.model_dump(mode="json"))
    return signal_summary(world, tables), tables, deploy_s


def simulate(
    cfg: WorldConfig,
    out_dir: str | Path,
    policy_path: str | Path | None = None,
    quick: bool = False,
    progress: StageProgress | None = None,
    name: str | None = None,
    pairs: bool = True,
) -> dict:
    """Run the simulated deployment of one policy (the baseline by default) and write the run folder.
    `name`: the policy's arm in the logs (default: "baseline", or the policy folder's name); `pairs`: write the
    expert pairs (`pairs/`; False when the caller has them already)."""
    if quick:
        cfg = quick_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = World(cfg)
    if policy_path is None:
        policy = train_baseline(world, out / "policy", progress=_stage(progress, "baseline"))
        name = name or "baseline"
    else:
        policy, name = load_policy(policy_path), name or Path(policy_path).name or "policy"
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    arm = build_arm(world, name, policy, seed=cfg.seed, progress=progress)
    pool_s = time.perf_counter() - t1
    summary, tables, deploy_s = _run(world, out, [arm], np.zeros(len(world.user_ids), np.int64), progress)
    if pairs:
        write_expert_pairs(world, out / "pairs")
    _pq(prompts_table(world), out / "prompts.parquet")
    n_asst = tables["truth_messages"].num_rows
    summary.update(
        policy=dict(
            name=name,
            path=str(out / "policy") if policy_path is None else str(policy_path),
            pool=pool_mix(arm),
            eval=PolicyEvaluation(world, seed=cfg.seed).metrics(policy),
        ),
        love_intercept=world.love_intercept,
        timing=dict(
            baseline_build_s=build_s if policy_path is None else None,
            pool_s=pool_s,
            deploy_s=deploy_s,
            total_s=time.perf_counter() - t0,
            deploy_msgs_per_s=n_asst / max(deploy_s, 1e-9),
            pooled_msgs_per_s=n_asst / max(deploy_s + pool_s, 1e-9),
            peak_rss_mb=peak_rss_mb(),
        ),
        quick=quick,
        seed=cfg.seed,
    )
    write_json(out / "simulate.json", summary)
    return summary


def simulate_ab(
    cfg: WorldConfig,
    control_policy,
    treatment_policy,
    out_dir: str | Path,
    arms: tuple[str, str] = ("control", "treatment"),
    progress: StageProgress | None = None,
    control_pool: str | Path | None = None,
) -> dict:
    """Deploy two policies to hash-split users (model_id = arm name); logs in the canonical schema.

    `control_pool`: a `rluf simulate` folder of the same world that deployed the control policy; its pooled
    answers are reused (`pooled_arm`) instead of generating the control's pool again.
    """
    if len(arms) != 2 or arms[0] == arms[1]:
        raise ConfigError(f"simulate_ab needs two distinct arm names, got {arms!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = World(cfg)
    built = [
        build_arm(world, name, load_policy(p), seed=cfg.seed + i, progress=progress)
        if i or control_pool is None else replace(pooled_arm(world, control_pool), name=name)
        for i, (name, p) in enumerate(zip(arms, (control_policy, treatment_policy), strict=True))
    ]
    user_arm = hash_split(world.user_ids, 2)
    summary, tables, _ = _run(world, out, built, user_arm, progress)
    summary["arms"] = {a.name: dict(pool=pool_mix(a)) for a in built}
    write_json(out / "simulate.json", summary)
    return summary
