"""`rluf curate`: canonical logs -> the P[Love] training set, in TRL's unpaired-preference form.

The pipeline is written once as Ibis expressions (DuckDB by default; also run on Spark in the tests) and ordered
so that only cheap, columnar work touches every message; everything expensive touches only the rows that
survive sampling:

  every row   1. load       one scan of the assistant messages: per (conversation, user) first/last time and
                            count; one join of the (small) reactions table with the messages
              2. filters    adversarial users and reactions (rluf.signals.filters): aggregates per user
              3. label      label = rule(reaction types), kept as the small table of messages whose label differs
                            from the rule's value for a message nobody reacted to ("exceptions")
              4. split      by time (cut-offs from conversation start times, so validation and test are strictly
                            later than train; optionally user-disjoint), or random by conversation or by user
              5. resample   one filter over the rows (each row's split from its time or a hash, then a hash draw)
                            picks the rows kept: train at `target_rate` (or its natural rate when that is
                            higher, or `natural`); validation/test every positive and ~`eval_max_negatives`
                            negatives (both reweighted to the split's natural rate)
  kept rows   6. contexts   the messages of the kept rows' conversations, read once (PII scrubbed here); a
                            row's context is its parent_id chain (turn order where parent ids are missing)
              7. dedup      identical (context, completion) pairs among the kept rows merged (hash key),
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
from dataclasses import dataclass, field
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
from rluf.signals.filters import FilterResult, apply_filters, reactions_with_message, truth_scores
from rluf.signals.pii import PATTERNS
from rluf.signals.rules import Rule, evaluate_rule, parse_rule, rule_names, rule_text
from rluf.signals.sampling import ResamplePlan
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
    return bool(evaluate_rule(rule, lambda name: np.False_, lambda name: np.int64(0)))


def reacted_messages(reactions: ibis.Table, rule: Rule, bad: ibis.Table | None) -> ibis.Table:
    """One row per assistant message (with a context) that received any of the rule's reaction types:
    ROW_COLUMNS and `n{i}`, the count of the rule's i-th type. `reactions` are the filtered reactions with their
    message's columns (`msg_*`); messages of flagged users (`bad`) are left out."""
    names = rule_names(rule)
    r = reactions.filter(reactions.type.isin(names) & (reactions.msg_role == "assistant")
                         & (reactions.msg_turn_index >= 1))
    if bad is not None:
        r = r.anti_join(bad, r.msg_user_id == bad.user_id)
    keys = {"message_id": r.message_id, "conversation_id": r.msg_conversation_id, "user_id": r.msg_user_id,
            "created_at": r.msg_at, "turn_index": r.msg_turn_index, "model_id": r.msg_model_id}
    return r.group_by(**keys).agg(**{f"n{i}": (r.type == n).cast("int64").sum() for i, n in enumerate(names)})


def label_exceptions(reacted: ibis.Table, rule: Rule) -> ibis.Table:
    """Rows whose label differs from `default_label(rule)`: the rule over the reaction types (and counts) each
    reacted message received (`reacted_messages`). Small: at most one row per reacted message."""
    names = rule_names(rule)

    def count(n: str) -> ibis.IntegerValue:
        return reacted[f"n{names.index(n)}"]

    label = evaluate_rule(rule, lambda n: count(n) > 0, count)
    c0 = default_label(rule)
    return reacted.filter(~label if c0 else label).select(*ROW_COLUMNS, label=ibis.literal(not c0))


def cutoff_time(epoch_s: float) -> datetime:
    """A cut-off in epoch seconds as an exact microsecond timestamp (the resolution of the logs)."""
    return EPOCH + timedelta(microseconds=round(epoch_s * 1e6))


def conversation_spans(conv_users: ibis.Table) -> ibis.Table:
    """conversation_id -> cstart, cend (first and last row time over its users) and n (rows)."""
    cu = conv_users
    return cu.group_by("conversation_id").agg(cstart=cu.start.min(), cend=cu.end.max(), n=cu.n.sum())


