"""The kept rows' contexts: dedup keys, prompts and the written files, assembled in Arrow.

The engine (any Ibis backend) delivers two flat tables: the messages of the kept rows' conversations sorted by
(conversation, turn, message id), and the kept rows themselves. Everything after that is columnar Arrow and
numpy work over those tables, never a loop over rows in Python and never a per-row aggregate in the engine:

- a row at turn t of conversation c has as context the messages at turns t-k..t-1 of c: in the sorted messages
  that is one contiguous range [start, end), found by binary search on the key (conversation index, turn);
- the dedup key of a row (sums of message hashes over its context, its own message's hash) is a difference of
  prefix sums at `start` and `end`, and the copies are merged with one Arrow group-by;
- the `prompt` lists are one `take` of those ranges cut by offsets, written chunk by chunk as Parquet row groups.

(Building the lists in the engine instead, `collect` over a range join or over a window and a DuckDB COPY, and
keying the rows with a range join and a group-by, took about twice as long on DuckDB: list aggregation copies
every message into per-group state, and the COPY sorts the nested rows.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CHAT = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
SCHEMA = pa.schema([
    pa.field("prompt", CHAT), pa.field("completion", CHAT), pa.field("label", pa.bool_()),
    pa.field("message_id", pa.string()), pa.field("conversation_id", pa.string()), pa.field("user_id", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")), pa.field("weight", pa.float64()),
    pa.field("model_id", pa.string()),
])
META = ["label", "message_id", "conversation_id", "user_id", "created_at", "weight", "model_id"]
# dictionary pages only where values repeat (roles, arms); statistics only where readers filter: texts are
# high-cardinality, and building dictionaries and min/max for them costs ~40% of the write
WRITE_OPTIONS = {"use_dictionary": ["prompt.list.element.role", "completion.list.element.role", "model_id"],
                 "write_statistics": ["label", "created_at", "weight"]}


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


class ContextIndex:
    """Messages sorted by (conversation, turn, message id): each row's context is a range found by search.

    `messages` columns: conversation_id, message_id, turn, role, text, and optionally `h` (the dedup hash of
    role:text) and pii_* (0/1 per kind of PII found); `k` is the context length in turns. `keyed` locates the
    rows once and then frees the search structures; `prompts` and `completions` need only roles and texts.
    """

    def __init__(self, messages: pa.Table, k: int):
        self.k = k
        conv = messages["conversation_id"].combine_chunks()
        turn = messages["turn"].to_numpy().astype(np.int64)
        self.message_id = messages["message_id"].combine_chunks()
        self.role = messages["role"].combine_chunks()
        self.text = messages["text"].combine_chunks()
        n = len(turn)
        new = np.ones(n, bool)
        if n > 1:
            new[1:] = pc.not_equal(conv[1:], conv[:-1]).to_numpy(zero_copy_only=False)
        self.convs = conv.filter(pa.array(new)) if n else pa.array([], pa.string())
        group = np.cumsum(new) - 1
        self.span = int(turn.max()) + 2 if n else 1  # keys of two conversations never interleave
        self.key = group * self.span + turn  # ascending
        self.sums = {}
        self.h = None
        if "h" in messages.column_names:
            h = messages["h"].to_numpy().astype(np.int64)
            self.h = h
            self.sums["h"] = _prefix(h)
            self.sums["ht"] = _prefix(h * turn)
        self.pii = [c for c in messages.column_names if c.startswith("pii_")]
        self.flags = {c: messages[c].to_numpy().astype(np.int64) for c in self.pii}
        for c, f in self.flags.items():
            self.sums[c] = _prefix(f)

    def locate(self, conversation_id: pa.Array, turn: np.ndarray, message_id: pa.Array
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: [start, end) of the messages at turns t-k..t-1 of its conversation, and the position of
        its own message (the one at turn t, or among siblings sharing turn t the one with its message id)."""
        g = pc.index_in(conversation_id, value_set=self.convs)
        if g.null_count:
            raise ValueError("a kept row's conversation has no messages in the context table")
        base = g.to_numpy().astype(np.int64) * self.span
        t = np.minimum(turn.astype(np.int64), self.span - 1)
        end = np.searchsorted(self.key, base + t, side="left")
        start = np.searchsorted(self.key, base + np.maximum(t - self.k, 0), side="left")
        after = np.searchsorted(self.key, base + t + 1, side="left")  # the messages at turn t: [end, after)
        pos = end.copy()
        many = np.flatnonzero(after - end > 1)
        if len(many):
            cand = _ranges(end[many], after[many])
            row = np.repeat(many, (after - end)[many])
            hit = pc.equal(self.message_id.take(pa.array(cand)), message_id.take(pa.array(row)))
            hit = hit.to_numpy(zero_copy_only=False)
            pos[row[hit]] = cand[hit]
        ok = pc.equal(self.message_id.take(pa.array(pos)), message_id) if len(pos) else None
        if ok is not None and not pc.all(ok).as_py():
            raise ValueError("a kept row's message is missing from the context table")
        return start, end, pos

    def keyed(self, rows: pa.Table) -> pa.Table:
        """`rows` + where their messages are (`_start`, `_end`: the context range, `_pos`: the row's own
        message), the dedup key (ctx0, ctx1, comp) and per-row PII counts (context messages + completion).

        ctx0 = sum h_j and ctx1 = sum h_j (t_j - t) over the context (order-sensitive, offset-invariant: the same
        context at any depth of a conversation gets the same key); comp = h of the row's own message.
        """
        t = rows["turn_index"].to_numpy().astype(np.int64)
        start, end, pos = self.locate(rows["conversation_id"].combine_chunks(), t,
                                      rows["message_id"].combine_chunks())
        out = rows.append_column("_start", pa.array(start)).append_column("_end", pa.array(end))
        out = out.append_column("_pos", pa.array(pos))
        if self.h is not None:
            ctx0 = self.sums["h"][end] - self.sums["h"][start]
            ctx1 = (self.sums["ht"][end] - self.sums["ht"][start]) - t * ctx0
            out = out.append_column("ctx0", pa.array(ctx0)).append_column("ctx1", pa.array(ctx1))
            out = out.append_column("comp", pa.array(self.h[pos]))
        for c in self.pii:
            out = out.append_column(c, pa.array(self.sums[c][end] - self.sums[c][start] + self.flags[c][pos]))
        # only roles and texts are needed from here on (the search structures are ~40% of the index)
        self.key = self.message_id = self.convs = self.h = None
        self.sums, self.flags = {}, {}
        return out

    def prompts(self, start: np.ndarray, end: np.ndarray) -> pa.Array:
        """list<struct<role, content>>: the messages in [start, end) per row, in order (oldest turn first)."""
        idx = pa.array(_ranges(start, end))
        offsets = np.zeros(len(end) + 1, np.int32)
        np.cumsum(end - start, out=offsets[1:])
        items = pa.StructArray.from_arrays([self.role.take(idx), self.text.take(idx)], fields=list(CHAT.value_type))
        return pa.ListArray.from_arrays(pa.array(offsets), items, type=CHAT)

    def completions(self, pos: np.ndarray) -> pa.Array:
        """[{"role": "assistant", "content": the message at pos}] per row."""
        text = self.text.take(pa.array(pos))
        n = len(text)
        role = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["assistant"])).cast(pa.string())
        items = pa.StructArray.from_arrays([role, text], fields=list(CHAT.value_type))
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), items, type=CHAT)


