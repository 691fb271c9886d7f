"""End to end: `rluf run --quick` with even shorter training, then resume, then the report in Chromium."""

import json

import pyarrow.parquet as pq
import pytest

from helpers.browser import CHROMIUM, inspect_page
from rluf.run.config import load_run_config
from rluf.run.pipeline import run

# in the order the pipeline starts them: the deployment, signals, curate and safety beside helpfulness, the A/B
# test beside evaluate
STAGES = ["baseline", "simulate", "signals", "curate", "reward_safety", "reward_helpfulness", "reward_love", "sweep",
          "abtest", "evaluate"]


@pytest.mark.slow
def test_quick_loop_runs_resumes_and_reports(tmp_path):
    cfg = load_run_config(None, quick=True)
    cfg = cfg.model_copy(update={
        "optimize": {**cfg.optimize, "crraft": {"iterations": 2, "batch_prompts": 4},
                     "eval": {"n_prompts": 16, "items": "deployment"}},
        "evaluate": {"prompts": {"n_prompts": 16}, "bootstrap_reps": 100},
        # the deployment, signals, curate and safety beside helpfulness, the A/B test beside evaluate, sweep 2 at a time
        "workers": 2,
    })
    events: list[tuple[str, str]] = []
    summary = run(cfg, tmp_path, on_event=lambda s, e: events.append((s, e)))
    for stage in STAGES:
        assert (tmp_path / stage / "_stage.json").is_file(), stage
    assert (tmp_path / "report.html").is_file()
    assert len(json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]) == 5
    assert json.loads((tmp_path / "evaluate" / "agreement" / "offline_online.json").read_text())["n_policies"] >= 6
    ab = json.loads((tmp_path / "abtest" / "abtest.json").read_text())
    assert ab["control"]["responses"] > 0 and ab["treatment"]["responses"] > 0
    assert summary["report"].endswith("report.html")
    started = [s for s, e in events if e == "running beside"]  # in a worker process (workers: 2)
    assert started == ["simulate", "signals", "curate", "reward_safety", "abtest"], events
    # the deployment's folder is a complete `rluf simulate` folder: the baseline policy and the expert pairs
    assert (tmp_path / "simulate" / "policy" / "model.safetensors").read_bytes() == (
        tmp_path / "baseline" / "model.safetensors").read_bytes()
    assert (tmp_path / "simulate" / "pairs" / "helpfulness.parquet").read_bytes() == (
        tmp_path / "baseline" / "pairs" / "helpfulness.parquet").read_bytes()
    pool_arms = pq.read_table(tmp_path / "simulate" / "truth" / "pool.parquet", columns=["arm"]).column("arm")
    pool_arms = pool_arms.unique().to_pylist()
    assert pool_arms == ["baseline"]  # the deployed policy keeps its name, though loaded from a folder
    love_meta = json.loads((tmp_path / "reward_love" / "rluf_reward.json").read_text())
    assert love_meta["backbone"]["backbone"].endswith("/reward_helpfulness")  # started from the run's helpfulness model
    assert love_meta["context_messages"] == 1  # run_quick.yaml: P[Love] reads the answered user message only
    assert love_meta["context_rank"] == 16 and love_meta["context_overlap"]
    assert love_meta["calibration"]["params"]["method"] == "centred_isotonic"  # run_quick.yaml
    assert (tmp_path / "reward_love" / "context_head.safetensors").is_file()
    html = (tmp_path / "report.html").read_text()
    assert "curate/test.parquet, conversations later in time" in html  # offline evaluation's prompt set
    assert "deployment&#x27;s own questions" in html  # the sweep's evaluation population
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    check_judges_ran(tmp_path / "sweep", sweep)
    check_findings_match_the_figures(sweep, html)
    check_the_world_is_big_enough_to_measure(tmp_path, html)

    events.clear()
    run(cfg, tmp_path, on_event=lambda s, e: events.append((s, e)))  # resume: nothing left to do
    assert events == [(s, "skipped") for s in STAGES]

    if CHROMIUM and __import__("pathlib").Path(CHROMIUM).is_file():
        info = inspect_page(tmp_path / "report.html")
        assert info["images"] and all(i["ok"] for i in info["images"]), info["images"]
        for table in ("signals-table", "sweep-table", "claims-table", "ranking-table", "agreement-table",
                      "abtest-table"):
            assert table in info["tables"]