def split_keys(cfg: CurateConfig) -> list[str]:
    """The key of the split table: a conversation's rows share its split unless users are split too."""
    by_user = cfg.split.user_disjoint or cfg.split.method == "user"
    return ["conversation_id", "user_id"] if by_user else ["conversation_id"]


def random_split(key: ibis.StringValue, salt: str, cfg: CurateConfig) -> ibis.StringValue:
    """train / validation / test by a seeded hash of `key`, in the configured proportions."""
    f_val, f_test = cfg.split.validation_fraction, cfg.split.test_fraction
    how = cfg.sample.hash
    u = sampling.draw(key, f"{salt}{cfg.sample.seed}", how)
    return ibis.cases((u < sampling.threshold(1 - f_val - f_test, how), "train"),
                      (u < sampling.threshold(1 - f_test, how), "validation"), else_="test")


def row_split(t: ibis.Table, cfg: CurateConfig, t1: datetime | None, t2: datetime | None) -> ibis.StringValue:
    """The split a row (conversation_id, user_id, created_at) belongs to if its conversation is not dropped:
    by its own time against the cut-offs (time split), or by the hash of its conversation or user."""
    if cfg.split.method == "conversation":
        return random_split(t.conversation_id, "conversations", cfg)
    if cfg.split.method == "user":
        return random_split(t.user_id, "users", cfg)
    ts = t.created_at.type()
    return ibis.cases((t.created_at < ibis.literal(t1, type=ts), "train"),
                      (t.created_at < ibis.literal(t2, type=ts), "validation"), else_="test")


def split_table(conv: ibis.Table, conv_users: ibis.Table, t1: datetime | None, t2: datetime | None,
                cfg: CurateConfig) -> ibis.Table:
    """`split_keys` + n -> split: train / validation / test, `straddle` or `other_user`.

    Time split: `conv` is `conversation_spans` of `conv_users` (flagged users' rows dropped). A conversation's
    time span is that of its rows (assistant messages with a context), so every validation row is strictly later
    than every train row and every test row strictly later than every validation row: a row's split is also
    given by its own time (< t1, [t1, t2), >= t2). Without `user_disjoint` the table has one row per
    conversation (no join back to the per-(conversation, user) table); with it, one per (conversation, user).
    Random splits (`method: conversation | user`) draw the split from a hash of the conversation or user id.
    """
    if cfg.split.method == "conversation":
        return conv.select("conversation_id", "n", split=random_split(conv.conversation_id, "conversations", cfg))
    if cfg.split.method == "user":
        cu = conv_users
        return cu.select("conversation_id", "user_id", "n", split=random_split(cu.user_id, "users", cfg))
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
        user_split = random_split(j.user_id, "users", cfg)
        split = ibis.cases((split == "straddle", "straddle"), (user_split != split, "other_user"), else_=split)
    return j.select(*split_keys(cfg), "n", split=split)


def split_cutoffs(con, conv: ibis.Table, exceptions: ibis.Table, conv_users_all: ibis.Table,
                  cfg: CurateConfig) -> dict:
    """Cut-offs t1, t2 (quantiles of conversation start times in `conv`, `conversation_spans`), rows after
    filtering, label exceptions and input rows (`conv_users_all`: all users): one query."""
    f_val, f_test = cfg.split.validation_fraction, cfg.split.test_fraction
    start = conv.cstart.epoch_seconds()
    quantiles = ({"t1": start.quantile(1 - f_val - f_test), "t2": start.quantile(1 - f_test)}
                 if cfg.split.method == "time" else {})
    r = con.to_pyarrow(conv.agg(**quantiles, n=conv.n.sum(), x=exceptions.count().as_scalar(),
                                n_in=conv_users_all.n.sum().as_scalar())).to_pylist()[0]
    return {"t1": r.get("t1"), "t2": r.get("t2"), "n": int(r["n"] or 0), "x": int(r["x"] or 0),
            "n_in": int(r["n_in"] or 0)}


