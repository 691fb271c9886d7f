"""Benchmark `rluf curate` end to end on 10M synthetic log events, against the same pipeline in plain pandas.

    .venv/bin/python benchmarks/curate.py [--events 10000000] [--pandas-events 1000000] [--workdir /tmp/rluf-bench]
                                          [--skip-uncapped] [--skip-pandas] [--out results.json]

Events = messages + reactions in the input logs (rluf.signals.synth: ~47% assistant messages, love 0.1%, like
8%, dislike 3%, 50 reaction spammers, a 40-account burst); events/s = events / `seconds`. The synthetic logs
are generated (and cached in --workdir) before any timed run, so generation is never timed. Each measured run
is a fresh child process, so its peak RSS (VmHWM) is its own. The child first imports rluf and opens one
DuckDB connection (Ibis loads its DuckDB backend and pandas then, ~0.5-1 s once per process:
`import_seconds`), then times `curate()` alone (`seconds`: reading the logs through writing the three Parquet
files and manifest.json); `process_seconds` is the child's whole wall time, interpreter start included, and
`events_per_s_whole_process` the rate over it. pandas runs on `--pandas-events` (it would need far more than
24 GiB for 10M with contexts in Python objects), timed the same way (imports excluded); its rate is
extrapolated linearly, and that is said in the output. The main run uses the default config (validation and
test: every positive and ~20,000 reweighted negatives, `sample.eval_max_negatives`), and the pandas baseline
does the same; a second run keeps validation/test uncapped at the natural rate (`eval_max_negatives: null`,
~20% of all assistant messages with contexts: the previous default), a third turns PII scrubbing on. The load
average is recorded before and after every run. With --write, writes benchmarks/results/curate.json
(or --out PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "curate.json"
# Peak RSS of the child itself (rluf.utils.peak_rss_mb reads its own VmHWM: getrusage's ru_maxrss is carried
# over from the parent, so a child would report the data generator's peak when larger).
PEAK = "from rluf.utils import peak_rss_mb as peak_mb\n"
EVENTS_PER_CONV = 7.4  # mean messages + reactions per synthetic conversation (measured: 9.98M / 1.35M)

CHILD_RLUF = PEAK + """
import json, os, sys, time
t0 = time.perf_counter()
import ibis
from rluf.signals import curate
from rluf.signals.engine import connect
connect().to_pyarrow(ibis.memtable({"a": [1]}))  # load Ibis' DuckDB backend once, as any process using it does
load0 = os.getloadavg()[0]
t = time.perf_counter()
m = curate(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
t2 = time.perf_counter()
print(json.dumps({"seconds": t2 - t, "import_seconds": t - t0, "peak_rss_mb": peak_mb(),
                  "load_before": load0, "load_after": os.getloadavg()[0],
                  "train_rows": m["counts"]["output"]["train"]["rows"],
                  "rows_written": sum(o["rows"] for o in m["counts"]["output"].values()),
                  "eval_max_negatives": m["config"]["sample"]["eval_max_negatives"],
                  "filters": m["counts"]["filters"]}))
"""

CHILD_PANDAS = PEAK + """
import json, os, sys, time
sys.path.insert(0, sys.argv[3])
from curate import curate_pandas
load0 = os.getloadavg()[0]
t = time.perf_counter()
n = curate_pandas(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": peak_mb(), "train_rows": n,
                  "load_before": load0, "load_after": os.getloadavg()[0]}))
