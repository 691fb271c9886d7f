"""Stage 5: analyse a logged A/B experiment (`rluf abtest analyze`).

setup   find the logs, check the arms, the signal and the user split (clear errors, before any math)
run     DuckDB aggregates assistant responses to per-user totals (n_i responses, y_i with the signal);
        numpy/scipy compute the rate per arm, the relative lift with delta-method and user-bootstrap CIs
        (both clustered by user), the plain per-response test, and a breakdown per segment
output  a dict (also written as JSON when `out` is given)

The arm of a response is its ``model_id``; a response "has the signal" when at least one reaction of
type ``signal`` points at it. Any reaction type works (love, like, dislike, ...).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from rluf.abtest.stats import (
    confint_diff,
    confint_ratio,
    delta_compare,
    ratio_of_means,
    small_sample_warnings,
    two_proportion_ztest,
    user_bootstrap,
)
from rluf.config import StrictModel
from rluf.errors import ConfigError, DataError, SchemaError
from rluf.utils import write_json

log = logging.getLogger(__name__)

JOIN_KEYS = ("message_id", "conversation_id", "user_id")  # side tables join on the first one they share
LOG_TABLES = ("messages", "reactions", "users")


class AnalyzeConfig(StrictModel):
    """Options of `rluf abtest analyze` (also the `analyze:` section of configs/abtest.yaml)."""

    signal: str = "love"
    """Reaction type counted as the outcome (any type present in reactions.parquet)."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """Two-sided significance level; CIs are at 1 - alpha."""
    bootstrap_reps: int = 2000
    """User-level bootstrap replicates (0 skips the bootstrap)."""
    seed: int = 0
    """Seed of the bootstrap."""
    max_segments: int = Field(50, ge=1)
    """A segment column with more distinct values than this is an error (it is probably an id)."""
    segment_bootstrap: bool = False
    """Also bootstrap every segment (slower); the delta method is always computed."""
    filters: bool = True
    """Apply `rluf curate`'s adversarial filters (default settings) to the experiment's own logs: flagged
    accounts and removed reactions are left out, and the lift without them is reported next to it."""

    @field_validator("bootstrap_reps")
    @classmethod
    def _enough_reps(cls, v: int) -> int:
        if v < 0 or 0 < v < 100:
            raise ValueError("use 0 (no bootstrap) or at least 100 replicates, e.g. 2000")
        return v


# -- setup: locating and checking the logs -----------------------------------------------------------------
def find_logs(logs_dir: str | Path) -> dict[str, Path]:
    """Paths of messages/reactions Parquet in `logs_dir` (or in its `logs/` subfolder, for a run directory)."""
    base = Path(logs_dir)
    if not base.is_dir():
        raise DataError(f"logs directory {base} does not exist; pass the folder holding messages.parquet")
    if not (base / "messages.parquet").is_file() and (base / "logs" / "messages.parquet").is_file():
        base = base / "logs"
    paths = {t: base / f"{t}.parquet" for t in LOG_TABLES}
    for t in ("messages", "reactions"):
        if not paths[t].is_file():
            raise DataError(
                f"{paths[t]} not found; an A/B log folder holds messages.parquet and reactions.parquet "
                "in the canonical schema (docs/log-schema.md), e.g. the logs/ folder of `rluf simulate`"
            )
    return paths


def _columns(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    return [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]


def _require(con: duckdb.DuckDBPyConnection, path: Path, needed: list[str]) -> list[str]:
    cols = _columns(con, path)
    missing = [c for c in needed if c not in cols]
    if missing:
        raise SchemaError(f"{path} is missing column(s) {missing}; found {cols} (see docs/log-schema.md)")
    return cols


def check_arms(con: duckdb.DuckDBPyConnection, path: Path, control: str, treatment: str) -> dict[str, int]:
    """Responses per arm; raises DataError when an arm has none or the arms are the same."""
    if control == treatment:
        raise ConfigError(f"control and treatment are both {control!r}; pass two different model_id values")
    rows = con.execute(
        "SELECT model_id, count(*) FROM read_parquet(?) WHERE role = 'assistant' GROUP BY 1 ORDER BY 2 DESC",
        [str(path)],
    ).fetchall()
    counts = {str(a): int(n) for a, n in rows}
    for flag, arm in (("--control", control), ("--treatment", treatment)):
        if counts.get(arm, 0) == 0:
            found = ", ".join(f"{a} ({n})" for a, n in list(counts.items())[:10]) or "none"
            raise DataError(
                f"arm {arm!r} has no assistant messages in {path} (model_id values found, with counts: "
                f"{found}); pass {flag} with one of them"
            )
    return counts


def check_signal(con: duckdb.DuckDBPyConnection, path: Path, signal: str) -> dict[str, int]:
    """Reaction counts per type; raises DataError when `signal` never occurs."""
    rows = con.execute(
        "SELECT type, count(*) FROM read_parquet(?) GROUP BY 1 ORDER BY 2 DESC", [str(path)]
    ).fetchall()
    counts = {str(t): int(n) for t, n in rows}
    if counts.get(signal, 0) == 0:
        found = ", ".join(f"{t} ({n})" for t, n in counts.items()) or "none (the table is empty)"
        raise DataError(
            f"signal {signal!r} does not occur in {path}; reaction types found, with counts: {found}. "
            "Pass --signal with one of them"
        )
    return counts


def check_user_split(con: duckdb.DuckDBPyConnection, path: Path, control: str, treatment: str) -> None:
    """Raises DataError when any user has responses from both arms (the arms must split users)."""
    rows = con.execute(
        """SELECT user_id FROM read_parquet(?) WHERE role = 'assistant' AND model_id IN (?, ?)
           GROUP BY user_id HAVING count(DISTINCT model_id) > 1 ORDER BY user_id""",
        [str(path), control, treatment],
    ).fetchall()
    if rows:
        shown = ", ".join(str(r[0]) for r in rows[:5])
        raise DataError(
            f"{len(rows)} user(s) received responses from both arms {control!r} and {treatment!r} in {path} "
            f"(e.g. {shown}); an A/B test must assign each user to one arm (a stable hash of user_id). "
            "Drop those users or fix the assignment"
        )


def _ident(name: str) -> str:
    """A column name as a quoted SQL identifier (names cannot be query parameters)."""
    return '"' + name.replace('"', '""') + '"'


def resolve_segment(
    con: duckdb.DuckDBPyConnection, paths: dict[str, Path], column: str, segment_table: str | Path | None
) -> tuple[str, list[Any]]:
    """SQL giving (message_id, seg) for segment `column` and its parameters.

    Looks in messages.parquet first, then in `segment_table`, then in the other Parquet files next to the
    logs and in a sibling `truth/` folder (the simulator's conversation families live there). A side
    table joins on the first of message_id, conversation_id, user_id it shares with messages.
    """
    msg = paths["messages"]
    msg_cols = _columns(con, msg)
    if column in msg_cols:
        return f"SELECT message_id, CAST({_ident(column)} AS VARCHAR) AS seg FROM read_parquet(?)", [str(msg)]
    if segment_table is not None:
        if not Path(segment_table).is_file():
            raise DataError(f"segment table {segment_table} does not exist")
        candidates = [Path(segment_table)]
    else:
        skip = {p.resolve() for p in paths.values()}
        folders = [msg.parent, msg.parent.parent / "truth"]
        candidates = [p for d in folders if d.is_dir() for p in sorted(d.glob("*.parquet")) if p.resolve() not in skip]
    for cand in candidates:
        cols = _columns(con, cand)
        key = next((k for k in JOIN_KEYS if k in cols), None)
        if column in cols and key is not None:
            log.info("segment %r from %s joined on %s", column, cand, key)
            sql = (
                f'SELECT m.message_id, CAST(s.seg AS VARCHAR) AS seg FROM read_parquet(?) m LEFT JOIN '
                f"(SELECT {_ident(key)} AS k, any_value({_ident(column)}) AS seg FROM read_parquet(?) "
                f"GROUP BY 1) s "
                f"ON m.{_ident(key)} = s.k"
            )
            return sql, [str(msg), str(cand)]
    searched = ", ".join(str(c) for c in candidates) or "no other Parquet files"
    raise DataError(
        f"segment column {column!r} is not a column of {msg} (columns: {msg_cols}) nor of a side table "
        f"sharing one of {list(JOIN_KEYS)} (searched: {searched}); pass --segment-table FILE"
    )


def read_user_list(users: list[str] | str | Path | None) -> list[str]:
    """User ids from a list, or from the `user_id` column of a Parquet/CSV/JSONL file."""
    if users is None:
        return []
    if isinstance(users, list | tuple | set):
        return sorted({str(u) for u in users})
    path = Path(users)
    if not path.is_file():
        raise DataError(f"user exclusion file {path} does not exist")
    con = duckdb.connect()
    reader = {".parquet": "read_parquet", ".csv": "read_csv_auto", ".jsonl": "read_json_auto"}.get(path.suffix)
    if reader is None:
        raise DataError(f"user exclusion file {path}: use .parquet, .csv or .jsonl with a user_id column")
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [str(path)]).fetchall()]
    if "user_id" not in cols:
        raise SchemaError(f"user exclusion file {path} has no user_id column (columns: {cols})")
    rows = con.execute(f"SELECT DISTINCT user_id FROM {reader}(?) ORDER BY 1", [str(path)]).fetchall()
    return [str(r[0]) for r in rows]


# -- run: aggregation and statistics ------------------------------------------------------------------------
def per_user_counts(
    con: duckdb.DuckDBPyConnection, paths: dict[str, Path], arms: tuple[str, str], signal: str,
    segment_sql: tuple[str, list[Any]] | None = None, exclude: list[str] | None = None,
    signal_messages: pa.Table | None = None,
) -> dict[str, np.ndarray]:
    """Columns arm, seg, user_id, n, y (one row per user, or per user and segment): responses and responses
    with the signal per user (and segment).

    Users in `exclude` (e.g. accounts flagged as adversarial) are left out. `signal_messages` (message_id):
    the responses that have the signal, when not every reaction of reactions.parquet counts (filters).
    """
    con.register("excluded_users", pa.table({"user_id": pa.array(exclude or [], pa.string())}))
    if signal_messages is None:
        signal_sql, signal_params = "SELECT DISTINCT message_id FROM read_parquet(?) WHERE type = ?", [
            str(paths["reactions"]), signal]
    else:
        con.register("signal_messages", signal_messages.select(["message_id"]))
        signal_sql, signal_params = "SELECT DISTINCT message_id FROM signal_messages", []
    seg_join, seg_params = "", []
    seg_col = "'all'"
    if segment_sql is not None:
        seg_join = f"LEFT JOIN ({segment_sql[0]}) s USING (message_id)"
        seg_params = segment_sql[1]
        seg_col = "coalesce(s.seg, 'NULL')"
    sql = f"""
        WITH a AS (
            SELECT message_id, user_id, model_id AS arm FROM read_parquet(?)
            WHERE role = 'assistant' AND model_id IN (?, ?)
              AND user_id NOT IN (SELECT user_id FROM excluded_users)),
        r AS ({signal_sql})
        SELECT a.arm, {seg_col} AS seg, a.user_id, count(*) AS n, count(r.message_id) AS y
        FROM a LEFT JOIN r USING (message_id) {seg_join}
        GROUP BY ALL ORDER BY 1, 2, 3"""
    params = [str(paths["messages"]), *arms, *signal_params, *seg_params]
    res = con.execute(sql, params).fetchnumpy()
    return {k: np.asarray(v) for k, v in res.items()}


def filter_experiment(logs_dir: Path, signal: str) -> dict[str, Any]:
    """`rluf curate`'s adversarial filters (default settings) on an experiment's logs: the flagged accounts,
    the responses whose `signal` reactions survive (`signal_messages`), and what was removed."""
    from rluf.signals.config import FiltersSection
    from rluf.signals.engine import connect, load_logs
    from rluf.signals.filters import apply_filters

    logs = load_logs(connect(), logs_dir)
    m = logs.messages
    fr = apply_filters(logs, m.filter(m.role == "assistant"), FiltersSection())
    kept = fr.reactions.filter(fr.reactions.type == signal)
    signal_messages = logs.con.to_pyarrow(kept.select("message_id").distinct())
    r = logs.reactions
    total = int(logs.con.to_pyarrow(r.filter(r.type == signal).count()).as_py())
    n_kept = int(logs.con.to_pyarrow(kept.count()).as_py())
    by_rule = {rule: {"accounts": rep.get("users", 0), "reactions": rep.get("reactions", 0),
                      f"{signal}_events": rep.get("by_type", {}).get(signal, 0)}
               for rule, rep in fr.report.items() if isinstance(rep, dict)}
    return {"bad_users": fr.bad_users, "signal_messages": signal_messages, "excluded_accounts": len(fr.bad_users),
            "excluded_events": total - n_kept, "signal_events": total, "by_rule": by_rule,
            "warnings": fr.report.get("warnings", [])}


def compare_arms(
    y_t: np.ndarray, n_t: np.ndarray, y_c: np.ndarray, n_c: np.ndarray, cfg: AnalyzeConfig, bootstrap: bool
) -> dict[str, Any]:
    """All statistics for one comparison, given per-user counts of both arms."""
    t, c = ratio_of_means(y_t, n_t), ratio_of_means(y_c, n_c)
    out: dict[str, Any] = {"treatment": t.as_dict(), "control": c.as_dict(), "delta": delta_compare(t, c, cfg.alpha)}
    out["lift"] = out["delta"]["lift"]
    z, p = two_proportion_ztest(t.events, t.responses, c.events, c.responses)
    diff_ci = confint_diff(t.events, t.responses, c.events, c.responses, cfg.alpha, "newcomb")
    ratio_ci = confint_ratio(t.events, t.responses, c.events, c.responses, cfg.alpha, "log-adjusted")
    out["plain"] = {
        "z": z, "p_value": p, "diff_ci_newcomb": list(diff_ci), "lift_ci_log_adjusted": [r - 1 for r in ratio_ci],
    }
    naive_var = t.rate * (1 - t.rate) / t.responses + c.rate * (1 - c.rate) / c.responses
    clustered_var = t.var + c.var
    out["design_effect"] = clustered_var / naive_var if naive_var > 0 else None
    out["warnings"] = small_sample_warnings(t, c, ("treatment", "control"))
    if bootstrap and cfg.bootstrap_reps > 0:
        out["bootstrap"] = user_bootstrap(y_t, n_t, y_c, n_c, reps=cfg.bootstrap_reps, alpha=cfg.alpha, seed=cfg.seed)
    return out


def _arrays(rows: dict[str, np.ndarray], arm: str, seg: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (y, n) of one arm (and one segment value) from per_user_counts' columns."""
    m = rows["arm"] == arm
    if seg is not None:
        m &= rows["seg"] == seg
    return rows["y"][m].astype(float), rows["n"][m].astype(float)


def analyze(
    logs_dir: str | Path,
    control: str,
    treatment: str,
    signal: str | None = None,
    segment_by: str | None = None,
    *,
    segment_table: str | Path | None = None,
    exclude_users: list[str] | str | Path | None = None,
    config: AnalyzeConfig | None = None,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Analyse an A/B experiment in canonical logs: `signal` rate per arm, lift, CIs, p-value, segments.

    Returns a dict with ``control``/``treatment`` (users, responses, events, rate, se), ``lift``,
    ``delta`` (delta-method diff/lift CIs and z-test, clustered by user), ``bootstrap`` (user-level
    percentile CIs), ``plain`` (per-response two-proportion test, ignores clustering), ``design_effect``
    and, with `segment_by`, ``segments``: one entry per segment value. Writes it to `out` when given.

    `exclude_users`: user ids, or a Parquet/CSV/JSONL file with a `user_id` column (e.g. accounts that
    curation's adversarial filters flagged), left out of every statistic.
    Raises DataError for a missing arm, an absent signal, or users present in both arms.
    """
    cfg = config or AnalyzeConfig()
    if signal is not None:
        cfg = cfg.model_copy(update={"signal": signal})
    paths = find_logs(logs_dir)
    con = duckdb.connect()
    _require(con, paths["messages"], ["message_id", "user_id", "model_id", "role"])
    _require(con, paths["reactions"], ["message_id", "type"])
    arm_counts = check_arms(con, paths["messages"], control, treatment)
    reaction_counts = check_signal(con, paths["reactions"], cfg.signal)
    check_user_split(con, paths["messages"], control, treatment)
    seg_sql = resolve_segment(con, paths, segment_by, segment_table) if segment_by else None

    excluded = read_user_list(exclude_users)
    filt = filter_experiment(paths["messages"].parent, cfg.signal) if cfg.filters else None
    left_out = sorted(set(excluded) | set(filt["bad_users"])) if filt else excluded
    kept = filt["signal_messages"] if filt else None
    rows = per_user_counts(con, paths, (control, treatment), cfg.signal, None, left_out, kept)
    y_t, n_t = _arrays(rows, treatment)
    y_c, n_c = _arrays(rows, control)
    for arm, n in ((control, n_c), (treatment, n_t)):
        if len(n) < 2:
            raise DataError(f"arm {arm!r} has {len(n)} user(s) left after excluding {len(excluded)} user(s); "
                            "a user-clustered analysis needs at least 2 per arm")
    if y_t.sum() + y_c.sum() == 0:
        why = (f"; the adversarial filters flagged {len(filt['bad_users'])} account(s) and removed "
               f"{filt['excluded_events']} event(s) ({_rules_that_removed(filt['by_rule'])}): "
               "if that is wrong for these logs (scripted traffic, say), analyze with --no-filters") if filt else ""
        raise DataError(f"signal {cfg.signal!r} occurs in the logs but on no response of arms {control!r} or "
                        f"{treatment!r} (after exclusions); nothing to compare{why}")
    result: dict[str, Any] = {
        "logs": str(paths["messages"].parent), "control_arm": control, "treatment_arm": treatment,
        "signal": cfg.signal, "alpha": cfg.alpha, "arms_found": arm_counts, "reaction_types": reaction_counts,
        "excluded_users": len(excluded),
        **compare_arms(y_t, n_t, y_c, n_c, cfg, bootstrap=True),
    }
    if filt:
        result["filters"] = unfiltered_comparison(con, paths, (control, treatment), excluded, filt, cfg)
    if seg_sql:
        result["segment_by"] = segment_by
        seg_rows = per_user_counts(con, paths, (control, treatment), cfg.signal, seg_sql, left_out, kept)
        result["segments"] = segment_breakdown(seg_rows, control, treatment, cfg)
    if out is not None:
        write_json(out, result)
    return result


def _rules_that_removed(by_rule: dict[str, dict[str, int]]) -> str:
    hits = [f"{rule}: {r['accounts']} accounts, {r['reactions']} reactions" for rule, r in by_rule.items()
            if r.get("accounts") or r.get("reactions")]
    return "; ".join(hits) or "no rule flagged anyone"


def unfiltered_comparison(con: duckdb.DuckDBPyConnection, paths: dict[str, Path], arms: tuple[str, str],
                          excluded: list[str], filt: dict[str, Any], cfg: AnalyzeConfig) -> dict[str, Any]:
    """What the filters left out, and the lift without them (only the user-given exclusions)."""
    rows = per_user_counts(con, paths, arms, cfg.signal, None, excluded)
    y_t, n_t = _arrays(rows, arms[1])
    y_c, n_c = _arrays(rows, arms[0])
    raw = compare_arms(y_t, n_t, y_c, n_c, cfg, bootstrap=False)
    return {
        "applied": "rluf curate's adversarial filters, default settings",
        "excluded_accounts": filt["excluded_accounts"], "excluded_events": filt["excluded_events"],
        "signal_events": filt["signal_events"], "by_rule": filt["by_rule"], "warnings": filt["warnings"],
        "unfiltered": {"lift": raw["lift"], "lift_ci": raw["delta"]["lift_ci"], "p_value": raw["delta"]["p_value"],
                       "control_rate": raw["control"]["rate"], "treatment_rate": raw["treatment"]["rate"]},
    }


def segment_breakdown(rows: dict[str, np.ndarray], control: str, treatment: str, cfg: AnalyzeConfig) -> dict[str, Any]:
    """One comparison per segment value; a user is clustered within each segment they appear in."""
    values = sorted({str(v) for v in rows["seg"]})
    if len(values) > cfg.max_segments:
        raise DataError(
            f"the segment column has {len(values)} distinct values (more than max_segments = "
            f"{cfg.max_segments}); segment by a categorical column such as a prompt family"
        )
    out = {}
    for v in values:
        y_t, n_t = _arrays(rows, treatment, v)
        y_c, n_c = _arrays(rows, control, v)
        if len(n_t) < 2 or len(n_c) < 2:
            out[v] = {"skipped": f"fewer than 2 users in an arm (treatment {len(n_t)}, control {len(n_c)})"}
            continue
        out[v] = compare_arms(y_t, n_t, y_c, n_c, cfg, bootstrap=cfg.segment_bootstrap)
    return out