def select_kept(rows: ibis.Table, exceptions: ibis.Table, splits: ibis.Table, plan: ResamplePlan,
                cfg: CurateConfig, t1: datetime | None, t2: datetime | None, c0: bool,
                bad: ibis.Table | None = None) -> ibis.Table:
    """The rows resampling keeps, with `label` and `split`, chosen without labelling or splitting every row.

    A row's split follows from its own columns (`row_split`: its time against the cut-offs, or the hash of its
    conversation or user), so one cheap filter over the rows (that split, then a hash draw with the keep
    probability of that split and of the default label) picks the candidates. Only the candidates are joined
    with the (small) label exceptions and with the split table, which drops straddling and other-user rows
    (and flagged users' rows, `bad`, when the split table is per conversation).
    """
    seed, how = cfg.sample.seed, cfg.sample.hash

    def pick(t: ibis.Table, label: bool) -> ibis.Table:
        def draw(q: float, salt: str) -> ibis.BooleanValue:
            if q >= 1:
                return ibis.literal(True)
            return sampling.draw(t.message_id, f"{salt}{seed}", how) < sampling.threshold(q, how)

        if plan.keeps_all(label):
            return t
        split = row_split(t, cfg, t1, t2)
        return t.filter(ibis.cases((split == "train", draw(plan.keep[("train", label)], "train")),
                                   (split == "validation", draw(plan.keep[("validation", label)], "eval")),
                                   else_=draw(plan.keep[("test", label)], "eval")))

    plain = pick(rows, c0).anti_join(exceptions, "message_id")
    per_user = "user_id" in splits.columns
    if bad is not None and not per_user:  # exceptions never hold flagged users' rows
        plain = plain.anti_join(bad, "user_id")
    plain = plain.mutate(label=ibis.literal(c0))
    cand = plain.union(pick(exceptions, not c0).select(*plain.columns))
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
    cols: dict[str, Any] = {"conversation_id": j.conversation_id, "message_id": j.message_id,
                            "parent_id": j.parent_id, "turn": j.turn_index, "role": j.role}
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
                + (f"; user_disjoint dropped {by_split['other_user'][0]} rows as other_user: split.method: user "
                   "keeps every row with users disjoint" if "other_user" in by_split else "")
            )
    return by_split


def split_warnings(by_split: dict[str, tuple[int, int]], cfg: CurateConfig) -> list[str]:
    """Warnings about splits too thin to measure anything: fewer than `split.min_positives` positives, and the
    rows a user-disjoint time split drops as `other_user`. Logged and written to the manifest."""
    out = []
    for s in SPLITS:
        n, p = by_split[s]
        if p < cfg.split.min_positives:
            out.append(f"the {s} split holds {p} positive(s) in {n} rows (< split.min_positives = "
                       f"{cfg.split.min_positives}): AUROC and calibration measured on it mean little; use more "
                       "logs, larger split fractions or another split.method")
    n_other, p_other = by_split.get("other_user", (0, 0))
    if n_other:
        kept = sum(by_split[s][0] for s in SPLITS)
        out.append(f"split.user_disjoint dropped {n_other} rows ({p_other} positives) as other_user, keeping {kept}: "
                   "their user belongs to another split than their time; split.method: user keeps every row")
    for w in out:
        log.warning("%s", w)
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


def _weights(by_split: dict, kept: dict, plan: ResamplePlan) -> tuple[dict, dict]:
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
            w_pos = plan.positives / (plan.copies * n_pos) if n_pos else 0.0
            w_neg = plan.negatives / n_neg if n_neg else 0.0
            n_pos *= plan.copies
        elif plan.keep[(s, True)] >= 1 and plan.keep[(s, False)] >= 1:
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


@dataclass
class Stage:
    """What the steps of one curate run hand each other: the logs, the config, the tables still in the engine
    and the counts, rows and warnings gathered for the manifest."""

    logs: Logs
    cfg: CurateConfig
    rule: Rule
    c0: bool  # the label of a message nobody reacted to
    types: dict[str, int]
    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)  # engine tables by name (None: not used)
    cutoffs: dict[str, Any] = field(default_factory=dict)  # split_cutoffs' result
    t1: datetime | None = None  # time split: train before t1, validation before t2, test from t2
    t2: datetime | None = None
    pii: dict | None = None  # texts written per split that contained each kind of PII (pii.enabled)

    @property
    def con(self) -> Any:
        return self.logs.con


