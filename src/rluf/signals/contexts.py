"""The kept rows' contexts: dedup keys, prompts and the written files, assembled in Arrow.

The engine (any Ibis backend) delivers two flat tables, in whatever order it produces them: the messages of the
kept rows' conversations, and the kept rows. Everything after that is columnar Arrow and numpy work over those
tables, never a loop over rows in Python and never a per-row aggregate in the engine:

- the messages are ordered by (conversation, turn, message id) with one numpy sort of integer keys (a
  permutation; the texts themselves are never moved);
- a row's context is its ancestor chain, followed through `parent_id` up to k messages (k gathers of a parent
  array over all rows at once), wherever its own message's parent is in the table; otherwise, for logs without
  parent ids, the messages at turns t-k..t-1 of its conversation: one contiguous range of that order, found by
  binary search, and cut to its last k messages when siblings share a turn;
- contexts are held as one flat array of sorted positions with offsets per row, so a row's dedup key (sums of
  message hashes over its context, its own message's hash) is a difference of prefix sums, and the copies are
  merged with one more sort;
- the `prompt` lists are one `take` of those positions cut by the offsets, written chunk by chunk as Parquet
  row groups.

(Building the lists in the engine instead, `collect` over a range join or over a window and a DuckDB COPY, and
keying the rows with a range join and a group-by, took about twice as long on DuckDB: list aggregation copies
every message into per-group state, and the COPY sorts the nested rows. Sorting in the engine before fetching
costs memory instead: DuckDB holds the sorted rows while Arrow receives them, ~2.7x the result's size.)
"""

from __future__ import annotations

from pathlib import Path

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rluf.schema import CHAT

