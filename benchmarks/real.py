"""Benchmark: P[Love] on real reactions (issue 20, section 3), against three baselines on the same rows.

    PYTHONPATH=src .venv/bin/python benchmarks/real.py [--folds 5] [--repeats 1] [--work DIR] [--threads 2]

Data: the 687 assistant replies of the OpenAssistant trees in ../shared/data/oasst (volunteers' +1 / -1) and
Anthropic's HH-RLHF helpful-base test pairs in ../shared/data/hh-rlhf. Two targets:
  any  a reply got at least one +1 (all replies);
  net  a reply got more +1 than -1, among the replies with any vote.
K-fold cross-validation grouped by conversation tree (no tree on both sides), the same folds for every model;
each target's rows of a fold are scored by every model.

P[Love] is the RLUF recipe, through rluf.rewards and the packaged MiniLM backbone:
  1. a helpfulness reward model (Bradley-Terry) on HH-RLHF helpful pairs (once; no OpenAssistant data);
  2. per fold, Bradley-Terry on OpenAssistant's sibling rankings (`rank`) of the fold's training trees only
     (rluf.rewards.oasst_pairs), started from 1;
  3. per fold and target, P[Love] (BCE) on the fold's training replies, started from 2.
Baselines (rluf.rewards.baselines), fitted on the same training rows: response length alone, TF-IDF + logistic
regression on the last user message and the answer, and a logistic regression on frozen MiniLM sentence
embeddings of the two (cached); their C is chosen by inner CV grouped by tree.
Writes benchmarks/results/real.json after every fold (a partial run still reports; finished models are reused).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "real.json"
# ../shared/data from the main checkout; a worktree one level deeper finds it one level further up
SHARED = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
              ROOT.parent / "shared" / "data")
OASST = SHARED / "oasst" / "en_100_tree.jsonl"
HH_HELPFUL = SHARED / "hh-rlhf" / "helpful-base-test.jsonl.gz"
TARGETS = ("any", "net")
BASELINES = ("length", "tfidf", "embedding")
log = logging.getLogger("bench.real")


# -- data ---------------------------------------------------------------------------------------------
def reply_rows(export: Path = OASST) -> pd.DataFrame:
    """One row per assistant reply: tree, context (the ancestor chain), response, +1 / -1 counts, targets."""
    from rluf.rewards.oasst_pairs import ancestor_chats, read_oasst_messages

    m = read_oasst_messages(export)
    chats = ancestor_chats(m)
    a = m[(m.role == "assistant") & ~m.deleted].reset_index(drop=True)
    plus = np.array([e.get("+1", 0) for e in a.emojis])
    minus = np.array([e.get("-1", 0) for e in a.emojis])
    return pd.DataFrame({"message_id": a.message_id, "tree_id": a.tree_id,
                         "prompt": [chats[i] for i in a.message_id], "response": a.text,
                         "plus": plus, "minus": minus, "any": plus > 0, "voted": plus + minus > 0,
                         "net": plus > minus})


def target_rows(rows: pd.DataFrame, target: str) -> np.ndarray:
    """Row indices a target is defined on: every reply for `any`, the voted ones for `net`."""
    return np.arange(len(rows)) if target == "any" else np.flatnonzero(rows.voted.to_numpy())


def tree_folds(rows: pd.DataFrame, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds of whole trees, stratified on `any` as far as trees allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(cv.split(rows, rows["any"], groups=rows.tree_id))


def baselines(rows: pd.DataFrame, train: np.ndarray, test: np.ndarray, target: str, cache: Path
              ) -> dict[str, np.ndarray]:
    """rluf.rewards.baselines on rows `test`, fitted on rows `train` (indices into `rows`), inner folds by tree."""
    from rluf.rewards.baselines import baseline_scores

    p, r = rows.prompt.tolist(), rows.response.tolist()
    return baseline_scores([p[i] for i in train], [r[i] for i in train], rows[target].to_numpy()[train],
                           [p[i] for i in test], [r[i] for i in test], train_groups=rows.tree_id.to_numpy()[train],
                           cache=cache)


# -- P[Love] through rluf.rewards ---------------------------------------------------------------------
def reward_config(objective: str, backbone: str, args, max_length: int | None = None) -> object:
    from rluf.rewards import RewardConfig

    epochs = args.love_epochs if objective == "love" else args.pair_epochs
    model = {"backbone": backbone, "max_length": max_length or args.max_length}
    if objective == "love":
        model["context_messages"] = args.context_messages
        model["context_rank"] = args.context_rank
        model["context_overlap"] = args.context_overlap
    return RewardConfig.model_validate({
        "objective": objective, "model": model,
        "train": {"epochs": epochs, "learning_rate": args.lr, "batch_size": 16, "eval_batch_size": 32,
                  "eval_max_negatives": None, "logging_steps": 5},
        "calibration": {"method": "none"}, "pairs": {"test_fraction": 0.05}})


def trained(out: Path, train) -> dict:
    """eval.json of the reward folder `out`, training it with `train(out)` unless it is already complete."""
    if not (out / "rluf_reward.json").is_file():
        train(out)
    return json.loads((out / "eval.json").read_text())


def write_love_folder(rows: pd.DataFrame, train: np.ndarray, test: np.ndarray, target: str, folder: Path) -> None:
    """A curated folder (rluf curate's form) for one fold and target; validation (calibration only, which is
    off) is the first 64 training rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, idx in (("train", train), ("validation", train[:64]), ("test", test)):
        part = rows.iloc[idx]
        pd.DataFrame({"prompt": part.prompt, "completion": [[{"role": "assistant", "content": r}]
                                                            for r in part.response],
                      "label": part[target].astype(bool), "weight": 1.0,
                      "message_id": part.message_id}).to_parquet(folder / f"{name}.parquet", index=False)
    rate = float(rows[target].to_numpy()[train].mean())
    (folder / "manifest.json").write_text(json.dumps({"natural_rate": rate, "target_rate": rate}))


