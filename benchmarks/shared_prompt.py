"""Reading a shared context once (`pairs.share_prompt`, the Scorer's packed rows) against one sequence per answer.

    python benchmarks/shared_prompt.py --run runs/default [--threads 2] [--skip sim,hh] [--write]

- sim: on a finished `rluf run` folder, the helpfulness model retrained as the run trains it (the run's resolved
  config) with share_prompt off and on: training seconds, tokens per step, held-out accuracy and Spearman with
  the true helpfulness; then the run's evaluation table (9 answers per context) scored by each of the run's three
  reward models, packed and one sequence per answer: seconds and the largest score difference.
- hh: real pairs, Anthropic HH-RLHF helpful-base (../shared/data), a causal Llama preset built from scratch
  (`small`, its tokenizer trained on the pairs), 256 tokens, one epoch: the same figures.

Settings alternate (off, on, off, on for scoring; one training each), and the fastest of each is kept. With
--write, writes benchmarks/results/shared_prompt.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rluf.rewards import RewardConfig, Scorer
from rluf.rewards.pairwise import train_pairwise
from rluf.utils import write_json

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf" / "helpful-base-test.jsonl.gz"


def train_both(data: Path, cfg: dict, out: Path) -> dict:
    """The Bradley-Terry model trained with share_prompt off, then on (same seed, same pairs)."""
    result = {}
    for share in (False, True):
        c = json.loads(json.dumps(cfg))
        c.setdefault("pairs", {})["share_prompt"] = share
        c["train"]["checkpoint_steps"] = 0
        t0 = time.perf_counter()
        rep = train_pairwise(data, out / f"share_{int(share)}", RewardConfig.model_validate(c))
        result["shared" if share else "separate"] = {
            "train_s": round(rep["train"]["seconds"], 1), "total_s": round(time.perf_counter() - t0, 1),
            "steps": rep["train"]["steps"], "test_accuracy": rep["test"]["accuracy"],
            "spearman_true": rep["test"].get("spearman_true"), "mean_loss": rep["train"]["mean_loss"]}
        print(("shared" if share else "separate"), result["shared" if share else "separate"], flush=True)
    result["train_speedup"] = round(result["separate"]["train_s"] / result["shared"]["train_s"], 2)
    return result


def pair_tokens(data: Path, model_folder: Path, max_length: int) -> dict:
    """Mean tokens per pair: both sequences, or as `SharedPromptPairCollator` lays the pair out."""
    from rluf.models import load_tokenizer
    from rluf.rewards.data import Encoder, read_pairs
    from rluf.rewards.hf_trainer import pair_rows

    pairs = read_pairs(data)
    enc = Encoder(load_tokenizer(model_folder), max_length)
    n = min(len(pairs), 5000)
    ctx, ch, rj = pairs.contexts[:n], pairs.chosen[:n], pairs.rejected[:n]
    separate = [len(c) + len(r) for c, r in zip(enc.encode_many(ctx, ch), enc.encode_many(ctx, rj), strict=True)]
    triples = enc.encode_pairs(ctx, ch, rj)
    rows = [[len(head) + sum(map(len, tails)) for head, tails in pair_rows(*t)] for t in triples]  # row lengths
    return {"pairs": n, "tokens_separate": round(float(np.mean(separate)), 1),
            "tokens_shared": round(float(np.mean([sum(r) for r in rows])), 1),
            "pairs_packed": round(float(np.mean([len(r) == 1 for r in rows])), 3),
            "row_tokens_shared": round(float(np.mean([x for r in rows for x in r])), 1)}


def score_both(run: Path) -> dict:
    """The run's evaluation table scored by each reward model, packed and one sequence per answer."""
    table = pd.read_parquet(run / "evaluate" / "responses.parquet")
    contexts = [[dict(m) for m in p] for p in table["prompt"]]
    responses = table["response"].tolist()
    out = {"answers": len(responses), "contexts": int(table["prompt_id"].nunique())}
    for name in ("reward_love", "reward_helpfulness", "reward_safety"):
        scorer = Scorer.from_pretrained(run / name, device="cpu")
        seconds: dict[bool, list[float]] = {False: [], True: []}
        values = {}
        for share in (False, True, False, True):
            scorer.shares_prompt = share
            t0 = time.perf_counter()
            values[share] = scorer.score(contexts, responses)
            seconds[share].append(time.perf_counter() - t0)
        out[name] = {"max_length": scorer.encoder.max_length, "separate_s": round(min(seconds[False]), 2),
                     "packed_s": round(min(seconds[True]), 2),
                     "max_abs_diff": float(np.abs(values[True] - values[False]).max())}
        print(name, out[name], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished default `rluf run` folder")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "shared_prompt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hh-max-train", type=int, default=4000)
    ap.add_argument("--skip", default="", help="comma list of: sim, hh")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    res: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads},
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "sim" not in skip:
        meta = json.loads((args.run / "reward_helpfulness" / "rluf_reward.json").read_text())
        data = args.run / "simulate" / "pairs" / "helpfulness.parquet"
        res["sim_tokens"] = pair_tokens(data, args.run / "reward_helpfulness", meta["config"]["model"]["max_length"])
        res["sim_train"] = train_both(data, meta["config"], args.work / "sim")
        res["sim_scoring"] = score_both(args.run)
    if "hh" not in skip:
        cfg = {"objective": "helpfulness", "model": {"backbone": "small", "max_length": 256},
               "train": {"epochs": 1, "max_train_examples": args.hh_max_train, "device": "cpu"},
               "pairs": {"test_fraction": 0.2}}
        res["hh_train"] = train_both(HH, cfg, args.work / "hh")
        res["hh_tokens"] = pair_tokens(HH, args.work / "hh" / "share_1", 256)
    print(json.dumps(res, indent=1))
    if args.write:
        write_json(ROOT / "benchmarks" / "results" / "shared_prompt.json", res)


if __name__ == "__main__":
    main()
