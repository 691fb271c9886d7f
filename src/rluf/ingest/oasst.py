"""OpenAssistant exports -> canonical messages and reactions (docs/log-schema.md, "OpenAssistant").

Two forms of the same export (LAION-AI Open-Assistant, oasst1/oasst2):
  tree  one conversation tree a line: {"message_tree_id", "prompt": {..., "replies": [...]}}
  flat  one message a line (or a Parquet row): message_id, parent_id, message_tree_id, role, text, ...
`emojis` is a map {"+1": 2, "_skip_reply": 1} or parallel lists {"name": [...], "count": [...]}.

The mapping, and what is synthetic about it:
  conversation_id = message_tree_id; turn_index = depth in the tree (siblings share it: they are
  alternative replies, linked by parent_id); role prompter -> user.
  user_id = the human of the conversation: a prompter's own user_id; on an assistant reply, the user_id
  of the prompter it answers. Missing ids become "oasst-anon:<message_id>" (one per message, never merged).
  model_id = model_name for synthetic replies, else "oasst-human" (volunteers wrote the replies).
  created_at = created_date; if absent, the parent's time + 1 s, or oasst.missing_time for a root.
  Reactions: each count of +1 / -1 / red_flag becomes one reaction row (types via oasst.reaction_types)
  with a synthetic anonymous user "oasst-anon:<message_id>:<emoji>:<i>" and created_at = the message's
  time: the export keeps counts, not who reacted or when. `_skip*` names are not reactions (counted in
  notes.oasst_skip_emojis). Emojis on prompter messages are quarantined (reaction_on_user_message).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rluf.ingest.config import OasstConfig
from rluf.ingest.records import Collector, short

ROLE = {"prompter": "user", "assistant": "assistant"}


def _parse_time(s: Any) -> datetime | None:
    if isinstance(s, datetime):
        return s
    if isinstance(s, str):
        try:
            return datetime.fromisoformat(s)
        except ValueError:
            return None
    return None


def _emoji_counts(emojis: Any) -> list[tuple[str, Any]] | None:
    """[(name, count)] from either emoji form; None if the value has neither form."""
    if emojis is None:
        return []
    if isinstance(emojis, dict) and set(emojis) == {"name", "count"}:
        names, counts = emojis["name"], emojis["count"]
        if isinstance(names, list) and isinstance(counts, list) and len(names) == len(counts):
            return list(zip(names, counts, strict=True))
        return None
    if isinstance(emojis, dict):
        return list(emojis.items())
    if isinstance(emojis, list) and all(isinstance(e, dict) and {"name", "count"} <= set(e) for e in emojis):
        return [(e["name"], e["count"]) for e in emojis]
    return None


class _Mapper:
    """Maps flat OpenAssistant message dicts of one file onto canonical rows."""

    def __init__(self, src: Any, cfg: OasstConfig, messages: Collector):
        self.src, self.cfg, self.messages = src, cfg, messages
        self.reactions = Collector("reactions", src.index)
        self.by_id: dict[str, dict] = {}
        self._time: dict[str, datetime] = {}
        self._user: dict[str, str] = {}
        self.notes = src.notes
        for key in ("synthetic_times", "anonymous_users", "oasst_skip_emojis"):
            self.notes.setdefault(key, 0)

    def time(self, m: dict) -> Any:
        """created_date, else parent's time + 1 s, else missing_time (memoised, iterative over the chain)."""
        chain, cur = [], m
        while cur is not None and cur.get("message_id") not in self._time:
            chain.append(cur)
            cur = self.by_id.get(cur.get("parent_id")) if cur.get("parent_id") is not None else None
            if len(chain) > 10_000:  # a parent cycle; stop and treat as a root
                break
        base = self._time.get(cur.get("message_id")) if cur is not None else None
        for node in reversed(chain):
            t = _parse_time(node.get("created_date"))
            if t is None:
                t = self.cfg.missing_time if base is None else base + timedelta(seconds=1)
                if node.get("created_date") is None:
                    self.notes["synthetic_times"] += 1
            self._time[node.get("message_id")] = base = t
        given = m.get("created_date")
        if given is not None and _parse_time(given) is None:
            return given  # unparseable: quarantined as bad_timestamp by the row checks
        return self._time.get(m.get("message_id"))

    def user(self, m: dict) -> str:
        """The human of the conversation at this message."""
        mid = m.get("message_id")
        if mid in self._user:
            return self._user[mid]
        if m.get("role") == "assistant":
            parent = self.by_id.get(m.get("parent_id"))
            uid = (
                self.user(parent)
                if parent is not None and parent is not m
                else f"oasst-anon:{m.get('parent_id')}"
            )
        elif isinstance(m.get("user_id"), str) and m["user_id"]:
            uid = m["user_id"]
        else:
            uid = f"oasst-anon:{mid}"
            self.notes["anonymous_users"] += 1
        self._user[mid] = uid
        return uid

    def depth(self, m: dict) -> int:
        d, cur = 0, m
        while cur.get("parent_id") is not None and cur["parent_id"] in self.by_id and d < 10_000:
            cur, d = self.by_id[cur["parent_id"]], d + 1
        return d

    def emit(self, m: dict, row: int, sub: int, depth: int | None) -> None:
        raw = json.dumps({k: v for k, v in m.items() if k != "replies"}, default=str)
        role = m.get("role")
        model = m.get("model_name") or ("oasst-human" if role == "assistant" else None)
        rec = {
            "conversation_id": m.get("message_tree_id"),
            "message_id": m.get("message_id"),
            "parent_id": m.get("parent_id"),
            "turn_index": self.depth(m) if depth is None else depth,
            "role": ROLE.get(role, role),
            "text": m.get("text"),
            "created_at": self.time(m),
            "user_id": self.user(m),
            "model_id": model if role == "assistant" else None,
        }
        reason = detail = field = None
        if m.get("deleted") is True and not self.cfg.include_deleted:
            reason, field, detail = (
                "deleted",
                "deleted",
                "message is flagged deleted in the OpenAssistant export",
            )
        self.messages.add(rec, row, sub, raw[:4000], reason, field, detail)
        self.emojis(m, row, rec["created_at"], raw)

    def emojis(self, m: dict, row: int, when: Any, raw: str) -> None:
        counts = _emoji_counts(m.get("emojis"))
        if counts is None:
            self.reactions.bad(
                row,
                "wrong_type",
                f"emojis must be a name->count map or {{name: [...], count: "
                f"[...]}} lists of equal length, got {short(m.get('emojis'))}",
                raw,
                "emojis",
                sub=len(self.reactions),
            )
            return
        for name, count in counts:
            if isinstance(name, str) and name.startswith("_skip"):
                self.notes["oasst_skip_emojis"] += count if isinstance(count, int) else 0
                continue
            if (
                not isinstance(count, int)
                or isinstance(count, bool)
                or count < 0
                or not isinstance(name, str)
            ):
                self.reactions.bad(
                    row,
                    "wrong_type",
                    f"emoji {short(name)} count must be an integer >= 0, got {short(count)}",
                    raw,
                    "emojis",
                    sub=len(self.reactions),
                )
                continue
            rtype = self.cfg.reaction_types.get(name, name)
            for i in range(count):
                rec = {
                    "message_id": m.get("message_id"),
                    "type": rtype,
                    "user_id": f"oasst-anon:{m.get('message_id')}:{name}:{i}",
                    "created_at": when,
                }
                self.reactions.add(rec, row, len(self.reactions), raw[:1000])