"""


def betabinomial_users(c, n_u, alpha: float = 0.01, trim: float = 0.05, rounds: int = 5) -> set:
    """rluf's default rate rule, plainly: users x types counts `c`, messages `n_u`; see rluf.signals.filters.

    A copy of the moment fit and tail sums of rluf.signals.filters.betabinomial_thresholds on purpose: importing
    that module would load Ibis into the pandas baseline's process and its measured memory. The log-pmf comes
    from scipy.special, as in rluf (importing scipy.stats costs ~0.4 s, which neither side should be timed on)."""
    import numpy as np
    from scipy.special import betaln, gammaln

    def logpmf(k, n, a, b):
        return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + betaln(k + a, n - k + b) - betaln(a, b)

    x, m = c.div(n_u, axis=0), alpha / c.size
    fit = x <= x.quantile(1 - trim)  # per type: the first fit leaves out the top rates
    flagged: set = set()
    for _ in range(rounds):
        new = set()
        for t in c.columns:
            cc, nn = c[t][fit[t]], n_u[fit[t]]
            p = min(max(cc.sum(), 0.5) / nn.sum(), 0.999)
            s2, share = ((cc ** 2 / nn).sum() - p * cc.sum()) / nn.sum(), len(nn) / nn.sum()
            rho = min(max((s2 / (p * (1 - p)) - share) / (1 - share), 1e-9), 0.99)
            a, b = p * (1 / rho - 1), (1 - p) * (1 / rho - 1)
            cstar = {}
            for n in np.unique(n_u):
                tail = np.cumsum(np.exp(logpmf(np.arange(n, -1, -1), n, a, b)))[::-1]
                below = np.flatnonzero(tail < m)
                cstar[n] = below[0] if len(below) else n + 1
            new |= set(c.index[c[t].to_numpy() >= n_u.map(cstar).to_numpy()])
        if new <= flagged:
            break
        flagged |= new
        keep = ~x.index.isin(flagged)
        fit = x.apply(lambda col, keep=keep: keep)
    return flagged


def curate_pandas(logs_dir: str, out_dir: str, k: int = 10, target: float = 0.1, seed: int = 0,
                  eval_max_negatives: int | None = 20_000) -> int:
    """The same pipeline written plainly in pandas (filters, label, dedup, time split, resample, contexts);
    validation/test keep every positive and ~`eval_max_negatives` reweighted negatives, as rluf's default."""
    import numpy as np
    import pandas as pd

    logs, out = Path(logs_dir) / "logs", Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = pd.read_parquet(logs / "messages.parquet")
    r = pd.read_parquet(logs / "reactions.parquet")
    u = pd.read_parquet(logs / "users.parquet")
    a = m[(m.role == "assistant") & (m.turn_index >= 1)]
    # filters: too fast, beta-binomial test of reaction counts, bursts of new accounts, spam
    r = r.merge(m[["message_id", "created_at"]].rename(columns={"created_at": "msg_at"}), on="message_id")
    fast = (r.created_at - r.msg_at).dt.total_seconds() < 1.0
    n_u = a.groupby("user_id").size()
    c = r.groupby(["user_id", "type"]).size().unstack(fill_value=0).reindex(n_u.index, fill_value=0)
    bad = betabinomial_users(c, n_u)
    rr = r.merge(u.rename(columns={"created_at": "acct_at"}), on="user_id")
    new = rr[(rr.created_at - rr.acct_at).dt.total_seconds() <= 48 * 3600]
    win = new.created_at.dt.floor("D")  # 1440-minute windows, as rluf's default burst.window_minutes
    n_w = new.groupby(win).user_id.nunique()
    mad = max(1.4826 * (n_w - n_w.median()).abs().median(), 1.0)
    burst_w = n_w.index[(n_w >= 10) & ((n_w - n_w.median()) / mad > 5.0)]
    bad |= set(new.user_id[win.isin(burst_w)])
    um = m[m.role == "user"]
    rep = um.groupby(["user_id", "text"]).size()
    bad |= set(rep[rep >= 10].index.get_level_values(0))
    r = r[~fast & ~r.user_id.isin(bad)]
    a = a[~a.user_id.isin(bad)].copy()
    a["label"] = a.message_id.isin(set(r.message_id[r.type == "love"]))
    # dedup on (last-k context, completion): hashed context by shifted sums within each conversation
    ms = m.sort_values(["conversation_id", "turn_index"])
    h = pd.util.hash_pandas_object(ms.role + ":" + ms.text, index=False).astype("int64") % 2_147_483_647
    g = h.groupby(ms.conversation_id.values)
    ctx = sum(g.shift(i).fillna(0) * (i + 1) for i in range(1, k + 1))
    keys = pd.DataFrame({"message_id": ms.message_id.values, "ctx": ctx.values, "comp": h.values})
    a = a.merge(keys, on="message_id").sort_values("created_at")
    lab = a.groupby(["ctx", "comp"]).label.transform("any")
    a = a.assign(label=lab).drop_duplicates(["ctx", "comp"])
    # time split by conversation span
    span = a.groupby("conversation_id").created_at.agg(["min", "max"])
    t1, t2 = span["min"].quantile(0.8), span["min"].quantile(0.9)
    a = a.join(span, on="conversation_id")
    a["split"] = np.select([a["max"] < t1, (a["min"] >= t1) & (a["max"] < t2), a["min"] >= t2],
                           ["train", "validation", "test"], "straddle")
    # resample train to the target rate with weights
    tr = a[a.split == "train"]
    p, n = tr.label.sum(), (~tr.label).sum()
    q = p * (1 - target) / (target * n)
    rng = np.random.default_rng(seed)
    tr = tr[tr.label | (rng.random(len(tr)) < q)].copy()
    tr["weight"] = np.where(tr.label, 1.0, n / (~tr.label).sum())

    def eval_split(part):  # every positive, negatives drawn with q = eval_max_negatives / negatives
        neg = ~part.label
        if not eval_max_negatives or neg.sum() <= eval_max_negatives:
            return part.assign(weight=1.0)
        part = part[part.label | (rng.random(len(part)) < eval_max_negatives / neg.sum())]
        return part.assign(weight=np.where(part.label, 1.0, neg.sum() / (~part.label).sum()))

    # contexts for the kept rows
    for name, part in (("train", tr), ("validation", eval_split(a[a.split == "validation"])),
                       ("test", eval_split(a[a.split == "test"]))):
        j = part[["message_id", "conversation_id", "turn_index"]].merge(
            ms[["conversation_id", "turn_index", "role", "text"]], on="conversation_id", suffixes=("", "_m"))
        j = j[(j.turn_index_m < j.turn_index) & (j.turn_index_m >= j.turn_index - k)].sort_values("turn_index_m")
        prompts = j.groupby("message_id").apply(
            lambda d: [{"role": ro, "content": te} for ro, te in zip(d.role, d.text, strict=True)],
            include_groups=False).rename("prompt")
        texts = m.set_index("message_id").text
        part = part.join(prompts, on="message_id")
        part["completion"] = [[{"role": "assistant", "content": texts[i]}] for i in part.message_id]
        part[["prompt", "completion", "label", "message_id", "conversation_id", "user_id", "created_at", "weight",
              "model_id"]].to_parquet(out / f"{name}.parquet")
    return len(tr)


