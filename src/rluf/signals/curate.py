"""`rluf curate`: canonical logs -> the P[Love] training set, in TRL's unpaired-preference form.

The pipeline is written once as Ibis expressions (DuckDB by default) and ordered so that the expensive work
touches only rows that survive:

  1. label       every assistant message gets label = rule(reaction types) from reactions that passed the filters
  2. filters     adversarial users / reactions removed (rluf.signals.filters)
  3. dedup       identical (last-k context, completion) pairs merged, labels aggregated; the key is a windowed
                 hash sum, so no context is built yet
  4. split       by conversation time: validation and test strictly later than train (optionally user-disjoint)
  5. resample    train to `target_rate` positives; each row keeps a weight so the weighted rate is the natural one
  6. contexts    the last k messages as chat messages, built only for the rows kept, PII optionally scrubbed
  7. write       train/validation/test.parquet + manifest.json

RLUF (Han et al., 2025): Love chosen as the signal, 10-turn context, held-out conversations later in time than
all training data, Love upsampled from its natural ~0.1% to 10%.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ibis

from rluf.config import load_config, validate_config
from rluf.errors import ConfigError, DataError
from rluf.signals import sampling
from rluf.signals.config import CurateConfig
from rluf.signals.engine import Logs, connect, load_logs, materialize, reaction_type_counts
from rluf.signals.filters import apply_filters, truth_scores
from rluf.signals.pii import pii_counts, scrub
from rluf.signals.rules import Rule, evaluate_rule, parse_rule, rule_names, rule_text
from rluf.utils import file_fingerprint, write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
HASH_MOD = 4_294_967_291  # largest prime < 2^32: > int32, so Spark (32-bit HASH) adds in bigint too
STEPS = ["load", "filters", "label", "dedup", "split", "resample", "contexts", "write"]


def resolve_config(config: CurateConfig | dict | str | Path | None) -> CurateConfig:
    if config is None:
        return CurateConfig()
    if isinstance(config, CurateConfig):
        return validate_config(CurateConfig, config.model_dump())
    if isinstance(config, dict):
        return validate_config(CurateConfig, config, source="<curate config dict>")
    return load_config(CurateConfig, config)


# Reaction types rluf knows by name (schema docs, simulator, serve UI). A rule naming one of these that the logs
# lack is "no reactions of that type"; any other unknown name is a typo and lists the types that exist.
KNOWN_TYPES = ("love", "like", "dislike", "regenerate", "+1", "-1", "red_flag")


def check_signal(rule: Rule, types: dict[str, int], logs_dir: Path) -> None:
    """Every reaction type the rule names must exist in the logs; raise a clear error otherwise."""
    present = ", ".join(f"{t} ({n})" for t, n in types.items()) or "none"
    for name in rule_names(rule):
        if name in types:
            continue
        if name in KNOWN_TYPES:
            raise DataError(
                f"{logs_dir}/reactions.parquet has no {name!r} reaction: nothing to learn from signal "
                f"{name!r}. Reaction types present: {present}. Choose one of them with --signal"
            )
        raise ConfigError(
            f"signal {name!r} does not exist in {logs_dir}/reactions.parquet; reaction types present: "
            f"{present}. Pass one of them with --signal (or a rule such as 'love or like and not dislike')"
        )


def label_rows(rows: ibis.Table, reactions: ibis.Table, rule: Rule) -> ibis.Table:
    """rows + `label`: the rule evaluated over which reaction types each message received."""
    names = rule_names(rule)
    rx = reactions.filter(reactions.type.isin(names))
    flags = rx.group_by("message_id").agg(**{f"r{i}": (rx.type == n).any() for i, n in enumerate(names)})
    j = rows.left_join(flags, rows.message_id == flags.message_id)
    label = evaluate_rule(rule, lambda n: ibis.coalesce(j[f"r{names.index(n)}"], False))
    return j.select(*[j[c] for c in rows.columns], label=label)


def _hashed(messages: ibis.Table) -> ibis.Table:
    """message_id, conversation_id, turn_index and h = hash(role:text) mod a prime (non-negative)."""
    h = (((messages.role + ":" + messages.text).hash() % HASH_MOD) + HASH_MOD) % HASH_MOD
    return messages.select("message_id", "conversation_id", "turn_index", h=h)


def context_keys(rows: ibis.Table, hashed: ibis.Table, k: int) -> ibis.Table:
    """message_id -> (ctx0, ctx1): a hash key of the last-k-message context of each row.

    ctx0 = sum_j h_j and ctx1 = sum_j h_j * (t_j - t) over the k messages before turn t: order-sensitive and
    offset-invariant (the same context at any depth of a conversation gets the same key).
    """
    pairs = rows.join(hashed, [rows.conversation_id == hashed.conversation_id, hashed.turn_index < rows.turn_index,
                               hashed.turn_index >= rows.turn_index - k])
    rel = pairs.turn_index_right - pairs.turn_index  # t_j - t, in [-k, -1]
    return pairs.group_by(pairs.message_id).agg(ctx0=pairs.h.sum(), ctx1=(pairs.h * rel).sum())


def dedup(rows: ibis.Table, messages: ibis.Table, k: int, aggregate: str) -> ibis.Table:
    """Merge rows with identical (last-k context, completion); keep the earliest, aggregate labels, count copies.

    Two stages, so the k-message context is hashed only where a duplicate is possible: rows whose completion
    (`comp`, hashed when the rows were read) and previous message are both shared with another row get the full
    context key; the others are unique as they are.
    """
    hashed = _hashed(messages)
    prev = hashed.select(pcid="conversation_id", pturn="turn_index", prev="h")
    r = rows.join(prev, [rows.conversation_id == prev.pcid, prev.pturn == rows.turn_index - 1]).drop("pcid", "pturn")
    r = r.mutate(n1=r.count().over(ibis.window(group_by=["comp", "prev"])))
    cols = [c for c in rows.columns if c != "comp"]
    unique = r.filter(r.n1 == 1).select(*cols).mutate(n_copies=ibis.literal(1, "int64"))
    cand = r.filter(r.n1 > 1)
    cand = cand.join(context_keys(cand.select("message_id", "conversation_id", "turn_index"), hashed, k),
                     "message_id")
    agg = {c: cand[c].argmin(cand.created_at) for c in cols if c != "label"}
    label = cand.label.any() if aggregate == "any" else cand.label.cast("float64").mean() > 0.5
    merged = cand.group_by(["ctx0", "ctx1", "comp"]).agg(**agg, label=label, n_copies=cand.count())
    return unique.union(merged.select(*unique.columns))


def split_rows(logs: Logs, rows: ibis.Table, labelled: ibis.Table, cfg: CurateConfig) -> tuple[ibis.Table, dict]:
    """Assign each row to train / validation / test by its conversation's time (straddlers dropped).

    A conversation's time span is that of its labelled assistant messages, so every validation row is strictly
    later than every train row, and every test row strictly later than every validation row.
    """
    a = labelled
    conv = a.group_by("conversation_id").agg(start=a.created_at.min().epoch_seconds(),
                                              end=a.created_at.max().epoch_seconds())
    f_val, f_test = cfg.split.validation_fraction, cfg.split.test_fraction
    q = logs.con.execute(conv.agg(t1=conv.start.quantile(1 - f_val - f_test), t2=conv.start.quantile(1 - f_test)))
    t1, t2 = float(q["t1"][0]), float(q["t2"][0])
    j = rows.join(conv, "conversation_id")
    split = ibis.cases(
        (j.end < t1, "train"),
        ((j.start >= t1) & (j.end < t2), "validation"),
        (j.start >= t2, "test"),
        else_="straddle",
    )
    j = j.mutate(split=split)
    if cfg.split.user_disjoint:
        u = sampling.uniform(j.user_id, f"users{cfg.sample.seed}")
        user_split = ibis.cases((u < 1 - f_val - f_test, "train"), (u < 1 - f_test, "validation"), else_="test")
        j = j.mutate(split=ibis.cases((j.split == "straddle", "straddle"), (user_split != j.split, "other_user"),
                                      else_=j.split))
    return j.drop("start", "end"), {"train_before": t1, "test_from": t2}


def build_split(logs: Logs, kept: ibis.Table, k: int, pii: bool) -> ibis.Table:
    """Output rows for `kept` rows only: prompt = last k messages as chat messages, completion, label, metadata.

    One range join fetches, for each kept row at turn t, the messages at turns t-k..t of its conversation:
    turns < t become the prompt (ordered by turn), turn t the completion.
    """
    m = logs.messages.select("conversation_id", turn="turn_index", role="role", text="text")
    if pii:
        m = m.mutate(text=scrub(m.text))
    pairs = kept.join(m, [kept.conversation_id == m.conversation_id, m.turn <= kept.turn_index,
                          m.turn >= kept.turn_index - k])
    is_ctx = pairs.turn < pairs.turn_index
    # (turn, role, content) structs sort by turn first; sorting the array instead of an ordered aggregate
    # keeps this portable (Spark has no ORDER BY inside collect_list)
    msg = ibis.struct({"turn": pairs.turn, "role": pairs.role, "content": pairs.text})
    keys = ["message_id", "copy", "split", "conversation_id", "user_id", "created_at", "model_id", "label", "weight"]
    out = pairs.group_by(keys).agg(prompt=msg.collect(where=is_ctx), ctext=pairs.text.arbitrary(where=~is_ctx))
    out = out.mutate(prompt=out.prompt.sort().map(lambda m: ibis.struct({"role": m.role, "content": m.content})))
    completion = ibis.array([ibis.struct({"role": ibis.literal("assistant"), "content": out.ctext})])
    return out.select(
        prompt=out.prompt, completion=completion, label=out.label, message_id=out.message_id,
        conversation_id=out.conversation_id, user_id=out.user_id, created_at=out.created_at,
        weight=out.weight, model_id=out.model_id, split=out.split,
    )


def _count(con, table: ibis.Table) -> int:
    return int(con.execute(table.count()))


def _check_times(con, m: ibis.Table, logs_dir: Path) -> None:
    r = con.execute(m.agg(lo=m.created_at.min(), hi=m.created_at.max(), n=m.count()))
    if int(r["n"][0]) == 0:
        raise DataError(f"{logs_dir}/messages.parquet has no messages")
    if r["lo"][0] == r["hi"][0]:
        raise DataError(
            f"all {int(r['n'][0])} messages in {logs_dir}/messages.parquet have the same created_at "
            f"({r['lo'][0]}): splits by time are impossible. Fix the timestamps at ingestion (rluf ingest)"
        )


def _read_rows(con, logs: Logs) -> ibis.Table:
    """Assistant messages that have a context (turn >= 1), narrow, with `comp` = hash of the text; read once."""
    m = logs.messages
    a = m.filter((m.role == "assistant") & (m.turn_index >= 1))
    comp = ((("assistant:" + a.text).hash() % HASH_MOD) + HASH_MOD) % HASH_MOD  # same as _hashed
    return materialize(con, a.select("message_id", "conversation_id", "user_id", "created_at", "turn_index",
                                     "model_id", comp=comp), "assistant")


def _label(con, logs: Logs, rows: ibis.Table, reactions: ibis.Table, rule: Rule, signal: str) -> tuple:
    labelled = materialize(con, label_rows(rows, reactions, rule), "labelled")
    lab = con.execute(labelled.agg(n=labelled.count(), pos=labelled.label.cast("int64").sum()))
    n_lab, n_pos = int(lab["n"][0]), int(lab["pos"][0] or 0)
    if n_pos == 0:
        raise DataError(
            f"no assistant message in {logs.logs_dir} is positive under signal {signal!r} after filtering "
            f"({n_lab} rows); choose another signal (rluf signals lists them) or relax the filters"
        )
    return labelled, n_lab, n_pos


def _split_counts(con, rows: ibis.Table, cfg: CurateConfig) -> dict[str, tuple[int, int]]:
    sc = con.to_pyarrow(rows.group_by("split").agg(n=rows.count(), pos=rows.label.cast("int64").sum()))
    by_split = dict(zip(sc["split"].to_pylist(), zip(sc["n"].to_pylist(), sc["pos"].to_pylist(), strict=True),
                        strict=True))
    for s in SPLITS:
        if by_split.get(s, (0, 0))[0] == 0:
            raise DataError(
                f"the {s} split is empty ({by_split}); the logs span too little time or too few conversations "
                f"for split fractions validation={cfg.split.validation_fraction}, test={cfg.split.test_fraction}"
                f"{' with user_disjoint' if cfg.split.user_disjoint else ''}. Use more logs or change split.*"
            )
    return by_split


def _resample(con, rows: ibis.Table, by_split: dict, cfg: CurateConfig) -> tuple[ibis.Table, dict]:
    """Train resampled to the target rate, validation/test capped; one table with `split`, `copy`, `weight`."""
    n_train, p_train = by_split["train"]
    plan = sampling.plan_train(n_train - p_train, p_train, cfg.sample.target_rate, cfg.sample.upsample_positives)
    train = materialize(con, sampling.resample_train(rows.filter(rows.split == "train"), plan, cfg.sample.seed),
                        "train")
    parts = [sampling.weight_train(con, train, plan)]
    for s in ("validation", "test"):
        parts.append(sampling.cap_eval(con, rows.filter(rows.split == s), by_split[s][0], cfg.sample.eval_max_rows,
                                       cfg.sample.seed))
    cols = parts[0].columns
    parts = [t.select(*cols).mutate(copy=t.copy.cast("int64"), weight=t.weight.cast("float64")) for t in parts]
    kept = parts[0].union(parts[1]).union(parts[2])
    return materialize(con, kept, "kept"), plan


def curate(
    logs_dir: str | Path,
    out_dir: str | Path,
    config: CurateConfig | dict | str | Path | None = None,
    *,
    truth_dir: str | Path | None = None,
    con: Any = None,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Curate `logs_dir` into `out_dir`/{train,validation,test}.parquet and manifest.json; return the manifest."""
    cfg = resolve_config(config)
    rule = parse_rule(cfg.signal.rule)
    step = on_step or (lambda name: None)
    t_start = time.perf_counter()
    e = cfg.engine
    con = con if con is not None else connect(e.memory_limit, e.threads, e.temp_directory)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    step("load")
    logs = load_logs(con, logs_dir)
    types = reaction_type_counts(logs)
    check_signal(rule, types, logs.logs_dir)
    _check_times(con, logs.messages, logs.logs_dir)
    asst = _read_rows(con, logs)
    counts: dict[str, Any] = {"input": {"rows": _count(con, asst), "reactions": sum(types.values())}}

    step("filters")
    fr = apply_filters(logs, asst, cfg.filters)
    rows = asst
    if cfg.filters.drop_flagged_rows and fr.bad_table is not None:
        rows = asst.anti_join(fr.bad_table, "user_id")

    step("label")
    labelled, n_lab, n_pos = _label(con, logs, rows, fr.reactions, rule, cfg.signal.rule)
    counts["filters"] = {**fr.report, "users_flagged": len(fr.bad_users), "rows_out": n_lab,
                         "reactions_out": _count(con, fr.reactions)}
    counts["label"] = {"rows": n_lab, "positives": n_pos}

    step("dedup")
    if cfg.dedup.enabled:
        rows = dedup(labelled, logs.messages, cfg.context.k, cfg.dedup.aggregate)
    else:
        rows = labelled.drop("comp").mutate(n_copies=ibis.literal(1, "int64"))

    step("split")
    rows, cutoffs = split_rows(logs, rows, labelled, cfg)
    rows = materialize(con, rows, "rows")
    by_split = _split_counts(con, rows, cfg)
    counts["dedup"] = {"rows_in": n_lab, "rows_out": sum(n for n, _ in by_split.values())}
    counts["split"] = {s: {"rows": n, "positives": p} for s, (n, p) in sorted(by_split.items())}

    step("resample")
    kept, plan = _resample(con, rows, by_split, cfg)
    counts["resample"] = {"plan": plan}
    counts["output"] = {s: sampling.summarize(con, kept.filter(kept.split == s)) for s in SPLITS}

    step("contexts")
    built = materialize(con, build_split(logs, kept, cfg.context.k, cfg.pii.enabled), "built")
    step("write")
    for s in SPLITS:
        con.to_parquet(built.filter(built.split == s).drop("split").order_by(["created_at", "message_id"]),
                       out / f"{s}.parquet")
    pii = {s: _pii_report(logs, kept.filter(kept.split == s), cfg.context.k) for s in SPLITS} if cfg.pii.enabled \
        else None
    manifest = _manifest(cfg, rule, types, logs, counts, by_split, n_pos / n_lab, cutoffs, pii, t_start)
    if truth_dir is not None:
        manifest["filters_vs_truth"] = truth_scores(fr.flagged, fr.bad_users, load_truth(truth_dir))
    write_json(out / "manifest.json", manifest)
    return manifest