def load_step(logs_dir: str | Path | Logs, con: Any, cfg: CurateConfig) -> Stage:
    """1. load: register the logs, check the signal and the timestamps; the rows (assistant messages with a
    context), their per-(conversation, user) spans and the reactions joined with their messages."""
    e = cfg.engine
    rule = parse_rule(cfg.signal.rule)
    logs = open_logs(logs_dir, con, memory_limit=e.memory_limit, threads=e.threads, temp_directory=e.temp_directory)
    types = reaction_type_counts(logs)
    check_signal(rule, types, logs.where("reactions"))
    _check_times(logs.con, logs.messages, logs.where("messages"))
    st = Stage(logs, cfg, rule, default_label(rule), types)
    rows = assistant_rows(logs)
    st.tables["rows"] = rows
    st.tables["conv_users_all"] = materialize(st.con, conversation_users(rows), "conv_users")
    st.tables["reactions"] = materialize(st.con, reactions_with_message(
        logs, ("conversation_id", "user_id", "role", "turn_index", "model_id")), "reactions")
    return st


def filter_step(st: Stage) -> FilterResult:
    """2. filters: adversarial users and reactions; flagged users' rows leave the per-(conversation, user) table
    with `drop_flagged_rows`."""
    cu = st.tables["conv_users_all"]
    per_user = cu.group_by("user_id").agg(n=cu.n.sum())
    fr = apply_filters(st.logs, st.tables["rows"], st.cfg.filters, per_user=per_user, reactions=st.tables["reactions"])
    st.tables["bad"] = fr.bad_table if st.cfg.filters.drop_flagged_rows else None
    return fr


def label_step(st: Stage, fr: FilterResult) -> None:
    """3. label: the label exceptions over the filtered reactions; with `signal.unreacted: drop` the rows shrink
    to the messages that received one of the rule's types. Counts rows and positives; no positive is an error
    that names the filter that removed them."""
    con, cfg, bad = st.con, st.cfg, st.tables["bad"]
    reacted = materialize(con, reacted_messages(fr.reactions, st.rule, bad), "reacted")
    exceptions = materialize(con, label_exceptions(reacted, st.rule), "exceptions")
    cu = st.tables["conv_users_all"]
    if cfg.signal.unreacted == "drop":
        st.tables["rows"] = st.tables["rows"].semi_join(reacted, "message_id")
        cu = materialize(con, conversation_users(st.tables["rows"]), "conv_users_reacted")
        st.tables["conv_users_reacted"] = cu
    if bad is not None:
        cu = cu.anti_join(bad, "user_id")
    st.tables |= {"conv_users": cu, "exceptions": exceptions, "reacted": reacted,
                  "conv": materialize(con, conversation_spans(cu), "conversations")}
    cut = split_cutoffs(con, st.tables["conv"], exceptions, st.tables["conv_users_all"], cfg)
    n_lab = cut["n"]
    n_pos = n_lab - cut["x"] if st.c0 else cut["x"]
    st.counts["input"] = {"rows": cut["n_in"], "reactions": sum(st.types.values())}
    st.counts["filters"] = {**fr.report, "users_flagged": len(fr.bad_users), "rows_out": n_lab,
                            "reactions_out": fr.n_reactions}
    st.counts["label"] = {"rows": n_lab, "positives": n_pos}
    if cfg.signal.unreacted == "drop":
        st.counts["label"]["unreacted_dropped"] = cut["n_in"] - n_lab
    st.cutoffs = cut
    if n_pos == 0:
        raise DataError(no_positive_message(st, fr, n_lab))