def _child(code: str, *args: str) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - t
    return out


def _logs(workdir: Path, events: int, seed: int) -> tuple[Path, int]:
    from rluf.signals.synth import synth_logs

    root = workdir / f"logs_{events}"
    stats = root / "stats.json"
    if stats.is_file():
        return root, json.loads(stats.read_text())["events"]
    n_conv = int(events / EVENTS_PER_CONV)
    s = synth_logs(root, n_conversations=n_conv, n_users=max(1000, n_conv // 13), days=90,
                   rates={"love": 0.001, "like": 0.08, "dislike": 0.03}, n_spammers=50, n_burst=40,
                   pii_share=0.02, seed=seed)
    stats.write_text(json.dumps(s))
    return root, s["events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--pandas-events", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/rluf-bench-curate"))
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--skip-uncapped", action="store_true",
                    help="skip the run with validation/test uncapped (sample.eval_max_negatives: null)")
    ap.add_argument("--skip-pandas", action="store_true", help="do not run the pandas baseline")
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cfg = {"engine": {"memory_limit": args.memory_limit}}
    load_start = os.getloadavg()

    big, n_big = _logs(args.workdir, args.events, 0)
    small, n_small = _logs(args.workdir, args.pandas_events, 1)
    runs = {"rluf": _child(CHILD_RLUF, str(big), str(args.workdir / "out"), json.dumps(cfg))}
    runs["rluf_small"] = _child(CHILD_RLUF, str(small), str(args.workdir / "out_small"), json.dumps(cfg))
    if not args.skip_uncapped:
        uncapped = {**cfg, "sample": {"eval_max_negatives": None}}
        runs["uncapped"] = _child(CHILD_RLUF, str(big), str(args.workdir / "out_uncapped"), json.dumps(uncapped))
    with_pii = {**cfg, "pii": {"enabled": True}}
    runs["pii"] = _child(CHILD_RLUF, str(big), str(args.workdir / "out_pii"), json.dumps(with_pii))
    if not args.skip_pandas:
        runs["pandas"] = _child(CHILD_PANDAS, str(small), str(args.workdir / "out_pandas"), str(Path(__file__).parent))

    rluf, small_run = runs["rluf"], runs["rluf_small"]
    eps = n_big / rluf["seconds"]
    res = {
        "events": n_big,
        "seconds": round(rluf["seconds"], 2),
        "events_per_s": round(eps),
        "peak_rss_mb": round(rluf["peak_rss_mb"]),
        "memory_limit": args.memory_limit,
        "import_seconds": round(rluf["import_seconds"], 2),
        "process_seconds": round(rluf["process_seconds"], 2),
        "events_per_s_whole_process": round(n_big / rluf["process_seconds"]),
        "eval_max_negatives": rluf["eval_max_negatives"],
        "rows_written": rluf["rows_written"],
        "train_rows": rluf["train_rows"],
        "events_1m": n_small,
        "events_1m_seconds": round(small_run["seconds"], 2),
        "events_1m_rluf_per_s": round(n_small / small_run["seconds"]),
        "events_1m_peak_rss_mb": round(small_run["peak_rss_mb"]),
    }
    if "uncapped" in runs:
        c = runs["uncapped"]
        res.update({"uncapped_seconds": round(c["seconds"], 2), "uncapped_events_per_s": round(n_big / c["seconds"]),
                    "uncapped_peak_rss_mb": round(c["peak_rss_mb"]), "uncapped_rows_written": c["rows_written"]})
    res.update({"pii_seconds": round(runs["pii"]["seconds"], 2),
                "pii_events_per_s": round(n_big / runs["pii"]["seconds"]),
                "pii_peak_rss_mb": round(runs["pii"]["peak_rss_mb"])})
    if "pandas" in runs:
        pandas = runs["pandas"]
        pandas_eps = n_small / pandas["seconds"]
        res.update({
            "pandas_events": n_small,
            "pandas_seconds": round(pandas["seconds"], 2),
            "pandas_events_per_s": round(pandas_eps),
            "pandas_peak_rss_mb": round(pandas["peak_rss_mb"]),
            "pandas_note": f"pandas measured on {n_small} events and extrapolated linearly to {n_big}",
            "speedup_vs_pandas": round(eps / pandas_eps, 2),
            "speedup_vs_pandas_same_input": round(pandas["seconds"] / small_run["seconds"], 2),
        })
    res.update({
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in load_start],
                    "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
                    "load_1min_per_run": {k: [round(v["load_before"], 2), round(v["load_after"], 2)]
                                          for k, v in runs.items() if "load_before" in v}},
        "note": "load average per run in machine.load_1min_per_run (the benchmark itself adds about 1)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    for k, v in res.items():
        print(f"{k:>30}: {v}")
    out = args.out or (RESULTS if args.write else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
