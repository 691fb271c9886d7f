"""`rluf curate`: canonical logs -> the P[Love] training set, in TRL's unpaired-preference form.

The pipeline is written once as Ibis expressions (DuckDB by default; also run on Spark in the tests) and ordered
so that only cheap, columnar work touches every message; everything expensive touches only the rows that
survive sampling:

  every row   1. load       one scan of the assistant messages: per (conversation, user) first/last time and
                            count; one join of the (small) reactions table with the messages
              2. filters    adversarial users and reactions (rluf.signals.filters): aggregates per user
              3. label      label = rule(reaction types), kept as the small table of messages whose label differs
                            from the rule's value for a message nobody reacted to ("exceptions")
              4. split      cut-offs from conversation start times; per (conversation, user) split, so validation
                            and test are strictly later than train (optionally user-disjoint)
              5. resample   one filter over the rows (time against the cut-offs, hash draw) picks the rows kept:
                            train at `target_rate`; validation/test every positive and ~`eval_max_negatives`
                            negatives (both reweighted to the split's natural rate)
  kept rows   6. contexts   the messages of the kept rows' conversations, read once (PII scrubbed here)
              7. dedup      identical (last-k context, completion) pairs among the kept rows merged (hash key),
                            labels aggregated; weights computed after it so the weighted rate stays exact
              8. write      prompts assembled in Arrow from the sorted messages (rluf.signals.contexts) and
                            written as Parquet row groups; manifest.json

RLUF (Han et al., 2025): Love chosen as the signal, 10-turn context, held-out conversations later in time than
all training data, Love upsampled from its natural ~0.1% to 10%.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import numpy as np

from rluf.config import load_config, validate_config
from rluf.errors import ConfigError, DataError
from rluf.signals import sampling
from rluf.signals.config import CurateConfig
from rluf.signals.contexts import ContextIndex, dedup, fetch_arrow, time_order, write_split
from rluf.signals.engine import Logs, materialize, open_logs, raw_hash, reaction_type_counts, release
from rluf.signals.filters import apply_filters, reactions_with_message, truth_scores
from rluf.signals.pii import PATTERNS
from rluf.signals.rules import Rule, evaluate_rule, parse_rule, rule_names, rule_text
from rluf.utils import write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
HASH_MOD = 4_294_967_291  # largest prime < 2^32: > int32, so Spark (32-bit HASH) adds in bigint too
STEPS = ["load", "filters", "label", "split", "resample", "contexts", "dedup", "write"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROW_COLUMNS = ["message_id", "conversation_id", "user_id", "created_at", "turn_index", "model_id"]


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


def check_signal(rule: Rule, types: dict[str, int], where: str) -> None:
    """Every reaction type the rule names must exist in the logs; raise a clear error otherwise."""
    present = ", ".join(f"{t} ({n})" for t, n in types.items()) or "none"
    for name in rule_names(rule):
        if name in types:
            continue
        if name in KNOWN_TYPES:
            raise DataError(
                f"{where} has no {name!r} reaction: nothing to learn from signal "
                f"{name!r}. Reaction types present: {present}. Choose one of them with --signal"
            )
        raise ConfigError(
            f"signal {name!r} does not exist in {where}; reaction types present: "
            f"{present}. Pass one of them with --signal (or a rule such as 'love or like and not dislike')"
        )


def assistant_rows(logs: Logs) -> ibis.Table:
    """Assistant messages that have a context (turn >= 1): the rows of the training set, narrow (no text)."""
    m = logs.messages
    return m.filter((m.role == "assistant") & (m.turn_index >= 1)).select(*ROW_COLUMNS)


def conversation_users(rows: ibis.Table) -> ibis.Table:
    """(conversation_id, user_id) -> first and last row time and row count: the only per-row aggregate."""
    return rows.group_by(["conversation_id", "user_id"]).agg(
        start=rows.created_at.min(), end=rows.created_at.max(), n=rows.count())


def default_label(rule: Rule) -> bool:
    """The rule's value for a message without any reaction (True for rules such as `not dislike`)."""
    return bool(evaluate_rule(rule, lambda name: np.False_))


