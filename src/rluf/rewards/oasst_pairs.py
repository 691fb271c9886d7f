"""OpenAssistant exports as reward-model data: sibling rankings as helpfulness preference pairs.

OpenAssistant volunteers ranked the alternative replies to one message (`rank`: 0 is the best). Each two
ranked assistant siblings give a real helpfulness pair on the same prompt: the better-ranked reply is
`chosen`. The prompt is the ancestor chain (`parent_id`), oldest first, so a reply is never paired with a
context from another branch. Both export forms are read: the tree form (one tree a line, `replies` nested)
and the flat form (one message a line, `message_tree_id` and `parent_id`), as JSONL(.gz) or Parquet.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pandas as pd

from rluf.errors import DataError, SchemaError
from rluf.utils import iter_json_lines

ROLES = {"prompter": "user", "assistant": "assistant"}
COLUMNS = ["message_id", "parent_id", "tree_id", "role", "text", "rank", "emojis", "deleted"]


def _flatten_tree(tree: dict, where: str) -> list[dict]:
    root = tree.get("prompt")
    if not isinstance(root, dict):
        raise SchemaError(f"{where}: a tree-form line needs a 'prompt' message object")
    out, stack = [], [(root, None)]
    while stack:
        node, parent = stack.pop()
        out.append({**node, "parent_id": node.get("parent_id", parent),
                    "message_tree_id": node.get("message_tree_id") or tree.get("message_tree_id")})
        stack.extend((child, node.get("message_id")) for child in reversed(node.get("replies") or []))
    return out


def _records(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_dict("records")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, obj in iter_json_lines(f, path):
            records += _flatten_tree(obj, f"{path} line {lineno}") if "prompt" in obj else [obj]
    return records


def read_oasst_messages(path: str | Path) -> pd.DataFrame:
    """Every message of an OpenAssistant export (tree or flat form) as one row: message_id, parent_id,
    tree_id, role (user / assistant), text, rank (NaN when unranked), emojis (a name -> count dict) and
    deleted."""
    from rluf.ingest.oasst import _emoji_counts

    path = Path(path)
    if not path.is_file():
        raise DataError(f"OpenAssistant export {path} does not exist")
    rows = []
    for i, m in enumerate(_records(path)):
        missing = [k for k in ("message_id", "role", "text") if m.get(k) is None]
        if missing or m.get("role") not in ROLES:
            raise SchemaError(f"{path} message {i}: expected message_id, text and role prompter/assistant, got "
                              f"missing {missing}, role {m.get('role')!r}")
        counts = _emoji_counts(m.get("emojis"))
        if counts is None:
            raise SchemaError(f"{path} message {m['message_id']}: emojis must be a name -> count map or "
                              f"{{name: [...], count: [...]}} lists, got {str(m.get('emojis'))[:80]}")
        rank = m.get("rank")
        rows.append({"message_id": m["message_id"], "parent_id": m.get("parent_id"),
                     "tree_id": m.get("message_tree_id"), "role": ROLES[m["role"]], "text": m["text"],
                     "rank": float("nan") if rank is None or pd.isna(rank) else float(rank),
                     "emojis": {str(k): int(v) for k, v in counts}, "deleted": bool(m.get("deleted") or False)})
    if not rows:
        raise DataError(f"{path} holds no messages")
    return pd.DataFrame(rows, columns=COLUMNS)


def ancestor_chats(messages: pd.DataFrame) -> dict[str, list[dict[str, str]]]:
    """message_id -> its context: the messages on its `parent_id` chain, oldest first (a root's is empty; the
    chain stops at a parent missing from `messages`)."""
    by_id = dict(zip(messages.message_id, zip(messages.parent_id, messages.role, messages.text, strict=True),
                     strict=True))
    paths: dict[str, list[dict[str, str]]] = {}  # message_id -> its chain including itself

    def path(mid: str) -> list[dict[str, str]]:
        chain, seen, cur = [], set(), mid
        while cur in by_id and cur not in paths and cur not in seen:  # `seen`: a parent cycle ends the chain
            chain.append(cur)
            seen.add(cur)
            cur = by_id[cur][0]
        ctx = paths.get(cur, [])
        for node in reversed(chain):
            _, role, text = by_id[node]
            ctx = paths[node] = [*ctx, {"role": role, "content": text}]
        return paths[mid]

    return {mid: path(mid)[:-1] for mid in messages.message_id}


def sibling_pairs(messages: pd.DataFrame, trees: set[str] | None = None, conversational: bool = True
                  ) -> pd.DataFrame:
    """Helpfulness pairs from the ranked assistant siblings of `messages` (`read_oasst_messages`), optionally
    only from `trees` (e.g. a cross-validation fold's training trees). Every two ranked siblings give one pair,
    the better rank `chosen`. Columns: prompt, chosen, rejected in TRL's preference form (conversational:
    message lists; else plain strings, the prompt being the last user message), plus tree_id, chosen_id,
    rejected_id."""
    m = messages[(messages.role == "assistant") & messages["rank"].notna() & ~messages.deleted]
    if trees is not None:
        m = m[m.tree_id.isin(trees)]
    chats = ancestor_chats(messages)
    rows = []
    for _, group in m.groupby("parent_id", sort=True):
        g = group.sort_values(["rank", "message_id"])
        ranks, ids, texts = g["rank"].tolist(), g.message_id.tolist(), g.text.tolist()
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if ranks[i] == ranks[j]:
                    continue
                ctx = chats[ids[i]]
                row: dict[str, Any] = {"tree_id": g.tree_id.iloc[i], "chosen_id": ids[i], "rejected_id": ids[j]}
                if conversational:
                    row |= {"prompt": ctx, "chosen": [{"role": "assistant", "content": texts[i]}],
                            "rejected": [{"role": "assistant", "content": texts[j]}]}
                else:
                    last_user = next((c["content"] for c in reversed(ctx) if c["role"] == "user"), "")
                    row |= {"prompt": last_user, "chosen": texts[i], "rejected": texts[j]}
                rows.append(row)
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "tree_id", "chosen_id", "rejected_id"])


def write_sibling_pairs(export: str | Path, out: str | Path, trees: set[str] | None = None) -> int:
    """Write `sibling_pairs` of an OpenAssistant export to `out` (Parquet, conversational); returns the pair
    count. The file trains a helpfulness model as it is (`rluf train-reward helpfulness --data out`)."""
    pairs = sibling_pairs(read_oasst_messages(export), trees)
    if pairs.empty:
        raise DataError(f"{export} has no two ranked assistant replies to one message: no pairs to write")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(out, index=False)
    return len(pairs)