def dedup_rows(keyed: pa.Table, aggregate: str) -> pa.Table:
    """Merge rows with the same (ctx0, ctx1, comp) into the first copy in the rows' order (the rows come sorted
    by created_at, message_id: the earliest copy, whose split it keeps); label = `any` (or `majority`) of the
    copies; `n_copies`. The result keeps the rows' order."""
    n = keyed.num_rows
    c0, c1, comp = (keyed[c].to_numpy() for c in ("ctx0", "ctx1", "comp"))
    order = np.lexsort((comp, c1, c0))  # stable: within a key, rows stay in their (time) order
    s0, s1, s2 = c0[order], c1[order], comp[order]
    new = np.ones(n, bool)
    new[1:] = (s0[1:] != s0[:-1]) | (s1[1:] != s1[:-1]) | (s2[1:] != s2[:-1])
    starts = np.flatnonzero(new)
    copies = np.diff(np.append(starts, n))
    positives = np.add.reduceat(keyed["label"].to_numpy(zero_copy_only=False)[order].astype(np.int64), starts) \
        if n else np.zeros(0, np.int64)
    label = positives > 0 if aggregate == "any" else 2 * positives > copies
    first = order[starts]
    back = np.argsort(first)  # groups in the order of their first row
    out = keyed.drop_columns(["ctx0", "ctx1", "comp"])
    if len(first) < n:  # else nothing merged: keep the rows as they are (no copy)
        out = out.take(pa.array(first[back]))
    out = out.set_column(out.schema.get_field_index("label"), "label", pa.array(label[back]))
    return out.append_column("n_copies", pa.array(copies[back].astype(np.int64)))


def write_split(rows: pa.Table, index: ContextIndex, path: Path, chunk_rows: int = 100_000) -> None:
    """Write `rows` (one split's keyed rows with `weight`, in output order) in TRL's unpaired preference form:
    prompt, completion, label and metadata, chunk by chunk as Parquet row groups."""
    with pq.ParquetWriter(path, SCHEMA, **WRITE_OPTIONS) as writer:
        for lo in range(0, max(rows.num_rows, 1), chunk_rows):
            part = rows.slice(lo, chunk_rows)
            cols = {"prompt": index.prompts(part["_start"].to_numpy(), part["_end"].to_numpy()),
                    "completion": index.completions(part["_pos"].to_numpy())}
            cols.update({c: part[c].combine_chunks().cast(SCHEMA.field(c).type) for c in META})
            writer.write_table(pa.Table.from_pydict(cols, schema=SCHEMA))