def label_exceptions(reactions: ibis.Table, rule: Rule, bad: ibis.Table | None) -> ibis.Table:
    """Rows whose label differs from `default_label(rule)`: the rule over the reaction types each message
    received (`reactions` are the filtered reactions with their message's columns, `msg_*`). Small: at most
    one row per reacted message. Messages of flagged users (`bad`) are left out."""
    names = rule_names(rule)
    r = reactions.filter(reactions.type.isin(names) & (reactions.msg_role == "assistant")
                         & (reactions.msg_turn_index >= 1))
    if bad is not None:
        r = r.anti_join(bad, r.msg_user_id == bad.user_id)
    keys = {"message_id": r.message_id, "conversation_id": r.msg_conversation_id, "user_id": r.msg_user_id,
            "created_at": r.msg_at, "turn_index": r.msg_turn_index, "model_id": r.msg_model_id}
    flags = r.group_by(**keys).agg(**{f"r{i}": (r.type == n).any() for i, n in enumerate(names)})
    label = evaluate_rule(rule, lambda n: flags[f"r{names.index(n)}"])
    c0 = default_label(rule)
    return flags.filter(~label if c0 else label).select(*ROW_COLUMNS, label=ibis.literal(not c0))


def cutoff_time(epoch_s: float) -> datetime:
    """A cut-off in epoch seconds as an exact microsecond timestamp (the resolution of the logs)."""
    return EPOCH + timedelta(microseconds=round(epoch_s * 1e6))


def conversation_spans(conv_users: ibis.Table) -> ibis.Table:
    """conversation_id -> cstart, cend (first and last row time over its users) and n (rows)."""
    cu = conv_users
    return cu.group_by("conversation_id").agg(cstart=cu.start.min(), cend=cu.end.max(), n=cu.n.sum())


def split_keys(cfg: CurateConfig) -> list[str]:
    """The key of the split table: a conversation's rows share its split unless users are split too."""
    return ["conversation_id", "user_id"] if cfg.split.user_disjoint else ["conversation_id"]


def split_table(conv: ibis.Table, conv_users: ibis.Table, t1: datetime, t2: datetime,
                cfg: CurateConfig) -> ibis.Table:
    """`split_keys` + n -> split: train / validation / test, `straddle` or `other_user`.

    `conv` is `conversation_spans` of `conv_users` (flagged users' rows dropped). A conversation's time span is
    that of its rows (assistant messages with a context), so every validation row is strictly later than every
    train row and every test row strictly later than every validation row: a row's split is also given by its
    own time (< t1, [t1, t2), >= t2). Without `user_disjoint` the table has one row per conversation (no join
    back to the per-(conversation, user) table); with it, one per (conversation, user).
    """
    j = conv
    if cfg.split.user_disjoint:
        cu = conv_users
        c = conv.select(cid="conversation_id", cstart="cstart", cend="cend")
        j = cu.join(c, cu.conversation_id == c.cid)
    ts = conv.cstart.type()
    t1, t2 = ibis.literal(t1, type=ts), ibis.literal(t2, type=ts)
    split = ibis.cases(
        (j.cend < t1, "train"),
        ((j.cstart >= t1) & (j.cend < t2), "validation"),
        (j.cstart >= t2, "test"),
        else_="straddle",
    )
    if cfg.split.user_disjoint:
        f_val, f_test = cfg.split.validation_fraction, cfg.split.test_fraction
        how = cfg.sample.hash
        u = sampling.draw(j.user_id, f"users{cfg.sample.seed}", how)
        user_split = ibis.cases((u < sampling.threshold(1 - f_val - f_test, how), "train"),
                                (u < sampling.threshold(1 - f_test, how), "validation"), else_="test")
        split = ibis.cases((split == "straddle", "straddle"), (user_split != split, "other_user"), else_=split)
    return j.select(*split_keys(cfg), "n", split=split)