def love_fold(rows: pd.DataFrame, messages: pd.DataFrame, train_all: np.ndarray, test_all: np.ndarray,
              fold_dir: Path, helpful_hh: Path, args) -> dict[str, dict[str, np.ndarray]]:
    """P[Love] scores per target on the fold's test rows, and the helpfulness models' scores on them."""
    from rluf.rewards import Scorer, train_reward
    from rluf.rewards.oasst_pairs import sibling_pairs

    train_trees = set(rows.tree_id.iloc[train_all])
    helpful = fold_dir / "helpfulness_oasst"

    def train_helpful(out: Path) -> None:
        pairs = sibling_pairs(messages, train_trees)
        if args.oasst_pairs is not None and len(pairs) > args.oasst_pairs:
            pairs = pairs.sample(n=args.oasst_pairs, random_state=0).reset_index(drop=True)
        assert not set(pairs.tree_id) & set(rows.tree_id.iloc[test_all]), "a test tree leaked into the pairs"
        pairs.to_parquet(fold_dir / "oasst_pairs.parquet", index=False)
        train_reward("helpfulness", fold_dir / "oasst_pairs.parquet", out,
                     reward_config("helpfulness", str(helpful_hh), args))

    trained(helpful, train_helpful)
    out: dict[str, dict[str, np.ndarray]] = {}
    for target in TARGETS:
        rows_t = target_rows(rows, target)
        train, test = np.intersect1d(train_all, rows_t), np.intersect1d(test_all, rows_t)
        love = fold_dir / (f"love_{target}" + ("" if args.context_messages is None
                                               else f"_context{args.context_messages}")
                           + (f"_rank{args.context_rank}" if args.context_rank else "")
                           + ("_overlap" if args.context_overlap else ""))

        def train_love(folder: Path, train=train, test=test, target=target) -> None:
            write_love_folder(rows, train, test, target, fold_dir / f"curated_{target}")
            train_reward("love", fold_dir / f"curated_{target}", folder,
                         reward_config("love", str(helpful), args))

        trained(love, train_love)
        scores = pd.read_parquet(love / "test_scores.parquet").set_index("message_id")["score"]
        ids = rows.message_id.iloc[test]
        out[target] = {"love": scores.reindex(ids).to_numpy()}
        ctx, rsp = rows.prompt.iloc[test].tolist(), rows.response.iloc[test].tolist()
        cache = fold_dir / f"helpfulness_scores_{target}.npz"
        if not cache.is_file():
            np.savez(cache, **{name: Scorer.from_pretrained(folder, device="cpu").score(ctx, rsp, batch_size=32)
                               for name, folder in (("helpfulness_hh", helpful_hh), ("helpfulness_oasst", helpful))})
        out[target] |= dict(np.load(cache))
    return out