def no_positive_message(st: Stage, fr: FilterResult, n_lab: int) -> str:
    """Why nothing is positive: the positives before the filters, and what each filter removed."""
    raw = label_exceptions(reacted_messages(st.tables["reactions"], st.rule, None), st.rule)
    n_raw = int(st.con.to_pyarrow(raw.count()).as_py())
    before = st.counts["input"]["rows"] - n_raw if st.c0 else n_raw
    head = (f"no assistant message in {st.logs.where('messages')} is positive under signal {st.cfg.signal.rule!r} "
            f"after filtering ({n_lab} rows)")
    if before == 0:
        return (f"{head}, nor before the filters: the rule holds for no assistant message with a context (turn >= 1)."
                " Choose another signal (rluf signals lists them)")
    removed = [f"{rule} removed {v['reactions']} reactions" + (f" and flagged {v['users']} users" if v["users"] else "")
               for rule, v in fr.report.items() if isinstance(v, dict) and (v.get("reactions") or v.get("users"))]
    too_fast = fr.report.get("too_fast", {}).get("reactions")
    hint = ("; if reaction times are not click times (e.g. an export that stamps reactions with their message's "
            "time), disable it: filters.too_fast.enabled: false") if too_fast else ""
    return (f"{head}: before the filters {before} rows were positive; the filters removed them: "
            f"{'; '.join(removed) or 'flagged users lost their rows (filters.drop_flagged_rows)'}{hint}. "
            "Disable or relax that filter (filters.<rule>.enabled: false), or choose another signal")


def split_step(st: Stage) -> dict[str, tuple[int, int]]:
    """4. split: the split table (time cut-offs, or random by conversation or user) and rows and positives per
    split; an empty split is an error, a thin one a warning."""
    cut, cfg = st.cutoffs, st.cfg
    if cfg.split.method == "time":
        st.t1, st.t2 = cutoff_time(float(cut["t1"])), cutoff_time(float(cut["t2"]))
    splits = materialize(st.con, split_table(st.tables["conv"], st.tables["conv_users"], st.t1, st.t2, cfg),
                         "splits")
    st.tables["splits"] = splits
    by_split = _split_counts(st.con, splits, st.tables["exceptions"], st.c0, cfg)
    st.counts["split"] = {s: {"rows": n, "positives": p} for s, (n, p) in sorted(by_split.items())}
    st.warnings += split_warnings(by_split, cfg)
    return by_split