def split_cutoffs(con, conv: ibis.Table, exceptions: ibis.Table, conv_users_all: ibis.Table,
                  cfg: CurateConfig) -> dict:
    """Cut-offs t1, t2 (quantiles of conversation start times in `conv`, `conversation_spans`), rows after
    filtering, label exceptions and input rows (`conv_users_all`: all users): one query."""
    f_val, f_test = cfg.split.validation_fraction, cfg.split.test_fraction
    start = conv.cstart.epoch_seconds()
    r = con.to_pyarrow(conv.agg(t1=start.quantile(1 - f_val - f_test), t2=start.quantile(1 - f_test),
                                n=conv.n.sum(), x=exceptions.count().as_scalar(),
                                n_in=conv_users_all.n.sum().as_scalar())).to_pylist()[0]
    return {"t1": r["t1"], "t2": r["t2"], "n": int(r["n"] or 0), "x": int(r["x"] or 0), "n_in": int(r["n_in"] or 0)}


def select_kept(rows: ibis.Table, exceptions: ibis.Table, splits: ibis.Table, plan: dict,
                t1: datetime, t2: datetime, c0: bool, seed: int, bad: ibis.Table | None = None,
                how: str = "native") -> ibis.Table:
    """The rows resampling keeps, with `label` and `split`, chosen without labelling or splitting every row.

    A row's split follows from its time (train < t1 <= validation < t2 <= test, the same exact timestamps as
    `split_table`), so one cheap filter over the rows (time against the cut-offs, then a hash draw with the keep
    probability of that split and of the default label) picks the candidates. Only the candidates are joined
    with the (small) label exceptions and with the split table, which drops straddling and other-user rows
    (and flagged users' rows, `bad`, when the split table is per conversation). Keep probabilities: `plan["pos_keep"]`, `plan["neg_keep"]` (train), `plan["{split}_pos_keep"]`,
    `plan["{split}_neg_keep"]` (validation, test). `how`: the draw's hash, "native" or "md5" (`sampling.draw`).
    """

    def pick(t: ibis.Table, cls: str) -> ibis.Table:
        def draw(q: float, salt: str) -> ibis.BooleanValue:
            if q >= 1:
                return ibis.literal(True)
            return sampling.draw(t.message_id, f"{salt}{seed}", how) < sampling.threshold(q, how)

        if all(plan[k] >= 1 for k in (f"{cls}_keep", f"validation_{cls}_keep", f"test_{cls}_keep")):
            return t
        ts = t.created_at.type()
        cond = ibis.cases(
            (t.created_at < ibis.literal(t1, type=ts), draw(plan[f"{cls}_keep"], "train")),
            (t.created_at < ibis.literal(t2, type=ts), draw(plan[f"validation_{cls}_keep"], "eval")),
            else_=draw(plan[f"test_{cls}_keep"], "eval"),
        )
        return t.filter(cond)

    plain = pick(rows, "pos" if c0 else "neg").anti_join(exceptions, "message_id")
    per_user = "user_id" in splits.columns
    if bad is not None and not per_user:  # exceptions never hold flagged users' rows
        plain = plain.anti_join(bad, "user_id")
    plain = plain.mutate(label=ibis.literal(c0))
    cand = plain.union(pick(exceptions, "neg" if c0 else "pos").select(*plain.columns))
    if per_user:
        s = splits.filter(splits.split.isin(SPLITS)).select(scid="conversation_id", suid="user_id", split="split")
        j = cand.join(s, [cand.conversation_id == s.scid, cand.user_id == s.suid])
    else:
        s = splits.filter(splits.split.isin(SPLITS)).select(scid="conversation_id", split="split")
        j = cand.join(s, cand.conversation_id == s.scid)
    return j.select(*ROW_COLUMNS, "label", "split")