# -- report -------------------------------------------------------------------------------------------
def summary(values: list[float]) -> dict:
    """Mean and sd over the folds where the model was scored (NaN: not trained on that fold), and every fold."""
    v = np.array(values, float)
    ok = v[~np.isnan(v)]
    return {"mean": float(ok.mean()) if len(ok) else None,
            "sd": float(ok.std(ddof=1)) if len(ok) > 1 else None,
            "folds": [None if np.isnan(x) else float(x) for x in v], "folds_scored": int(len(ok))}


def report(folds: list[dict], meta: dict) -> dict:
    """The results file: per target the mean, sd and every fold of each model; the margin of P[Love] over the
    best baseline on the folds where P[Love] was scored."""
    out = dict(meta)
    by = {t: {m: np.array([f[t][m] for f in folds], float) for m in folds[0][t] if m not in ("rows", "positives")}
          for t in TARGETS}
    for t in TARGETS:
        out[f"auroc_{t}"] = summary(by[t]["love"])
        scored = ~np.isnan(by[t]["love"])
        if scored.any():
            best = max(BASELINES, key=lambda b: by[t][b][scored].mean())
            margin = by[t]["love"] - by[t][best]
            out[f"margin_{t}"] = {"best_baseline": best, **summary(margin),
                                  "target_met": bool(np.nanmean(margin) >= 0.04)}
        out[f"helpfulness_only_{t}"] = {m: summary(by[t][m]) for m in ("helpfulness_hh", "helpfulness_oasst")}
    out["baselines"] = {b: {t: summary(by[t][b]) for t in TARGETS} for b in BASELINES}
    out["fold_rows"] = [{t: {"rows": f[t]["rows"], "positives": f[t]["positives"]} for t in TARGETS} for f in folds]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "real")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1, help="fold assignments (seeds 0..repeats-1)")
    ap.add_argument("--max-length", type=int, default=128, help="tokens per (context, answer)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--context-messages", type=int, default=None,
                    help="P[Love] reads the context's last N messages only (model.context_messages)")
    ap.add_argument("--context-rank", type=int, default=0, help="P[Love]'s context head (model.context_rank)")
    ap.add_argument("--context-overlap", action="store_true",
                    help="the context head's exact-match term (model.context_overlap; needs --context-rank)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results file to write")
    ap.add_argument("--pair-epochs", type=float, default=1.0)
    ap.add_argument("--love-epochs", type=float, default=1.0)
    ap.add_argument("--hh-pairs", type=int, default=256, help="HH-RLHF helpful training pairs (of 2,354)")
    ap.add_argument("--hh-max-length", type=int, default=128, help="tokens per HH-RLHF (dialogue, answer)")
    ap.add_argument("--oasst-pairs", type=int, default=300, help="sibling pairs per fold (a seeded subset)")
    ap.add_argument("--max-folds", type=int, default=None, help="train P[Love] on the first folds only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baselines-only", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import torch

    from rluf.rewards import train_reward
    from rluf.rewards.oasst_pairs import read_oasst_messages
    from rluf.utils import write_json

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    messages = read_oasst_messages(OASST)
    rows = reply_rows()
    helpful_hh = args.work / "helpfulness_hh"
    if not args.baselines_only:
        cfg = reward_config("helpfulness", "minilm", args, args.hh_max_length)
        cfg.train.max_train_examples = args.hh_pairs
        hh_eval = trained(helpful_hh, lambda out: train_reward("helpfulness", HH_HELPFUL, out, cfg))
    meta = {"command": "PYTHONPATH=src .venv/bin/python benchmarks/real.py " + " ".join(sys.argv[1:]),
            "data": {"oasst": "shared/data/oasst/" + OASST.name, "replies": len(rows),
                     "trees": int(rows.tree_id.nunique()), "any_rate": float(rows["any"].mean()),
                     "voted": int(rows.voted.sum()), "net_rate_voted": float(rows.net[rows.voted].mean()),
                     "hh_helpful": "shared/data/hh-rlhf/" + HH_HELPFUL.name},
            "folds": args.folds, "repeats": args.repeats,
            "recipe": {"backbone": "minilm", "max_length": args.max_length, "learning_rate": args.lr,
                       "love_context_messages": args.context_messages, "love_context_rank": args.context_rank,
                       "love_context_overlap": args.context_overlap,
                       "pair_epochs": args.pair_epochs, "love_epochs": args.love_epochs,
                       "hh_pairs": args.hh_pairs, "oasst_pairs": args.oasst_pairs,
                       "hh_max_length": args.hh_max_length},
            "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads}}
    if not args.baselines_only:
        meta["hh_helpfulness_test_accuracy"] = hh_eval["test"]["accuracy"]
    from sklearn.metrics import roc_auc_score

    folds = []
    for seed in range(args.repeats):
        for k, (train_all, test_all) in enumerate(tree_folds(rows, args.folds, seed)):
            fold_dir = args.work / f"seed{seed}_fold{k}"
            fold_dir.mkdir(parents=True, exist_ok=True)
            skip = args.baselines_only or (args.max_folds is not None and k >= args.max_folds)
            love = None if skip else love_fold(rows, messages, train_all, test_all, fold_dir,
                                                              helpful_hh, args)
            result = {}
            for target in TARGETS:
                rows_t = target_rows(rows, target)
                train, test = np.intersect1d(train_all, rows_t), np.intersect1d(test_all, rows_t)
                y = rows[target].to_numpy()[test]
                scores = baselines(rows, train, test, target, args.work / "minilm_embeddings.npz")
                scores |= love[target] if love else {}
                result[target] = {m: float(roc_auc_score(y, s)) for m, s in scores.items()}
                result[target] |= {"rows": len(test), "positives": int(y.sum())}
                if love is None:
                    result[target]["love"] = float("nan")
                    result[target] |= {"helpfulness_hh": float("nan"), "helpfulness_oasst": float("nan")}
            folds.append(result)
            log.info("seed %d fold %d: %s", seed, k, json.dumps(result))
            write_json(args.results, report(folds, meta | {"seconds": round(time.perf_counter() - t_start, 1),
                                                      "load_avg_1_5_15": os.getloadavg()}))
    res = json.loads(args.results.read_text())
    for t in TARGETS:
        line = ", ".join(f"{b} {res['baselines'][b][t]['mean']:.3f}" for b in BASELINES)
        if f"margin_{t}" in res:
            m = res[f"margin_{t}"]
            line = (f"P[Love] {res[f'auroc_{t}']['mean']:.3f} ({res[f'auroc_{t}']['folds_scored']} folds); {line}; "
                    f"margin over {m['best_baseline']} {m['mean']:+.3f}")
        print(f"{t}: {line}")


if __name__ == "__main__":
    main()