FIGURES = ["reward_love/roc.png", "reward_love/reliability.png", "evaluate/agreement/offline_online.png",
           "figures/ab_lift.png"] + [f"figures/iter_{k}.png" for k in ("reward", "judges", "kl", "hack")]


def check_the_world_is_big_enough_to_measure(run_dir, html):
    """The quick world gives P[Love] positives in every split, a held-out AUROC above chance, every figure of
    the report, and an A/B confidence interval narrow enough to read (docs/run.md, "The quick run")."""
    output = json.loads((run_dir / "curate" / "manifest.json").read_text())["counts"]["output"]
    assert output["train"]["positives"] >= 200, output
    for split in ("validation", "test"):
        assert output[split]["positives"] >= 20, output
    test = json.loads((run_dir / "reward_love" / "eval.json").read_text())["test"]
    assert test["positives"] >= 20 and isinstance(test["auroc"], float) and test["auroc"] > 0.5, test
    for figure in FIGURES:
        assert (run_dir / figure).is_file(), figure
    assert "not drawn." not in html
    ab = json.loads((run_dir / "abtest" / "abtest.json").read_text())
    lo, hi = ab["delta"]["lift_ci"]
    assert lo <= ab["lift"] <= hi and hi - lo < 0.5, (ab["lift"], lo, hi)
    assert min(ab["control"]["events"], ab["treatment"]["events"]) >= 200, ab
    agree = json.loads((run_dir / "evaluate" / "agreement" / "offline_online.json").read_text())
    assert isinstance(agree["spearman"], float), agree


JUDGES = ("length", "degenerate", "exact_answer", "false_refusal")


def check_judges_ran(sweep_dir, sweep):
    """Every sweep run trained with the four judges, and their pass rates are in its per-iteration metrics."""
    for name in sweep["runs"]:
        config = json.loads((sweep_dir / name / "config.json").read_text())
        assert [j["type"] for j in config["judges"]] == list(JUDGES), name
        rows = [json.loads(line) for line in (sweep_dir / name / "metrics.jsonl").read_text().splitlines()]
        trained = [r for r in rows if "reward/combined" in r]
        assert trained, name
        for r in trained:
            rates = [r[f"judge/{j}_pass"] for j in JUDGES]
            assert all(0.0 <= x <= 1.0 for x in rates), (name, rates)
        # a judge that passes everything would be no judge: over the run, some candidate failed one
        assert min(min(r[f"judge/{j}_pass"] for j in JUDGES) for r in trained) < 1.0, name


def check_findings_match_the_figures(sweep, html):
    """The claims and the report's findings table follow from the sweep's own figures, run by run."""
    from rluf.optimize.weight_sweep import SIGNOFF_RISE, TARGET_LIFT

    claims, runs, base = sweep["claims"], sweep["runs"], sweep["baseline"]
    assert claims["candidate"] == "love_0.1" and runs["love_0.1"]["role"] == "candidate"
    lift = runs["love_0.1"]["love_lift"]
    assert claims["candidate_lift"] == lift and claims["candidate_lift_ok"] == (lift >= TARGET_LIFT)
    lo, hi = runs["love_0.1"]["love_lift_ci"]
    assert lo <= lift <= hi
    # the report prints the candidate's measured lift with its sign, and whether the finding holds
    assert f"{lift:+.1%} [{lo:+.1%}, {hi:+.1%}]" in html
    assert set(claims["hack"]) == {"love_0.3", "love_only"}  # the hack checks, by role
    for name, check in claims["hack"].items():
        row = runs[name]
        assert check["signoff_rise"] == pytest.approx(row["signoff_rate"] - base["signoff_rate"])
        flagged = any("sign-off" in f or "closing" in f for f in row["flags"])
        assert check["flagged"] == flagged
        assert check["ok"] == (check["signoff_rise"] >= SIGNOFF_RISE and flagged)
        state = "flagged" if flagged else "not flagged"
        assert f"{100 * check['signoff_rise']:+.1f} points, {state}" in html
    assert claims["hack_ok"] == any(h["ok"] for h in claims["hack"].values())
