"""The adversarial filters on a grid of simulated worlds, with the same default filter settings in every cell.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adversarial.py [--users 12000] [--kinds random_lover,...]
        [--shares 0.01,0.03,0.08,0.15] [--rates 0.0002,0.001,0.005] [--auroc] [--write | --out FILE]

A cell is (adversarial share of users, natural Love rate, adversary kind): a world of `--users` accounts
(`rluf.sim`, the default world with those three knobs changed; one kind of adversary per cell) deployed for the
default 42 days with the world's template sampler as the policy (`rluf.sim.adversaries.template_logs`: no
neural policy, seconds per world). `rluf curate`'s filters run with their defaults (`FiltersSection()`) on the
logs. Per cell:
  precision, recall            of all filters together against the world's adversarial accounts; recall over
                               the adversarial accounts that reacted at all (`recall_all`: over every one)
  per_rule                     users flagged and precision of each rule
  adversarial_positive_share   of the Love positives that survive filtering (unflagged users' assistant
                               messages with a surviving Love, the positives curate labels), the share from
                               adversarial accounts
  curated_natural_rate         those positives / the unflagged users' assistant messages; `true_natural_rate`
                               the mean true P[Love] of the normal users' messages; `raw_rate` before filtering
  normal_flagged_rate          flagged normal users / normal users with an assistant message;
                               `keen_flagged_rate` the same among the keenest 5% (highest mean true P[Love])
With `--auroc`, the cells of AUROC_CELLS (and the same worlds without adversaries) also go through `rluf curate`
(target rate 0.3, as in run.yaml) and P[Love] training (the tiny preset, 4 epochs: minutes on a CPU); the
result is its expected AUROC against the true p_love on the test split (`expected.model.auroc` of the reward
report; Bayes: the true p_love's own), merged into the results file under `auroc`.
Prints the summary; with --write, writes benchmarks/results/adversarial.json (--out: another file).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rluf.signals.config import FiltersSection
from rluf.signals.engine import open_logs
from rluf.signals.filters import apply_filters
from rluf.sim.adversaries import template_logs
from rluf.sim.config import WorldConfig
from rluf.sim.world import World

RESULTS = Path(__file__).parent / "results" / "adversarial.json"
KINDS = ("random_lover", "targeted_lover", "slow_spammer", "sybil", "burst")
SHARES = (0.01, 0.03, 0.08, 0.15)
RATES = (0.0002, 0.001, 0.005)
TARGET_POSITIVE_SHARE = 0.05
TARGET_NORMAL_FLAGGED = 0.01


def world_config(share: float, rate: float, kind: str | None, users: int, seed: int) -> WorldConfig:
    """The default world with `share` adversarial accounts, all of `kind` (none: share 0), Love rate `rate`."""
    return WorldConfig.model_validate({
        "seed": seed,
        "population": {"n_users": users, "adversarial_share": share if kind else 0.0},
        "signals": {"natural_love_rate": rate},
        "adversaries": {"mix": {kind: 1.0} if kind else None},
        "pool": {"answers_per_message": 4},
    })


def write_world(cfg: WorldConfig, folder: Path) -> dict[str, pa.Table]:
    """Simulate `cfg` with the template policy; write logs/ and truth/ into `folder`; return the tables."""
    tables = template_logs(World(cfg))
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    (folder / "truth").mkdir(parents=True, exist_ok=True)
    for name in ("messages", "reactions", "users"):
        pq.write_table(tables[name], folder / "logs" / f"{name}.parquet")
    tu = tables["truth_users"]
    adv = tu.filter(tu["is_adversarial"])
    pq.write_table(pa.table({"user_id": adv["user_id"], "kind": adv["adversarial"]}),
                   folder / "truth" / "adversarial.parquet")
    pq.write_table(tables["truth_messages"], folder / "truth" / "messages.parquet")
    return tables


def score_filters(folder: Path, tables: dict[str, pa.Table], filters: FiltersSection) -> dict:
    """The cell's figures (module docstring) for the logs in `folder`."""
    logs = open_logs(folder / "logs")
    m = logs.messages
    t0 = time.perf_counter()
    fr = apply_filters(logs, m.filter(m.role == "assistant"), filters)
    seconds = time.perf_counter() - t0
    kept = logs.con.to_pyarrow(fr.reactions.filter(fr.reactions.type == "love").select("message_id", "user_id"))
    bad = set(fr.bad_users)
    tm, tu = tables["truth_messages"], tables["truth_users"]
    kind_of = dict(zip(tm["user_id"].to_pylist(), tm["adversarial"].to_pylist(), strict=True))
    active = set(kind_of)
    reacted = set(tables["reactions"]["user_id"].to_pylist())
    adv = {u for u, k in kind_of.items() if k}
    adv_all = set(tu.filter(tu["is_adversarial"])["user_id"].to_pylist())
    normal = active - adv
    tp = len(bad & adv)
    pos_users = [u for u in kept["user_id"].to_pylist() if u not in bad]
    pos_msgs = {mid for mid, u in zip(kept["message_id"].to_pylist(), kept["user_id"].to_pylist(), strict=True)
                if u not in bad}
    adv_pos = sum(u in adv for u in pos_users)
    asst_unflagged = sum(u not in bad for u in tm["user_id"].to_pylist())
    p_love = tm["p_love"].to_numpy()
    is_normal = pc.equal(tm["adversarial"], "").to_numpy(zero_copy_only=False)
    users_arr = np.array(tm["user_id"].to_pylist())
    # keenest 5% of normal users: highest mean true P[Love] over their messages
    order = np.argsort(users_arr[is_normal], kind="stable")
    u_sorted, p_sorted = users_arr[is_normal][order], p_love[is_normal][order]
    uniq, start = np.unique(u_sorted, return_index=True)
    mean_p = np.add.reduceat(p_sorted, start) / np.diff(np.r_[start, len(u_sorted)])
    keen = set(uniq[mean_p >= np.quantile(mean_p, 0.95)])
    love_all = tables["reactions"].filter(pc.equal(tables["reactions"]["type"], "love"))
    per_rule = {}
    for rule, users in fr.flagged.items():
        s = set(users)
        per_rule[rule] = {"flagged": len(s), "precision": _ratio(len(s & adv), len(s))}
    return {
        "adversarial_accounts": len(adv_all), "active_adversarial_accounts": len(adv),
        "flagged": len(bad), "precision": _ratio(tp, len(bad)),
        "recall": _ratio(len(bad & adv & reacted), len(adv & reacted)), "recall_all": _ratio(tp, len(adv_all)),
        "per_rule": per_rule, "filter_report": fr.report,
        "positives": len(pos_msgs), "adversarial_positives": adv_pos,
        "adversarial_positive_share": _ratio(adv_pos, len(pos_users)),
        "curated_natural_rate": _ratio(len(pos_msgs), asst_unflagged),
        "true_natural_rate": float(p_love[is_normal].mean()),
        "raw_rate": _ratio(len(set(love_all["message_id"].to_pylist())), len(tm)),
        "normal_users": len(normal), "normal_flagged": len(bad & normal),
        "normal_flagged_rate": _ratio(len(bad & normal), len(normal)),
        "keen_flagged_rate": _ratio(len(bad & keen), len(keen)),
        "filter_seconds": round(seconds, 2),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def run_cell(share: float, rate: float, kind: str | None, users: int, seed: int, work: Path,
             filters: FiltersSection) -> dict:
    t0 = time.perf_counter()
    folder = work / f"{kind or 'clean'}-{share:g}-{rate:g}"
    tables = write_world(world_config(share, rate, kind, users, seed), folder)
    out = {"adversarial_share": share if kind else 0.0, "natural_rate": rate, "kind": kind or "none",
           **score_filters(folder, tables, filters)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def summarize(cells: list[dict]) -> dict:
    upto8 = [c for c in cells if c["kind"] != "none" and c["adversarial_share"] <= 0.08]
    share = [c["adversarial_positive_share"] or 0.0 for c in upto8]
    normal = [c["normal_flagged_rate"] or 0.0 for c in cells]
    fails = [f"{c['kind']} share {c['adversarial_share']:g} rate {c['natural_rate']:g}: "
             f"{c['adversarial_positive_share']}" for c in upto8
             if (c["adversarial_positive_share"] or 0.0) > TARGET_POSITIVE_SHARE]
    at15 = [c for c in cells if c["adversarial_share"] == 0.15]
    return {
        "worst_adversarial_positive_share_upto_8pct": max(share) if share else None,
        "cells_upto_8pct_meeting_positive_share_target": sum(s <= TARGET_POSITIVE_SHARE for s in share),
        "cells_upto_8pct": len(upto8),
        "cells_over_positive_share_target_upto_8pct": fails,
        "worst_adversarial_positive_share_15pct": max((c["adversarial_positive_share"] or 0.0) for c in at15)
        if at15 else None,
        "worst_normal_flagged_rate": max(normal) if normal else None,
        "cells_over_normal_flagged_target": sum(x > TARGET_NORMAL_FLAGGED for x in normal),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=12_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--shares", default=",".join(map(str, SHARES)))
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    ap.add_argument("--out", type=Path, default=None, help="write the results to this file instead")
    ap.add_argument("--auroc", action="store_true", help="only the P[Love] AUROC cells, merged into the file")
    args = ap.parse_args()
    args.out = args.out or (RESULTS if args.write else None)
    logging.basicConfig(level=logging.WARNING)
    if args.auroc:
        result = json.loads(args.out.read_text()) if args.out is not None and args.out.is_file() else {}
        with tempfile.TemporaryDirectory(prefix="rluf-adv-auroc-") as tmp:
            result["auroc"] = auroc_cells(Path(tmp), args.users, args.seed)
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["auroc"], indent=1))
        return
    filters = FiltersSection()
    cells = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rluf-adv-") as tmp:
        work = Path(tmp)
        rates = [float(x) for x in args.rates.split(",")]
        for rate in rates:
            cells.append(run_cell(0.0, rate, None, args.users, args.seed, work, filters))
            _progress(cells[-1])
            for share in [float(x) for x in args.shares.split(",")]:
                for kind in args.kinds.split(","):
                    cells.append(run_cell(share, rate, kind, args.users, args.seed, work, filters))
                    _progress(cells[-1])
    result = {
        "setup": {"users": args.users, "seed": args.seed, "days": WorldConfig().time.horizon_days,
                  "policy": "template sampler (baseline behaviour mix), pool answers_per_message = 4",
                  "filters": filters.model_dump(mode="json"),
                  "targets": {"adversarial_positive_share_upto_8pct": TARGET_POSITIVE_SHARE,
                              "normal_flagged_rate": TARGET_NORMAL_FLAGGED}},
        "summary": summarize(cells),
        "cells": cells,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


AUROC_CELLS = ((0.08, 0.005, "random_lover"), (0.08, 0.005, "targeted_lover"), (0.15, 0.005, "random_lover"))


def auroc_cells(work: Path, users: int, seed: int) -> list[dict]:
    """P[Love]'s expected AUROC against the true p_love, each AUROC_CELLS world against the clean world."""
    from rluf.rewards.config import RewardConfig
    from rluf.rewards.love import train_love
    from rluf.signals.curate import curate

    cfg = RewardConfig.model_validate({"objective": "love", "model": {"backbone": "tiny"},
                                       "train": {"epochs": 4.0}})
    out: list[dict] = []
    clean: dict[float, float] = {}
    rates = sorted({c[1] for c in AUROC_CELLS})
    for share, rate, kind in [(0.0, r, None) for r in rates] + list(AUROC_CELLS):
        t0 = time.perf_counter()
        folder = work / f"auroc-{kind or 'clean'}-{share:g}-{rate:g}"
        write_world(world_config(share, rate, kind, users, seed), folder)
        manifest = curate(folder / "logs", folder / "curated", {"sample": {"target_rate": 0.3}},
                          truth_dir=folder / "truth")
        rep = train_love(folder / "curated", folder / "love", cfg, truth=folder / "truth")
        row = {"adversarial_share": share, "natural_rate": rate, "kind": kind or "none",
               "auroc_vs_true_p_love": rep["expected"]["model"]["auroc"],
               "bayes_auroc": rep["expected"]["bayes"]["auroc"], "test_auroc": rep["test"]["auroc"],
               "curated_natural_rate": manifest["natural_rate"],
               "train_positives": manifest["counts"]["split"]["train"]["positives"],
               "seconds": round(time.perf_counter() - t0, 1)}
        if kind is None:
            clean[rate] = row["auroc_vs_true_p_love"]
        else:
            row["clean_auroc_vs_true_p_love"] = clean[rate]
            row["auroc_gap_to_clean"] = round(clean[rate] - row["auroc_vs_true_p_love"], 4)
        out.append(row)
        print(row, file=sys.stderr, flush=True)
    return out


def _progress(c: dict) -> None:
    print(f"{c['kind']:>15} share {c['adversarial_share']:<5g} rate {c['natural_rate']:<7g} "
          f"P {c['precision']} R {c['recall']} advpos {c['adversarial_positive_share']} "
          f"curated {c['curated_natural_rate']} true {c['true_natural_rate']:.5f} "
          f"normal {c['normal_flagged_rate']} keen {c['keen_flagged_rate']} "
          f"rules {json.dumps({k: v['flagged'] for k, v in c['per_rule'].items()})} {c['seconds']}s",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