def context_messages(logs: Logs, conversations: ibis.Table, dedup: bool, pii: bool) -> ibis.Table:
    """The messages of the kept rows' `conversations` (one scan of the messages, joined with their ids):
    message_id, turn, role, text (scrubbed with `pii`), the hash h of role:text for the dedup key, and one 0/1
    column per kind of PII found (in `scrub`'s order). Unsorted: everything after this is Arrow work over these
    messages (rluf.signals.contexts)."""
    m = logs.messages
    conv = conversations
    j = m.join(conv, m.conversation_id == conv.kcid)
    cols: dict[str, Any] = {"conversation_id": j.conversation_id, "message_id": j.message_id, "turn": j.turn_index,
                            "role": j.role}
    text = j.text
    if dedup:
        cols["h"] = ((raw_hash(j.role + ":" + j.text) % HASH_MOD) + HASH_MOD) % HASH_MOD
    if pii:
        for name, (pattern, placeholder) in PATTERNS.items():
            cols[f"pii_{name}"] = text.re_search(pattern).cast("int8")
            text = text.re_replace(pattern, placeholder)
    cols["text"] = text
    return j.select(**cols)


def _check_times(con, m: ibis.Table, where: str) -> None:
    r = con.to_pyarrow(m.agg(lo=m.created_at.min(), hi=m.created_at.max(), n=m.count())).to_pylist()[0]
    if int(r["n"]) == 0:
        raise DataError(f"{where} has no messages")
    if r["lo"] == r["hi"]:
        raise DataError(
            f"all {int(r['n'])} messages in {where} have the same created_at "
            f"({r['lo']}): splits by time are impossible. Fix the timestamps at ingestion (rluf ingest)"
        )


def _split_counts(con, splits: ibis.Table, exceptions: ibis.Table, c0: bool,
                  cfg: CurateConfig) -> dict[str, tuple[int, int]]:
    """split -> (rows, positives), from the split table and the label exceptions (one query)."""
    keys = split_keys(cfg)
    x = exceptions.group_by(*keys).agg(x=exceptions.count()).rename({f"x_{k}": k for k in keys})
    j = splits.left_join(x, [splits[k] == x[f"x_{k}"] for k in keys])
    t = con.to_pyarrow(j.group_by("split").agg(n=j.n.sum(), x=ibis.coalesce(j.x, 0).sum())).to_pylist()
    by_split = {r["split"]: (int(r["n"]), int(r["n"]) - int(r["x"]) if c0 else int(r["x"])) for r in t}
    for s in SPLITS:
        if by_split.get(s, (0, 0))[0] == 0:
            raise DataError(
                f"the {s} split is empty ({by_split}); the logs span too little time or too few conversations "
                f"for split fractions validation={cfg.split.validation_fraction}, test={cfg.split.test_fraction}"
                f"{' with user_disjoint' if cfg.split.user_disjoint else ''}. Use more logs or change split.*"
            )
    return by_split


def _eval_keep(by_split: dict, max_rows: int | None, max_negatives: int | None) -> dict[str, float]:
    """Keep probabilities of validation/test rows per class: every positive and at most ~`max_negatives`
    negatives (q_neg = max_negatives / negatives), and both classes at max_rows / n above `max_rows`."""
    out = {}
    for s in ("validation", "test"):
        n, p = by_split[s]
        q = 1.0 if not max_rows or n <= max_rows else max_rows / n
        q_neg = q if not max_negatives or n - p <= max_negatives else min(q, max_negatives / (n - p))
        out.update({f"{s}_pos_keep": q, f"{s}_neg_keep": q_neg})
    return out


def _kept_counts(split: np.ndarray, label: np.ndarray, n_copies: np.ndarray, loc: dict,
                 keep: np.ndarray, pii: bool) -> dict[tuple[str, bool], dict[str, int]]:
    """(split, label) -> rows, rows before dedup and PII counts of the final kept rows (copies not included).
    `split`, `label`, `n_copies` are aligned with `keep` (row indices)."""
    cols = [f"pii_{n}" for n in PATTERNS] if pii else []
    out = {}
    for s in SPLITS:
        for lab in (True, False):
            sel = (split == s) & (label == lab)
            v = {"rows": int(sel.sum()), "rows_in": int(n_copies[sel].sum())}
            v.update({c: int(loc[c][keep[sel]].sum()) for c in cols})
            out[(s, lab)] = v
    return out


