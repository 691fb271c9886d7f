"""Benchmark for stage 2 (issue 4, section 7): reward models on the default simulated world and on real data.

    .venv/bin/python benchmarks/reward.py [--work DIR] [--quick] [--skip kto,oasst,hh]

Steps (with --write, each writes its figures as soon as it finishes, so a partial run still reports):
  1. `rluf simulate` (default world, seed 0) and `rluf curate --truth`, unless already in --work;
  2. P[Love] with the shipped reward_love.yaml, against the simulator's true p_love (Bayes-optimal);
  3. baselines on the same curated files: TF-IDF + logistic regression, and TRL KTOTrainer's implicit
     reward beta * (log pi(y|x) - log pi_ref(y|x)) starting from the simulator's policy;
  4. scoring throughput of rluf.rewards.Scorer;
  5. real data: P[+1] on the OpenAssistant sample with grouped cross-validation vs TF-IDF + LR;
     Bradley-Terry on HH-RLHF helpful-base and harmless-base (held-out pairwise accuracy).
With --write, writes (merges into) benchmarks/results/reward.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reward.json"
SHARED = ROOT.parent / "shared" / "data"
RLUF = str(ROOT / ".venv" / "bin" / "rluf")
log = logging.getLogger("bench.reward")


def save(results: dict) -> None:
    """Merge into the results file (two partial runs, e.g. --skip oasst,hh and --skip love,..., can share it)."""
    from rluf.utils import write_json

    merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    write_json(RESULTS, merged | results)


# -- 1. data ------------------------------------------------------------------------------------------
def ensure_world(work: Path, quick: bool, sim: Path | None = None, extra: list[str] | None = None,
                 curate: bool = True) -> tuple[Path, Path]:
    """Simulate (unless `sim` already holds a simulation) and curate with the truth, into `work`.

    `extra` is passed to `rluf simulate` (e.g. --config a.yaml --policy DIR to skip training a baseline)."""
    sim, cur = sim or work / "sim", work / "curated"
    if not (sim / "simulate.json").is_file():
        subprocess.run([RLUF, "simulate", "--out", str(sim), "--seed", "0", *(["--quick"] if quick else []),
                        *(extra or [])], check=True)
    if not curate:
        return sim, cur
    from rluf.run.config import load_run_config
    from rluf.run.pipeline import curate_config
    from rluf.run.stages import run_stage
    from rluf.signals import curate as run_curate
    from rluf.utils import file_fingerprint

    # curated as `rluf run` curates (configs/run.yaml's curate section over curate.yaml), and redone like a run's
    # stage when the config or the logs differ from those of the cached folder
    cfg = curate_config(load_run_config(None, quick=quick))
    run_stage(work, cur.name, [cfg, file_fingerprint([sim / "logs"])], [],
              lambda d: run_curate(sim, d, cfg, truth_dir=sim / "truth"), {})
    return sim, cur


# -- 2. P[Love] ---------------------------------------------------------------------------------------
def run_love_config(sim: Path, work: Path | None = None):
    """P[Love]'s RewardConfig as `rluf run` builds it (configs/run.yaml over reward_love.yaml).

    `rluf run` starts P[Love] from the run's helpfulness model (<run>/reward_helpfulness, `sim` being
    <run>/simulate). When `sim` is not inside such a run, that model is trained here first, into `work`, as
    the run trains it (on `sim`'s pairs); without `work` the config is returned as it is."""
    from rluf.rewards import train_reward
    from rluf.run.config import load_run_config
    from rluf.run.pipeline import reward_config

    run_cfg = load_run_config(None)
    cfg = reward_config(run_cfg, "love", sim.parent)
    helpfulness = Path(cfg.model.backbone)
    if (work is not None and helpfulness == sim.parent / "reward_helpfulness"
            and not (helpfulness / "rluf_reward.json").is_file()):
        helpfulness = work / "helpfulness_for_love"
        if not (helpfulness / "rluf_reward.json").is_file():
            train_reward("helpfulness", sim / "pairs" / "helpfulness.parquet", helpfulness,
                         reward_config(run_cfg, "helpfulness", sim.parent))
        cfg.model.backbone = str(helpfulness)
    return cfg


def bench_love(sim: Path, cur: Path, work: Path, quick: bool, from_scratch: bool = False) -> dict:
    from rluf.config import load_config
    from rluf.rewards import RewardConfig, train_reward

    # four epochs: what this benchmark's committed results were measured with
    cfg = load_config(RewardConfig, None, {"objective": "love", "train.epochs": 4})
    if quick:
        cfg.model.backbone = "tiny"
    elif not from_scratch:  # what `rluf run` trains: configs/run.yaml's reward_love section on top
        cfg = run_love_config(sim, work)
    t0 = time.perf_counter()
    rep = train_reward("love", cur, work / "love", cfg, truth=sim / "truth")
    wall = time.perf_counter() - t0
    t = rep["test"]
    return {
        "auroc": t["auroc"], "auprc": t["auprc"], "log_loss": t["log_loss"], "brier": t["brier"],
        "bayes_auroc": rep["bayes"]["auroc"], "bayes_auprc": rep["bayes"]["auprc"], "auroc_gap": rep["auroc_gap"],
        "ece_natural": t["ece"], "ece_relative": t["ece_relative"],
        "bayes_ece_relative": rep["bayes"]["ece_relative"],
        # the same figures against the true p_love (soft labels): no label noise from ~150 test positives
        "expected_auroc": rep["expected"]["model"]["auroc"], "expected_bayes_auroc": rep["expected"]["bayes"]["auroc"],
        "expected_auroc_gap": rep["expected"]["auroc_gap"],
        "expected_ece_relative": rep["expected"]["model"]["ece_relative"],
        "expected_mean_pred_over_expected": rep["expected"]["model"]["mean_pred_over_expected"],
        "mean_pred_over_observed": t["mean_pred_over_observed"],
        "prior_shift_only_mean_pred_over_observed": rep["test_prior_shift_only"]["mean_pred_over_observed"],
        "prior_shift_only_ece_relative": rep["test_prior_shift_only"]["ece_relative"],
        "length_r": rep["length_r"], "true_length_r": rep["true_length_r"],
        "length_slope_ratio": rep["length_slope_ratio"],
        "pearson_with_true_p": rep["pearson_with_true_p"],
        "natural_rate": rep["natural_rate"], "loss_positive_rate": rep["loss_positive_rate"],
        "test_rows": t["n"], "test_positives": t["positives"], "train_rows": rep["train"]["examples"],
        "train_examples_per_s": rep["train"]["examples_per_s"], "love_wall_s": wall,
        "love_backbone": cfg.model.backbone,
    }


# -- 3. baselines -------------------------------------------------------------------------------------
def _flat(contexts, responses) -> list[str]:
    return [" ".join(m["content"] for m in c[-4:]) + " ||| " + r for c, r in zip(contexts, responses, strict=True)]


def _question_answer(contexts, responses) -> list[str]:
    """The last user message and the response: on the simulated world a stronger bag of words than `_flat`."""
    return [next((m["content"] for m in reversed(c) if m["role"] == "user"), "") + " ||| " + r
            for c, r in zip(contexts, responses, strict=True)]


def tfidf_scores(train_texts, y_train, test_texts, C: float = 1.0) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(C=C, max_iter=2000).fit(vec.fit_transform(train_texts), y_train)
    return clf.predict_proba(vec.transform(test_texts))[:, 1]


def tfidf_tuned(tr, va, te) -> tuple[np.ndarray, float, dict]:
    """TF-IDF + LR on (last question, response), its C chosen by weighted AUROC on the validation split."""
    from sklearn.metrics import roc_auc_score

    x_tr, x_va = _question_answer(tr.contexts, tr.responses), _question_answer(va.contexts, va.responses)
    val = {C: float(roc_auc_score(va.labels, tfidf_scores(x_tr, tr.labels, x_va, C), sample_weight=va.weights))
           for C in (0.1, 0.3, 1.0, 3.0)}
    best = max(val, key=val.get)
    return tfidf_scores(x_tr, tr.labels, _question_answer(te.contexts, te.responses), best), best, val


def tfidf_auroc(train_texts, y_train, test_texts, y_test, w_test=None) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_test, tfidf_scores(train_texts, y_train, test_texts), sample_weight=w_test))


