"""Prompts for the kept rows: the messages at turns t-k..t-1 of each row's conversation, as chat messages.

The engine (any Ibis backend) delivers two flat, sorted tables per split: the messages of the split's
conversations ordered by (conversation, turn, message id), and the output rows ordered by (created_at,
message_id) with their own text. Arrow then assembles the nested `prompt` column without any per-row Python
and without a per-row aggregate in the engine: each row's context is one contiguous range of the sorted
messages, found by binary search on (conversation, turn), gathered with one `take`, and cut into lists by
offsets. Chunks of rows are written as Parquet row groups, so only one chunk's prompts exist at a time.

(An aggregate that builds the lists in the engine, `collect` over a range join or over a window, is 2-3x
slower on DuckDB: list aggregation there copies every message into per-group state, and the write sorts the
nested rows. benchmarks/README.md has the figures.)
"""

from __future__ import annotations

from pathlib import Path

import ibis
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


class SortedMessages:
    """The messages of some conversations sorted by (conversation, turn, message id), searchable by turn."""

    def __init__(self, table: pa.Table, k: int):
        self.k = k
        conv = table["conversation_id"].combine_chunks()
        turn = table["turn"].to_numpy().astype(np.int64)
        self.role = table["role"].combine_chunks()
        self.text = table["text"].combine_chunks()
        n = len(turn)
        if n:
            new = np.ones(n, bool)
            new[1:] = pc.not_equal(conv[1:], conv[:-1]).to_numpy(zero_copy_only=False)
            group = np.cumsum(new) - 1
            self.convs = conv.filter(pa.array(new))
        else:
            group = np.zeros(0, np.int64)
            self.convs = pa.array([], pa.string())
        self.span = int(turn.max()) + 2 if n else 1  # keys of two conversations never interleave
        self.key = group * self.span + turn  # sorted ascending

    def prompts(self, conversation_id: pa.Array, turn: np.ndarray) -> pa.Array:
        """list<struct<role, content>>: the messages at turns t-k..t-1 of each (conversation, t), oldest first."""
        g = pc.index_in(conversation_id, value_set=self.convs).to_numpy(zero_copy_only=False)
        if np.isnan(g.astype(float)).any():
            raise ValueError("a row's conversation has no messages in the context table")
        base = g.astype(np.int64) * self.span
        t = np.minimum(turn.astype(np.int64), self.span - 1)
        end = np.searchsorted(self.key, base + t, side="left")
        start = np.searchsorted(self.key, base + np.maximum(t - self.k, 0), side="left")
        idx = pa.array(_ranges(start, end))
        offsets = np.zeros(len(end) + 1, np.int32)
        np.cumsum(end - start, out=offsets[1:])
        items = pa.StructArray.from_arrays([self.role.take(idx), self.text.take(idx)], fields=list(CHAT.value_type))
        return pa.ListArray.from_arrays(pa.array(offsets), items, type=CHAT)


def _completion(text: pa.Array) -> pa.Array:
    n = len(text)
    role = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["assistant"])).cast(pa.string())
    items = pa.StructArray.from_arrays([role, text], fields=list(CHAT.value_type))
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), items, type=CHAT)


def write_split(con, rows: ibis.Table, cm: ibis.Table, k: int, path: Path, chunk_rows: int = 250_000) -> None:
    """Write `rows` (the kept rows of one split, with `weight`) to `path` in TRL's unpaired-preference form.

    `cm`: the messages of the rows' conversations (conversation_id, message_id, turn, role, text). The completion
    is the row's own message; rows are sorted by created_at, message_id.
    """
    msgs = con.to_pyarrow(cm.order_by(["conversation_id", "turn", "message_id"])
                          .select("conversation_id", "turn", "role", "text"))
    index = SortedMessages(msgs, k)
    del msgs
    own = cm.select(oid="message_id", ctext="text")
    j = rows.join(own, rows.message_id == own.oid)
    j = j.select(*META, "turn_index", "ctext").order_by(["created_at", "message_id"])
    with pq.ParquetWriter(path, SCHEMA, **WRITE_OPTIONS) as writer:
        empty = True
        # to_pyarrow_batches would stream, but Ibis 12's DuckDB backend calls a method DuckDB 2 removed
        for batch in con.to_pyarrow(j).to_batches(max_chunksize=chunk_rows):
            if batch.num_rows == 0:
                continue
            prompt = index.prompts(batch.column("conversation_id"), batch.column("turn_index").to_numpy())
            cols = {"prompt": prompt, "completion": _completion(batch.column("ctext"))}
            cols.update({c: batch.column(c).cast(SCHEMA.field(c).type) for c in META})
            writer.write_table(pa.Table.from_pydict(cols, schema=SCHEMA))
            empty = False
        if empty:
            writer.write_table(SCHEMA.empty_table())