SCHEMA = pa.schema([
    pa.field("prompt", CHAT), pa.field("completion", CHAT), pa.field("label", pa.bool_()),
    pa.field("message_id", pa.string()), pa.field("conversation_id", pa.string()), pa.field("user_id", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")), pa.field("weight", pa.float64()),
    pa.field("model_id", pa.string()),
])
META = ["message_id", "conversation_id", "user_id", "created_at", "model_id"]
# dictionary pages only where values repeat (roles, arms); statistics only where readers filter: texts are
# high-cardinality, and building dictionaries and min/max for them costs ~40% of the write
WRITE_OPTIONS = {"use_dictionary": ["prompt.list.element.role", "completion.list.element.role", "model_id"],
                 "write_statistics": ["label", "created_at", "weight"]}


def fetch_arrow(con, expr) -> pa.Table:
    """The result of `expr` as an Arrow table. On DuckDB it is streamed straight into Arrow (Ibis' `to_pyarrow`
    holds a second copy of the result while converting it, ~1.3x its size)."""
    if con.name == "duckdb":
        return con.con.sql(con.compile(expr)).to_arrow_reader(1 << 30).read_all()
    return con.to_pyarrow(expr)


def _column(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of range(s, e) for each (s, e), vectorised (e >= s)."""
    n = ends - starts
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    keep = n > 0
    s, n = starts[keep], n[keep]
    step = np.ones(total, np.int64)
    step[0] = s[0]
    at = np.cumsum(n)[:-1]
    step[at] = s[1:] - (s[:-1] + n[:-1] - 1)
    return np.cumsum(step)


def _prefix(x: np.ndarray) -> np.ndarray:
    """Prefix sums with a leading 0 (int64; wraps modulo 2^64, so differences stay exact when they fit)."""
    out = np.zeros(len(x) + 1, np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _tie_order(order: np.ndarray, key: np.ndarray, names: pa.Array) -> np.ndarray:
    """Within runs of equal `key` (in `order`), order the rows by `names` (message ids): deterministic order of
    siblings that share a turn, whatever order the engine returned them in."""
    run_start = np.ones(len(key), bool)
    run_start[1:] = key[1:] != key[:-1]
    in_tie = ~run_start
    in_tie[:-1] |= ~run_start[1:]
    at = np.flatnonzero(in_tie)
    if len(at) == 0:
        return order
    runs = np.cumsum(run_start)[at]
    sub = pc.sort_indices(pa.table({"r": runs, "m": names.take(pa.array(order[at]))}),
                          sort_keys=[("r", "ascending"), ("m", "ascending")]).to_numpy()
    order = order.copy()
    order[at] = order[at][sub]
    return order


class ContextIndex:
    """The messages of the kept rows' conversations, searchable by (conversation, turn).

    `messages` columns, in any row order: conversation_id, message_id, turn, role, text, and optionally
    parent_id, `h` (the dedup hash of role:text) and pii_* (0/1 per kind of PII found); `k` is the context
    length in messages. `locate` finds the rows once and then frees the search structures; `prompts` and
    `completions` need only the roles and texts, which stay in the engine's order (`perm` maps sorted positions
    to them).
    """

    def __init__(self, con, messages: ibis.Table, k: int):
        """Fetch `messages` (an expression) from `con` and index them. Columns are taken out of the fetched
        table one at a time and dropped from it, so no column exists twice for long."""
        self.k = k
        table = fetch_arrow(con, messages)
        n = table.num_rows

        def take(name: str) -> pa.Array:
            nonlocal table
            col = _column(table, name)
            table = table.drop_columns([name])
            return col

        conv = pc.dictionary_encode(take("conversation_id"))
        self.convs = conv.dictionary
        code = conv.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        del conv
        turn = take("turn").to_numpy().astype(np.int64)
        self.span = int(turn.max()) + 2 if n else 1  # keys of two conversations never interleave
        order = np.lexsort((turn, code))
        key = code[order] * self.span + turn[order]
        del code
        self.message_id = take("message_id")
        self.perm = _tie_order(order, key, self.message_id)
        del order
        self.key = key
        self.turn = turn[self.perm]
        self.parent = self._parents(take("parent_id"), key // self.span) if "parent_id" in table.column_names else None
        self.role = pc.dictionary_encode(take("role"))
        self.text = take("text")
        self.h = None
        if "h" in table.column_names:
            self.h = take("h").to_numpy().astype(np.int64)[self.perm]
        self.pii = [c for c in table.column_names if c.startswith("pii_")]
        self.flags = {c: take(c).to_numpy().astype(np.int64)[self.perm] for c in self.pii}

    def _parents(self, parent_id: pa.Array, conv: np.ndarray) -> np.ndarray:
        """Sorted position of each sorted message's parent in the same conversation, -1 where there is none."""
        n = len(self.perm)
        at = pc.index_in(parent_id, value_set=self.message_id).to_numpy(zero_copy_only=False)  # original rows
        at = np.where(np.isnan(at), -1, at).astype(np.int64) if at.dtype.kind == "f" else at.astype(np.int64)
        inverse = np.empty(n, np.int64)
        inverse[self.perm] = np.arange(n)
        parent = np.full(n, -1, np.int64)
        found = at[self.perm] >= 0
        parent[found] = inverse[at[self.perm][found]]
        parent[found] = np.where(conv[parent[found]] == conv[found], parent[found], -1)
        return parent

    def locate(self, rows: pa.Table) -> dict[str, np.ndarray]:
        """Per row (columns conversation_id, message_id, turn_index): `pos` (the sorted position of its own
        message: the one at turn t, or among siblings sharing turn t the one with its message id), its context
        as sorted positions `ctx_pos[ctx_off[i]:ctx_off[i + 1]]` (oldest first; at most k), `by_parent` (the
        context is the ancestor chain), the dedup key `ctx0`, `ctx1`, `comp` and the PII counts of its context
        and completion. Frees the search structures afterwards.

        ctx0 = sum h_j and ctx1 = sum h_j (t_j - t) over the context (order-sensitive, offset-invariant: the same
        context at any depth of a conversation gets the same key); comp = h of the row's own message.
        """
        message_id = _column(rows, "message_id")
        g = pc.index_in(_column(rows, "conversation_id"), value_set=self.convs)
        if g.null_count:
            raise ValueError("a kept row's conversation has no messages in the context table")
        base = g.to_numpy().astype(np.int64) * self.span
        t = np.minimum(rows.column("turn_index").to_numpy().astype(np.int64), self.span - 1)
        end = np.searchsorted(self.key, base + t, side="left")
        after = np.searchsorted(self.key, base + t + 1, side="left")  # the messages at turn t: [end, after)
        pos = end.copy()
        many = np.flatnonzero(after - end > 1)
        if len(many):
            cand = _ranges(end[many], after[many])
            row = np.repeat(many, (after - end)[many])
            hit = pc.equal(self.message_id.take(pa.array(self.perm[cand])), message_id.take(pa.array(row)))
            hit = hit.to_numpy(zero_copy_only=False)
            pos[row[hit]] = cand[hit]
        if len(pos) and not pc.all(pc.equal(self.message_id.take(pa.array(self.perm[pos])), message_id)).as_py():
            raise ValueError("a kept row's message is missing from the context table")
        # turn order (no parent known): turns t-k..t-1, at most k messages
        start = np.maximum(np.searchsorted(self.key, base + np.maximum(t - self.k, 0), side="left"), end - self.k)
        by_parent = self.parent[pos] >= 0 if self.parent is not None else np.zeros(len(pos), bool)
        chain = np.full((int(by_parent.sum()), self.k), -1, np.int64)  # ancestors, nearest first
        if len(chain):
            cur = self.parent[pos[by_parent]]
            for j in range(self.k):
                chain[:, j] = cur
                cur = np.where(cur >= 0, self.parent[np.maximum(cur, 0)], -1)
        length = np.where(by_parent, 0, end - start)
        length[by_parent] = (chain >= 0).sum(axis=1)
        off = _prefix(length)
        ctx_pos = np.empty(int(off[-1]), np.int64)
        turn_rows = np.flatnonzero(~by_parent)
        ctx_pos[_ranges(off[turn_rows], off[turn_rows + 1])] = _ranges(start[turn_rows], end[turn_rows])
        chain_rows = np.flatnonzero(by_parent)
        oldest_first = chain[:, ::-1]
        ctx_pos[_ranges(off[chain_rows], off[chain_rows + 1])] = oldest_first[oldest_first >= 0]
        out = {"pos": pos, "ctx_pos": ctx_pos, "ctx_off": off, "by_parent": by_parent}

        def context_sum(values: np.ndarray) -> np.ndarray:
            sums = _prefix(values[ctx_pos])
            return sums[off[1:]] - sums[off[:-1]]

        if self.h is not None:
            out["ctx0"] = context_sum(self.h)
            out["ctx1"] = context_sum(self.h * self.turn) - t * out["ctx0"]
            out["comp"] = self.h[pos]
        for c in self.pii:
            out[c] = context_sum(self.flags[c]) + self.flags[c][pos]
        # only roles, texts and the permutation are needed from here on
        self.key = self.message_id = self.convs = self.h = self.parent = self.turn = None
        self.flags = {}
        return out

    def prompts(self, loc: dict[str, np.ndarray], rows: np.ndarray) -> pa.Array:
        """list<struct<role, content>>: the contexts of `rows` (`locate`'s row indices), oldest message first."""
        lo, hi = loc["ctx_off"][rows], loc["ctx_off"][rows + 1]
        idx = pa.array(self.perm[loc["ctx_pos"][_ranges(lo, hi)]])
        offsets = np.zeros(len(rows) + 1, np.int32)
        np.cumsum(hi - lo, out=offsets[1:])
        items = pa.StructArray.from_arrays([self.role.take(idx).cast(pa.string()), self.text.take(idx)],
                                           fields=list(CHAT.value_type))
        return pa.ListArray.from_arrays(pa.array(offsets), items, type=CHAT)

    def completions(self, pos: np.ndarray) -> pa.Array:
        """[{"role": "assistant", "content": the message at sorted position pos}] per row."""
        text = self.text.take(pa.array(self.perm[pos]))
        n = len(text)
        role = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32)), pa.array(["assistant"])).cast(pa.string())
        items = pa.StructArray.from_arrays([role, text], fields=list(CHAT.value_type))
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), items, type=CHAT)