def _manifest(cfg: CurateConfig, rule: Rule, types: dict, logs: Logs, counts: dict, by_split: dict,
              rate_all: float, cutoffs: dict, pii: dict | None, t_start: float) -> dict:
    out = counts["output"]["train"]
    return {
        "signal": cfg.signal.rule, "signal_rule": rule_text(rule), "reaction_types": types,
        "natural_rate": by_split["train"][1] / by_split["train"][0], "natural_rate_all": rate_all,
        "target_rate": cfg.sample.target_rate, "train_rate": out["rate"], "train_weighted_rate": out["weighted_rate"],
        "split_cutoffs_epoch_s": cutoffs, "counts": counts, "pii": pii, "config": cfg.model_dump(mode="json"),
        "input": {"logs_dir": str(logs.logs_dir), "files": [p.name for p in logs.files],
                  "fingerprint": file_fingerprint(logs.files)},
        "files": {s: f"{s}.parquet" for s in SPLITS},
        "seconds": round(time.perf_counter() - t_start, 3),
    }


def _pii_report(logs: Logs, kept: ibis.Table, k: int) -> dict[str, int]:
    """How many texts written (context messages and completions) contained each kind of PII."""
    m = logs.messages
    j = kept.join(m, [kept.conversation_id == m.conversation_id, m.turn_index <= kept.turn_index,
                      m.turn_index >= kept.turn_index - k])
    r = logs.con.execute(j.agg(**pii_counts(j.text)))
    return {c: int(r[c][0] or 0) for c in r.columns}


def load_truth(truth_dir: str | Path) -> dict[str, str]:
    """Adversarial accounts from a simulator truth folder: user_id -> kind (from any file with a user_id column
    whose name contains 'adversar')."""
    import pyarrow.parquet as pq

    path = Path(truth_dir)
    files = sorted(p for p in path.glob("*adversar*") if p.suffix in (".parquet", ".csv", ".jsonl", ".json"))
    if not files:
        raise DataError(f"{path} has no adversarial-accounts file (expected e.g. {path}/adversarial.parquet)")
    f = files[0]
    if f.suffix == ".parquet":
        t = pq.read_table(f)
    else:
        import pandas as pd

        t = pd.read_csv(f) if f.suffix == ".csv" else pd.read_json(f, lines=f.suffix == ".jsonl")
        import pyarrow as pa

        t = pa.Table.from_pandas(t)
    if "user_id" not in t.column_names:
        raise DataError(f"{f} has no user_id column (columns: {t.column_names})")
    kinds = t["kind"].to_pylist() if "kind" in t.column_names else ["adversarial"] * len(t)
    return {str(u): str(k) for u, k in zip(t["user_id"].to_pylist(), kinds, strict=True)}