def world_features(world, contexts, responses) -> np.ndarray:
    """The simulator's own Love features (docs/simulator.md: taste_s), one block per user segment."""
    from rluf.sim.language import SEGMENTS

    names = ("good", "bad", "warm", "cold", "signoff", "refusal", "compliance")
    rows = np.zeros((len(responses), len(SEGMENTS) * (len(names) + 3)))
    for i, (c, r) in enumerate(zip(contexts, responses, strict=True)):
        f = world.parse(c, r)
        block = [1.0, *(float(f[k]) for k in names), max(0, f["n_words"] - 20), float(not f["ok"])]
        s = SEGMENTS.index(f["segment"]) * len(block)
        rows[i, s:s + len(block)] = block
    return rows


def bench_tfidf(sim: Path, cur: Path) -> dict:
    """TF-IDF + LR on the curated rows, and the data's own ceiling: a logistic regression on the simulator's
    true Love features (the right model family, ~50 weights) fitted to the same training labels. Both on the
    whole test split, against its labels and against the true p_love (soft labels, rluf.rewards.metrics)."""
    from sklearn.linear_model import LogisticRegression

    from rluf.rewards.data import read_curated
    from rluf.rewards.love import check_truth, load_true_p_love
    from rluf.rewards.metrics import binary_metrics, expected_metrics
    from rluf.sim.world import World

    splits, _ = read_curated(cur)
    tr, te = splits["train"], splits["test"]
    true_p = check_truth(load_true_p_love(sim / "truth"), te)
    tfidf = tfidf_scores(_flat(tr.contexts, tr.responses), tr.labels, _flat(te.contexts, te.responses))
    qa, qa_c, qa_val = tfidf_tuned(tr, splits["validation"], te)
    world = World.load(sim)
    lr = LogisticRegression(C=1.0, max_iter=3000).fit(world_features(world, tr.contexts, tr.responses), tr.labels)
    feat = lr.predict_proba(world_features(world, te.contexts, te.responses))[:, 1]
    # The best any model of the text can do: the true P[Love] without the hidden per-user offset, which no
    # (context, response) reveals (sim.population.propensity_sd). The Bayes figures above include it.
    text_p = world.p_love(None, te.contexts, te.responses)
    return {"text_bayes_auroc": binary_metrics(te.labels, text_p, te.weights)["auroc"],
            "text_bayes_expected_auroc": expected_metrics(true_p, text_p, te.weights)["auroc"],
            "tfidf_auroc": binary_metrics(te.labels, tfidf, te.weights)["auroc"],
            "tfidf_expected_auroc": expected_metrics(true_p, tfidf, te.weights)["auroc"],
            "tfidf_qa_auroc": binary_metrics(te.labels, qa, te.weights)["auroc"],
            "tfidf_qa_expected_auroc": expected_metrics(true_p, qa, te.weights)["auroc"],
            "tfidf_qa_C": qa_c, "tfidf_qa_validation_auroc": qa_val,
            "feature_lr_auroc": binary_metrics(te.labels, feat, te.weights)["auroc"],
            "feature_lr_expected_auroc": expected_metrics(true_p, feat, te.weights)["auroc"],
            "whole_test_bayes_auroc": binary_metrics(te.labels, true_p, te.weights)["auroc"],
            "whole_test_expected_bayes_auroc": expected_metrics(true_p, true_p, te.weights)["auroc"],
            "whole_test_rows": len(te.labels), "whole_test_positives": int(te.labels.sum())}