def _weights(by_split: dict, kept: dict, plan: dict, copies: int) -> tuple[dict, dict]:
    """Row weights per (split, label) and the output summary per split.

    Train: w = (rows of the class before resampling) / (rows of the class written, copies included), so
    sum w y / sum w = P / (P + N) = the natural rate exactly. Validation/test: 1 when nothing was sampled, else
    the same ratio per class (rows of the class in the split / rows of the class written), so the weighted
    rate is the split's natural rate exactly.
    """
    weights, output = {}, {}
    for s in SPLITS:
        n_pos = kept.get((s, True), {}).get("rows", 0)
        n_neg = kept.get((s, False), {}).get("rows", 0)
        if s == "train":
            w_pos = plan["positives"] / (copies * n_pos) if n_pos else 0.0
            w_neg = plan["negatives"] / n_neg if n_neg else 0.0
            n_pos *= copies
        elif plan[f"{s}_pos_keep"] >= 1 and plan[f"{s}_neg_keep"] >= 1:
            w_pos = w_neg = 1.0
        else:
            n_split, p_split = by_split[s]
            w_pos = p_split / n_pos if n_pos else 0.0
            w_neg = (n_split - p_split) / n_neg if n_neg else 0.0
        weights[s] = {True: w_pos, False: w_neg}
        n = n_pos + n_neg
        w = w_pos * n_pos + w_neg * n_neg
        output[s] = {"rows": n, "positives": n_pos, "rate": n_pos / n if n else None,
                     "weighted_rate": w_pos * n_pos / w if w else None}
    return weights, output