def resample_step(st: Stage, by_split: dict[str, tuple[int, int]]) -> ResamplePlan:
    """5. resample: the keep probabilities (train to the target rate, validation/test capped) and the kept rows,
    picked by one filter over the rows."""
    smp = st.cfg.sample
    n_train, p_train = by_split["train"]
    plan = sampling.plan_train(n_train - p_train, p_train, smp.target_rate, smp.upsample_positives)
    sampling.plan_eval(plan, by_split, smp.eval_max_rows, smp.eval_max_negatives)
    if plan.note:
        st.warnings.append(plan.note)
    t = st.tables
    t["kept"] = materialize(st.con, select_kept(t["rows"], t["exceptions"], t["splits"], plan, st.cfg, st.t1,
                                                st.t2, st.c0, t["bad"]), "kept")
    st.counts["resample"] = {"plan": plan.as_manifest()}
    return plan


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
    live in a backend (`rluf.signals.engine.logs_from_tables`), in which case the pipeline runs there. The
    steps are the functions `load_step` ... `write_step`, in the order of the module docstring."""
    cfg = resolve_config(config)
    step = on_step or (lambda name: None)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    step("load")
    st = load_step(logs_dir, con, cfg)
    step("filters")
    fr = filter_step(st)
    step("label")
    label_step(st, fr)
    release(st.con, st.tables["reactions"])
    step("split")
    by_split = split_step(st)
    release(st.con, st.tables["conv"], st.tables["conv_users_all"], st.tables.get("conv_users_reacted"))
    step("resample")
    plan = resample_step(st, by_split)
    release(st.con, st.tables["exceptions"], st.tables["reacted"], st.tables["splits"], *fr.temp_tables)
    step("contexts")
    rows_kept, index, loc = contexts_step(st)
    step("dedup")
    written = dedup_step(st, rows_kept, loc, by_split, plan)
    step("write")
    write_step(st, rows_kept, index, loc, written, plan, out)
    manifest = _manifest(st, plan, t_start)
    if truth_dir is not None:
        manifest["filters_vs_truth"] = truth_scores(fr.flagged, fr.bad_users, load_truth(truth_dir))
    write_json(out / "manifest.json", manifest)
    return manifest


def contexts_step(st: Stage) -> tuple[Any, ContextIndex, dict[str, np.ndarray]]:
    """6. contexts: fetch the kept rows, then the messages of their conversations (PII scrubbed), indexed."""
    kept = st.tables["kept"]
    rows_kept = fetch_arrow(st.con, kept)  # unsorted: ordering in the engine would hold a second, sorted copy
    conversations = materialize(st.con, kept.select(kcid="conversation_id").distinct(), "kept_conversations")
    release(st.con, kept)
    index = ContextIndex(st.con, context_messages(st.logs, conversations, st.cfg.dedup.enabled,
                                                  st.cfg.pii.enabled), st.cfg.context.context_turns)
    release(st.con, conversations)
    return rows_kept, index, index.locate(rows_kept)


@dataclass
class Written:
    """The rows to write after de-duplication: indices into the kept rows (time order), label, split and weight
    per (split, label)."""

    keep: np.ndarray
    label: np.ndarray
    split: np.ndarray
    kept_counts: dict
    weights: dict


def dedup_step(st: Stage, rows_kept: Any, loc: dict[str, np.ndarray], by_split: dict,
               plan: ResamplePlan) -> Written:
    """7. dedup: merge identical (context, completion) rows; weights computed after it."""
    order = time_order(rows_kept)
    label = rows_kept.column("label").to_numpy()
    if st.cfg.dedup.enabled:
        keep, label, n_copies = dedup(order, loc, label, st.cfg.dedup.aggregate)
    else:
        keep, label, n_copies = order, label[order], np.ones(len(order), np.int64)
    split = rows_kept.column("split").to_numpy(zero_copy_only=False)[keep]
    kc = _kept_counts(split, label, n_copies, loc, keep, st.cfg.pii.enabled)
    weights, output = _weights(by_split, kc, plan)
    st.counts["dedup"] = {"scope": "kept rows", "rows_in": sum(v["rows_in"] for v in kc.values()),
                          "rows_out": sum(v["rows"] for v in kc.values())}
    st.counts["output"] = output
    return Written(keep, label, split, kc, weights)


def write_step(st: Stage, rows_kept: Any, index: ContextIndex, loc: dict[str, np.ndarray], w: Written,
               plan: ResamplePlan, out: Path) -> None:
    """8. write: the three Parquet files (train positives copied `plan.copies` times) and PII counts."""
    for s in SPLITS:
        sel = np.flatnonzero(w.split == s)
        lab = w.label[sel]
        if s == "train" and plan.copies > 1:  # c copies of each kept positive, next to each other
            sel = np.repeat(sel, np.where(lab, plan.copies, 1))
            lab = w.label[sel]
        weight = np.where(lab, w.weights[s][True], w.weights[s][False])
        write_split(rows_kept, w.keep[sel], lab, weight, loc, index, out / f"{s}.parquet")
    if st.cfg.pii.enabled:
        st.pii = {s: {f"pii_{n}": sum(v[f"pii_{n}"] * (plan.copies if s == "train" and lab else 1)
                                                for (sp, lab), v in w.kept_counts.items() if sp == s)
                                for n in PATTERNS} for s in SPLITS}


def _manifest(st: Stage, plan: ResamplePlan, t_start: float) -> dict:
    cfg, out, label = st.cfg, st.counts["output"]["train"], st.counts["label"]
    cutoffs = None
    if cfg.split.method == "time":
        cutoffs = {"train_before": (st.t1 - EPOCH).total_seconds(), "test_from": (st.t2 - EPOCH).total_seconds()}
    return {
        "signal": cfg.signal.rule, "signal_rule": rule_text(st.rule), "reaction_types": st.types,
        "natural_rate": plan.natural_rate, "natural_rate_all": label["positives"] / label["rows"],
        "target_rate": cfg.sample.target_rate, "train_rate": out["rate"], "train_weighted_rate": out["weighted_rate"],
        "split_method": cfg.split.method, "split_cutoffs_epoch_s": cutoffs, "counts": st.counts, "pii": st.pii,
        "warnings": st.warnings, "config": cfg.model_dump(mode="json"), "input": st.logs.source(),
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