def bench_kto(sim: Path, cur: Path, work: Path, minutes: float, quick: bool, max_negatives: int | None) -> dict:
    """TRL KTOTrainer from the simulator's policy; AUROC of the implicit reward on the test split (every
    positive and `max_negatives` reweighted negatives, drawn as P[Love]'s own evaluation draws them)."""
    from sklearn.metrics import roc_auc_score
    from transformers import TrainerCallback
    from trl import KTOConfig, KTOTrainer

    from rluf.policy import Policy
    from rluf.rewards.data import read_curated
    from rluf.rewards.love import check_truth, downsample_negatives, load_true_p_love
    from rluf.rewards.metrics import expected_metrics

    if max_negatives is None:  # the rows `rluf run`'s P[Love] is evaluated on
        max_negatives = run_love_config(sim).train.eval_max_negatives
    splits, _ = read_curated(cur)
    tr, te = splits["train"], downsample_negatives(splits["test"], max_negatives, seed=0)
    policy = Policy.from_pretrained(sim / "policy", device="cpu")
    ref = Policy.from_pretrained(sim / "policy", device="cpu")
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": tr.contexts, "completion": [[{"role": "assistant", "content": r}]
                                                                  for r in tr.responses],
                            "label": tr.labels.astype(bool).tolist()})
    deadline = time.perf_counter() + 60 * minutes

    class Deadline(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() > deadline:
                control.should_training_stop = True

    beta = 0.1
    # TRL's KTO docs: keep desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3]
    n_pos, n_neg = int(tr.labels.sum()), int(len(tr.labels) - tr.labels.sum())
    desirable_weight = max(1.0, n_neg / max(n_pos, 1))
    args = KTOConfig(output_dir=str(work / "kto"), per_device_train_batch_size=16, num_train_epochs=1,
                     learning_rate=5e-5, beta=beta, max_length=256, logging_steps=10, report_to="none",
                     desirable_weight=desirable_weight, undesirable_weight=1.0,
                     save_strategy="no", use_cpu=True, max_steps=20 if quick else -1)
    trainer = KTOTrainer(model=policy.model, ref_model=ref.model, args=args, train_dataset=ds,
                         processing_class=policy.tokenizer, callbacks=[Deadline()])
    t0 = time.perf_counter()
    trainer.train()
    secs = time.perf_counter() - t0
    policy.model = trainer.model.eval()
    lp = policy.sequence_logprobs(te.contexts, te.responses).numpy()
    lp_ref = ref.sequence_logprobs(te.contexts, te.responses).numpy()
    implicit = beta * (lp - lp_ref)
    steps, total = trainer.state.global_step, trainer.state.max_steps
    true_p = check_truth(load_true_p_love(sim / "truth"), te)
    return {"kto_auroc": float(roc_auc_score(te.labels, implicit, sample_weight=te.weights)),
            "kto_expected_auroc": expected_metrics(true_p, implicit, te.weights)["auroc"],
            "kto_desirable_weight": desirable_weight,
            "kto_note": f"TRL KTOTrainer (beta {beta}, lr 5e-5, batch 16, one epoch, desirable_weight "
                        f"{desirable_weight:.2f} from the class ratio) from the baseline policy; "
                        "AUROC of the implicit reward beta * (log pi - log pi_ref) on P[Love]'s test rows",
            "kto_steps": steps, "kto_planned_steps": total, "kto_train_s": secs,
            "kto_finished": bool(steps >= total), "kto_test_rows": len(te.labels),
            "kto_test_positives": int(te.labels.sum())}


# -- 4. scoring throughput ----------------------------------------------------------------------------
def bench_scoring(cur: Path, work: Path) -> dict:
    from rluf.rewards import Scorer
    from rluf.rewards.data import read_curated

    splits, _ = read_curated(cur)
    te = splits["test"]
    scorer = Scorer.from_pretrained(work / "love", device="auto")
    t0 = time.perf_counter()
    scorer.score(te.contexts, te.responses, batch_size=64)
    secs = time.perf_counter() - t0
    return {"score_pairs_per_s": len(te) / secs, "score_rows": len(te)}


# -- 5. real data -------------------------------------------------------------------------------------
def oasst_rows(path: Path) -> pd.DataFrame:
    """Assistant messages of the OASST trees with their context path and a +1 label."""
    rows = []

    def walk(node, context, tree_id):
        role = "user" if node["role"] == "prompter" else "assistant"
        if role == "assistant" and not node.get("deleted"):
            emojis = node.get("emojis") or {}
            rows.append({"tree": tree_id, "prompt": list(context), "response": node["text"],
                         "label": int(emojis.get("+1", 0) > 0), "message_id": node["message_id"]})
        for child in node.get("replies", []):
            walk(child, [*context, {"role": role, "content": node["text"]}], tree_id)

    for line in path.read_text(encoding="utf-8").splitlines():
        tree = json.loads(line)
        walk(tree["prompt"], [], tree["message_tree_id"])
    return pd.DataFrame(rows)


def _write_fold(df: pd.DataFrame, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", df[df.split == "train"]), ("validation", df[df.split == "validation"]),
                       ("test", df[df.split == "test"])):
        pd.DataFrame({"prompt": part["prompt"], "completion": [[{"role": "assistant", "content": r}]
                                                               for r in part["response"]],
                      "label": part["label"].astype(bool), "weight": 1.0,
                      "message_id": part["message_id"]}).to_parquet(folder / f"{name}.parquet", index=False)
    rate = float(df[df.split == "train"]["label"].mean())
    (folder / "manifest.json").write_text(json.dumps({"natural_rate": rate, "target_rate": rate}))


def bench_oasst(work: Path, folds: int, quick: bool, max_folds: int | None = None) -> dict:
    """Grouped K-fold by conversation tree; `max_folds` runs only the first folds (a finished fold is reused)."""
    from sklearn.model_selection import GroupKFold

    from rluf.rewards import RewardConfig, train_reward

    df = oasst_rows(SHARED / "oasst" / "en_100_tree.jsonl")
    cfg = RewardConfig.model_validate({
        "model": {"backbone": "tiny" if quick else "minilm", "max_length": 128},
        "train": {"epochs": 1, "learning_rate": 5e-5, "batch_size": 16},
        "calibration": {"method": "none"}})
    model_auc, tfidf = [], []
    rng = np.random.default_rng(0)
    for k, (tr_idx, te_idx) in enumerate(GroupKFold(n_splits=folds).split(df, groups=df["tree"])):
        if max_folds is not None and k >= max_folds:
            break
        d = df.copy()
        d["split"] = "train"
        d.loc[d.index[te_idx], "split"] = "test"
        trees = d.loc[d.index[tr_idx], "tree"].unique()
        val_trees = set(rng.choice(trees, max(1, len(trees) // 8), replace=False))
        d.loc[(d.split == "train") & d.tree.isin(val_trees), "split"] = "validation"
        done = work / "oasst" / f"model{k}" / "eval.json"
        if done.is_file():
            rep = json.loads(done.read_text())
        else:
            _write_fold(d, work / "oasst" / f"fold{k}")
            rep = train_reward("love", work / "oasst" / f"fold{k}", work / "oasst" / f"model{k}", cfg)
        model_auc.append(rep["test"]["auroc"])
        tr, te = d[d.split != "test"], d[d.split == "test"]
        tfidf.append(tfidf_auroc(_flat(tr.prompt, tr.response), tr.label, _flat(te.prompt, te.response), te.label))
        log.info("oasst fold %d: model %.3f tfidf %.3f", k, model_auc[-1], tfidf[-1])
    return {"oasst_rows": len(df), "oasst_positive_rate": float(df.label.mean()), "oasst_folds": folds,
            "oasst_folds_run": len(model_auc), "oasst_fold_aurocs": model_auc, "oasst_fold_tfidf_aurocs": tfidf,
            "oasst_backbone": cfg.model.backbone,
            "oasst_auroc": float(np.mean(model_auc)), "oasst_auroc_sd": float(np.std(model_auc)),
            "oasst_tfidf_auroc": float(np.mean(tfidf)), "oasst_tfidf_auroc_sd": float(np.std(tfidf))}


def bench_hh(work: Path, quick: bool, max_train: int = 600, test_fraction: float = 0.2) -> dict:
    from rluf.rewards import RewardConfig, train_reward

    out = {}
    for objective, name in (("helpfulness", "helpful-base"), ("safety", "harmless-base")):
        cfg = RewardConfig.model_validate({
            "objective": objective,
            "model": {"backbone": "tiny" if quick else "minilm", "max_length": 128},
            "train": {"epochs": 1, "learning_rate": 5e-5, "batch_size": 16,
                      "max_train_examples": 200 if quick else max_train},
            "pairs": {"test_fraction": test_fraction}})
        rep = train_reward(objective, SHARED / "hh-rlhf" / f"{name}-test.jsonl.gz", work / f"hh_{objective}", cfg)
        key = "hh_helpful" if objective == "helpfulness" else "hh_harmless"
        out |= {f"{key}_accuracy": rep["test"]["accuracy"], f"{key}_train_accuracy": rep["train_accuracy"],
                f"{key}_test_pairs": rep["test_pairs"], f"{key}_train_pairs": rep["train_pairs"],
                f"{key}_train_pairs_per_s": rep["train"]["examples_per_s"]}
    out["hh_backbone"] = "tiny" if quick else "minilm"
    return out


def bench_sim_pairs(sim: Path, work: Path, quick: bool) -> dict:
    from rluf.config import load_config
    from rluf.rewards import RewardConfig, train_reward

    out = {}
    for objective in ("helpfulness", "safety"):
        cfg = load_config(RewardConfig, None, {"objective": objective})
        if quick:
            cfg.model.backbone = "tiny"
        t0 = time.perf_counter()
        rep = train_reward(objective, sim / "pairs" / f"{objective}.parquet", work / f"sim_{objective}", cfg)
        out |= {f"sim_{objective}_accuracy": rep["test"]["accuracy"],
                f"sim_{objective}_spearman_true": rep["test"].get("spearman_true"),
                f"sim_{objective}_wall_s": time.perf_counter() - t0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "reward")
    ap.add_argument("--quick", action="store_true", help="quick world, tiny models (a smoke run)")
    ap.add_argument("--sim", type=Path, default=None, help="reuse this `rluf simulate` folder")
    ap.add_argument("--sim-config", type=Path, default=None, help="world YAML for `rluf simulate --config`")
    ap.add_argument("--sim-policy", type=Path, default=None, help="`rluf simulate --policy`: deploy this policy")
    ap.add_argument("--skip", default="", help="comma list of: love, tfidf, kto, scoring, pairs, oasst, hh")
    ap.add_argument("--kto-minutes", type=float, default=15.0)
    ap.add_argument("--kto-max-negatives", type=int, default=None,
                    help="test negatives scored for KTO's AUROC (reweighted; every positive is scored); default: "
                    "configs/run.yaml's reward_love.train.eval_max_negatives, so KTO and P[Love] score the same rows")
    ap.add_argument("--love-from-scratch", action="store_true",
                    help="P[Love] from the shipped reward_love.yaml alone (default: as `rluf run` trains it)")
    ap.add_argument("--oasst-folds", type=int, default=3)
    ap.add_argument("--oasst-max-folds", type=int, default=None, help="run only the first folds")
    ap.add_argument("--hh-max-train", type=int, default=600, help="HH-RLHF training pairs per objective")
    ap.add_argument("--hh-test-fraction", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on busy cores)")
    ap.add_argument("--write", action="store_true", help=f"merge the results into {RESULTS}")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {}  # save() merges into the file, so partial runs only replace their own keys
    results["machine"] = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        results["torch_threads"] = args.threads
    sim_steps = {"love", "tfidf", "scoring", "pairs", "kto"}
    sim = cur = None
    if sim_steps - skip:
        extra = [*(["--config", str(args.sim_config)] if args.sim_config else []),
                 *(["--policy", str(args.sim_policy)] if args.sim_policy else [])]
        sim, cur = ensure_world(args.work, args.quick, args.sim, extra, curate=bool(sim_steps - skip - {"pairs"}))
        results["world"] = {"quick": args.quick, "seed": 0, "config": str(args.sim_config or "packaged"),
                            "policy": str(args.sim_policy or "trained baseline")}
    steps = [("love", lambda: bench_love(sim, cur, args.work, args.quick, args.love_from_scratch)),
             ("tfidf", lambda: bench_tfidf(sim, cur)),
             ("scoring", lambda: bench_scoring(cur, args.work)),
             ("pairs", lambda: bench_sim_pairs(sim, args.work, args.quick)),
             ("kto", lambda: bench_kto(sim, cur, args.work, args.kto_minutes, args.quick,
                                              args.kto_max_negatives)),
             ("oasst", lambda: bench_oasst(args.work, args.oasst_folds, args.quick, args.oasst_max_folds)),
             ("hh", lambda: bench_hh(args.work, args.quick, args.hh_max_train, args.hh_test_fraction))]
    for name, step in steps:
        if name in skip:
            continue
        t0 = time.perf_counter()
        try:
            results |= step()
        except Exception as e:  # a failing baseline must not lose the other figures
            log.exception("step %s failed", name)
            results[f"{name}_error"] = f"{type(e).__name__}: {e}"
        results[f"{name}_bench_s"] = time.perf_counter() - t0
        results["machine"]["load_avg_now"] = os.getloadavg()
        if args.write:
            save(results)
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, dict)}, indent=1, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