def curate(
    logs_dir: str | Path | Logs,
    out_dir: str | Path,
    config: CurateConfig | dict | str | Path | None = None,
    *,
    truth_dir: str | Path | None = None,
    con: Any = None,
    on_step: Callable[[str], None] | None = None,
) -> dict:
    """Curate `logs_dir` into `out_dir`/{train,validation,test}.parquet and manifest.json; return the manifest.

    `logs_dir` is a folder of canonical Parquet logs, read by `con` (DuckDB by default), or logs that already
    live in a backend (`rluf.signals.engine.logs_from_tables`), in which case the pipeline runs there."""
    cfg = resolve_config(config)
    rule = parse_rule(cfg.signal.rule)
    c0 = default_label(rule)
    k = cfg.context.context_turns
    step = on_step or (lambda name: None)
    t_start = time.perf_counter()
    e = cfg.engine
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    step("load")
    logs = open_logs(logs_dir, con, memory_limit=e.memory_limit, threads=e.threads, temp_directory=e.temp_directory)
    con = logs.con
    types = reaction_type_counts(logs)
    check_signal(rule, types, logs.where("reactions"))
    _check_times(con, logs.messages, logs.where("messages"))
    rows = assistant_rows(logs)
    cu = conv_users_table = materialize(con, conversation_users(rows), "conv_users")
    rx = materialize(con, reactions_with_message(logs, ("conversation_id", "user_id", "role", "turn_index",
                                                        "model_id")), "reactions")

    step("filters")
    per_user = cu.group_by("user_id").agg(n=cu.n.sum())
    fr = apply_filters(logs, rows, cfg.filters, per_user=per_user, reactions=rx)
    bad = fr.bad_table if cfg.filters.drop_flagged_rows else None
    if bad is not None:
        cu = cu.anti_join(bad, "user_id")

    step("label")
    exceptions = materialize(con, label_exceptions(fr.reactions, rule, bad), "exceptions")
    release(con, rx)
    conv = materialize(con, conversation_spans(cu), "conversations")
    cut = split_cutoffs(con, conv, exceptions, conv_users_table, cfg)
    n_lab = cut["n"]
    n_pos = n_lab - cut["x"] if c0 else cut["x"]
    counts: dict[str, Any] = {"input": {"rows": cut["n_in"], "reactions": sum(types.values())}}
    counts["filters"] = {**fr.report, "users_flagged": len(fr.bad_users), "rows_out": n_lab,
                         "reactions_out": fr.n_reactions}
    counts["label"] = {"rows": n_lab, "positives": n_pos}
    if n_pos == 0:
        raise DataError(
            f"no assistant message in {logs.where('messages')} is positive under signal {cfg.signal.rule!r} after filtering "
            f"({n_lab} rows); choose another signal (rluf signals lists them) or relax the filters"
        )

    step("split")
    t1, t2 = cutoff_time(float(cut["t1"])), cutoff_time(float(cut["t2"]))
    splits = materialize(con, split_table(conv, cu, t1, t2, cfg), "splits")
    release(con, conv, conv_users_table)
    by_split = _split_counts(con, splits, exceptions, c0, cfg)
    counts["split"] = {s: {"rows": n, "positives": p} for s, (n, p) in sorted(by_split.items())}

    step("resample")
    n_train, p_train = by_split["train"]
    plan = sampling.plan_train(n_train - p_train, p_train, cfg.sample.target_rate, cfg.sample.upsample_positives)
    plan.update(_eval_keep(by_split, cfg.sample.eval_max_rows, cfg.sample.eval_max_negatives))
    kept = materialize(con, select_kept(rows, exceptions, splits, plan, t1, t2, c0, cfg.sample.seed, bad,
                                          cfg.sample.hash), "kept")
    release(con, exceptions, splits, *fr.temp_tables)

    step("contexts")
    rows_kept = fetch_arrow(con, kept)  # unsorted: ordering in the engine would hold a second, sorted copy
    conversations = materialize(con, kept.select(kcid="conversation_id").distinct(), "kept_conversations")
    release(con, kept)
    index = ContextIndex(con, context_messages(logs, conversations, cfg.dedup.enabled, cfg.pii.enabled), k)
    release(con, conversations)
    loc = index.locate(rows_kept)

    step("dedup")
    order = time_order(rows_kept)
    label = rows_kept.column("label").to_numpy()
    if cfg.dedup.enabled:
        keep, label, n_copies = dedup(order, loc, label, cfg.dedup.aggregate)
    else:
        keep, label, n_copies = order, label[order], np.ones(len(order), np.int64)
    split = rows_kept.column("split").to_numpy(zero_copy_only=False)[keep]
    kc = _kept_counts(split, label, n_copies, loc, keep, cfg.pii.enabled)
    weights, output = _weights(by_split, kc, plan, plan["copies"])
    counts["resample"] = {"plan": plan}
    counts["dedup"] = {"scope": "kept rows", "rows_in": sum(v["rows_in"] for v in kc.values()),
                       "rows_out": sum(v["rows"] for v in kc.values())}
    counts["output"] = output

    step("write")
    for s in SPLITS:
        sel = np.flatnonzero(split == s)
        lab = label[sel]
        if s == "train" and plan["copies"] > 1:  # c copies of each kept positive, next to each other
            sel = np.repeat(sel, np.where(lab, plan["copies"], 1))
            lab = label[sel]
        weight = np.where(lab, weights[s][True], weights[s][False])
        write_split(rows_kept, keep[sel], lab, weight, loc, index, out / f"{s}.parquet")
    pii = None
    if cfg.pii.enabled:
        pii = {s: {f"pii_{n}": sum(v[f"pii_{n}"] * (plan["copies"] if s == "train" and lab else 1)
                                   for (sp, lab), v in kc.items() if sp == s) for n in PATTERNS} for s in SPLITS}
    cutoffs = {"train_before": (t1 - EPOCH).total_seconds(), "test_from": (t2 - EPOCH).total_seconds()}
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
        "input": logs.source(),
        "files": {s: f"{s}.parquet" for s in SPLITS},
        "seconds": round(time.perf_counter() - t_start, 3),
    }


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
