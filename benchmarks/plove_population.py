"""P[Love]'s figures on ten times the test rows its run scored: how much of a run's figure is its test sample?

    python benchmarks/plove_population.py --run RUN [--model RUN/reward_love] [--negatives 200000] [--write]

A run's P[Love] is scored on the curated test split: every positive of the test period and a seeded sample of
about 20,000 negatives (`curate.sample.eval_max_negatives`), reweighted to the natural rate. Against the true
p_love, labels are not needed, so the figures can be read on far more of the period. This script curates the
run's logs again with the run's own curation config and `eval_max_negatives` = --negatives (the train split is
the same rows; validation and test get more negatives), scores the test split with the run's P[Love] (its own
calibration map), and prints, on all of it:
  expected AUROC, the Bayes AUROC (the true p_love itself) and the gap, ECE / natural rate, mean predicted /
  expected, length r of P[Love] and of the truth, and the slope ratio on length (rluf.rewards.metrics);
and the spread of the AUROC and ECE over disjoint run-sized parts (every positive and as many negatives as the
run's own test split had, reweighted): the noise of the figure one run reports.
With --write, merges the figures into benchmarks/results/plove_population.json under --label and the run's
seed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "plove_population.json"


def curate_more(run: Path, cfg, out: Path, negatives: int) -> Path:
    """The run's curation (`cfg`: its RunConfig) with `sample.eval_max_negatives` = negatives, into `out` (kept
    when already there)."""
    from rluf.config import deep_merge
    from rluf.run.pipeline import curate_config
    from rluf.signals.curate import curate

    if (out / "manifest.json").is_file():
        return out
    more = cfg.model_copy(update={"curate": deep_merge(cfg.curate, {"sample": {"eval_max_negatives": negatives}})})
    curate(run / "simulate" / "logs", out, curate_config(more), truth_dir=run / "simulate" / "truth")
    return out


def figures(t: np.ndarray, p: np.ndarray, w: np.ndarray, length: np.ndarray) -> dict[str, float]:
    from rluf.rewards.metrics import expected_metrics, length_slope_ratio, pearson

    e, bayes = expected_metrics(t, p, w), expected_metrics(t, t, w)
    return {"auroc": e["auroc"], "bayes_auroc": bayes["auroc"], "gap": bayes["auroc"] - e["auroc"],
            "ece_relative": e["ece_relative"], "mean_pred_over_expected": e["mean_pred_over_expected"],
            "length_r": pearson(p, length), "true_length_r": pearson(t, length),
            "length_slope_ratio": length_slope_ratio(p, t, length, w)}


def run_sized_parts(t, p, w, y, n_negatives: int, seed: int = 0) -> dict[str, list[float]]:
    """AUROC and ECE / rate on disjoint parts: every positive and ~n_negatives negatives each, reweighted. The
    parts share the positives, so this is the spread from the negatives' draw alone."""
    from rluf.rewards.metrics import expected_metrics

    neg = np.random.default_rng(seed).permutation(np.flatnonzero(y == 0))
    pos = np.flatnonzero(y == 1)
    k = max(1, len(neg) // n_negatives)
    w_part = np.where(y == 0, w * k, w)  # each part holds 1/k of the negatives
    out: dict[str, list[float]] = {"auroc": [], "ece_relative": []}
    for i in range(k):
        ix = np.r_[pos, neg[i::k]]
        e = expected_metrics(t[ix], p[ix], w_part[ix])
        out["auroc"].append(e["auroc"])
        out["ece_relative"].append(e["ece_relative"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a finished simulated `rluf run` folder")
    ap.add_argument("--model", type=Path, default=None, help="a P[Love] folder (default: RUN/reward_love)")
    ap.add_argument("--negatives", type=int, default=200_000, help="eval_max_negatives of the new curation")
    ap.add_argument("--work", type=Path, default=None, help="where the new curation goes (default: RUN/curate_more)")
    ap.add_argument("--label", default="shipped", help="the key of the figures in the results file")
    ap.add_argument("--write", action="store_true", help="merge into benchmarks/results/plove_population.json")
    args = ap.parse_args()
    model = args.model or args.run / "reward_love"
    for need in (args.run / "run_config.json", args.run / "simulate" / "truth", args.run / "curate" / "test.parquet",
                 model / "rluf_reward.json"):
        if not need.exists():
            ap.error(f"{need} not found: --run must be a finished simulated `rluf run` folder (and --model a P[Love] "
                     "folder)")

    from rluf.rewards import Scorer
    from rluf.rewards.data import read_curated
    from rluf.rewards.love import check_truth, load_true_p_love
    from rluf.run.config import RunConfig
    from rluf.threads import available_cpus

    t0 = time.time()
    run = args.run
    cfg = RunConfig.model_validate(json.loads((run / "run_config.json").read_text()))
    cur = curate_more(run, cfg, args.work or run / "curate_more", args.negatives)
    test = read_curated(cur)[0]["test"]
    scorer = Scorer.from_pretrained(model)  # auto device: a GPU where there is one
    p = scorer.prob_from_raw(scorer.score(test.contexts, test.responses))
    t = check_truth(load_true_p_love(run / "simulate" / "truth"), test)
    length = np.array([len(r) for r in test.responses], dtype=float)
    run_test = pd.read_parquet(run / "curate" / "test.parquet", columns=["label"])
    n_run_negatives = int((run_test.label == 0).sum())
    parts = run_sized_parts(t, p, test.weights, test.labels, n_run_negatives)
    own = json.loads((model / "eval.json").read_text())
    seed = cfg.seed
    res = {"run": str(run), "model": str(model), "seed": seed, "rows": len(test),
           "positives": int(test.labels.sum()), "run_test_rows": len(run_test),
           "all": {k: round(v, 4) for k, v in figures(t, p, test.weights, length).items()},
           "run_sized_parts": {"n": len(parts["auroc"]), "negatives_each": n_run_negatives,
                               **{f"{k}_{f.__name__}": round(float(f(v)), 4) for k, v in parts.items()
                                  for f in (np.mean, np.std, np.min, np.max)}},
           "run_own": {"auroc": round(own["expected"]["model"]["auroc"], 4),
                       "bayes_auroc": round(own["expected"]["bayes"]["auroc"], 4),
                       "ece_relative": round(own["expected"]["model"]["ece_relative"], 4),
                       "length_r": round(own["length_r"], 4), "true_length_r": round(own["true_length_r"], 4)},
           "seconds": round(time.time() - t0, 1), "cpus": available_cpus()}
    print(json.dumps(res, indent=1))
    if args.write:
        from rluf.utils import write_json

        merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        merged.setdefault(args.label, {})[f"seed{seed}"] = res
        write_json(RESULTS, merged)


if __name__ == "__main__":
    main()