def time_order(rows: pa.Table) -> np.ndarray:
    """Row indices in output order: created_at, then message_id."""
    return pc.sort_indices(rows.select(["created_at", "message_id"]),
                           sort_keys=[("created_at", "ascending"), ("message_id", "ascending")]).to_numpy()


def dedup(order: np.ndarray, loc: dict[str, np.ndarray], label: np.ndarray, aggregate: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge rows with the same key (ctx0, ctx1, comp) into the earliest copy (the first in `order`, the time
    order). Returns the surviving rows (indices, in time order), their label (`any`, or `majority` of the
    copies) and how many rows each one stands for."""
    n = len(order)
    c0, c1, comp = (loc[c][order] for c in ("ctx0", "ctx1", "comp"))
    by_key = np.lexsort((comp, c1, c0))  # stable: within a key, rows stay in time order
    s0, s1, s2 = c0[by_key], c1[by_key], comp[by_key]
    new = np.ones(n, bool)
    new[1:] = (s0[1:] != s0[:-1]) | (s1[1:] != s1[:-1]) | (s2[1:] != s2[:-1])
    starts = np.flatnonzero(new)
    copies = np.diff(np.append(starts, n))
    positives = np.add.reduceat(label[order][by_key].astype(np.int64), starts) if n else np.zeros(0, np.int64)
    merged = positives > 0 if aggregate == "any" else 2 * positives > copies
    first = by_key[starts]  # position in time order of each group's earliest row
    back = np.argsort(first)
    return order[first[back]], merged[back], copies[back].astype(np.int64)


def write_split(rows: pa.Table, idx: np.ndarray, label: np.ndarray, weight: np.ndarray, loc: dict[str, np.ndarray],
                index: ContextIndex, path: Path, chunk_rows: int = 100_000) -> None:
    """Write rows `idx` of `rows` (in that order, with `label` and `weight`) in TRL's unpaired preference form:
    prompt, completion, label and metadata, chunk by chunk as Parquet row groups."""
    with pq.ParquetWriter(path, SCHEMA, **WRITE_OPTIONS) as writer:
        for lo in range(0, max(len(idx), 1), chunk_rows):
            i = idx[lo:lo + chunk_rows]
            part = rows.select(META).take(pa.array(i))
            cols = {"prompt": index.prompts(loc, i), "completion": index.completions(loc["pos"][i]),
                    "label": pa.array(label[lo:lo + chunk_rows]), "weight": pa.array(weight[lo:lo + chunk_rows])}
            cols.update({c: part.column(c).combine_chunks().cast(SCHEMA.field(c).type) for c in META})
            writer.write_table(pa.Table.from_pydict(cols, schema=SCHEMA))