def from_trees(good: list[tuple[int, dict, str]], src: Any, cfg: OasstConfig, messages: Collector) -> dict:
    """Tree form: walk every tree depth-first; turn_index = depth."""
    mapper = _Mapper(src, cfg, messages)
    for row, tree, raw in good:
        root = tree.get("prompt")
        if not isinstance(root, dict):
            messages.bad(row, "missing_field", "the tree has no 'prompt' message object", raw, "prompt")
            continue
        stack, order = [(root, 0, None)], []
        while stack:
            node, depth, parent = stack.pop()
            node = {**node, "message_tree_id": node.get("message_tree_id") or tree.get("message_tree_id")}
            node.setdefault("parent_id", parent)
            if isinstance(node.get("message_id"), str):
                mapper.by_id[node["message_id"]] = node
            order.append((node, depth))
            replies = node.get("replies") or []
            for child in reversed(replies if isinstance(replies, list) else []):
                if isinstance(child, dict):
                    stack.append((child, depth + 1, node.get("message_id")))
        for sub, (node, depth) in enumerate(order):
            mapper.emit(node, row, sub, depth)
    return {"messages": messages, "reactions": mapper.reactions}


def from_flat(good: list[tuple[int, dict, str]], src: Any, cfg: OasstConfig, messages: Collector) -> dict:
    """Flat form: parents are found by message_id anywhere in the same file."""
    mapper = _Mapper(src, cfg, messages)
    for _, m, _ in good:
        if isinstance(m.get("message_id"), str):
            mapper.by_id.setdefault(m["message_id"], m)
    for row, m, _ in good:
        mapper.emit(m, row, 0, None)
    return {"messages": messages, "reactions": mapper.reactions}
