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
# One reaction row is written per count; real exports have counts in the tens. A larger count is an error
# in the export (and would make millions of rows).
MAX_EMOJI_COUNT = 100_000


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
        self.depths: dict[str, int] = {}
        self.cycles: dict[str, str] = {}  # message_id -> detail, for members of a parent_id cycle
        self._time: dict[str, datetime] = {}
        self._user: dict[str, str] = {}
        self.notes = src.notes
        for key in ("synthetic_times", "anonymous_users", "oasst_skip_emojis"):
            self.notes.setdefault(key, 0)

    def resolve(self, ids: Any = None) -> None:
        """Depth of every message in by_id, and the parent_id cycles, walking up iteratively (chains of any
        length, listed in any order). A message whose parent is absent (or on a cycle) gets depth 0: an
        orphan, kept and counted by the cross-file checks. Cycle members are quarantined in `emit`.
        `ids`: the messages to resolve (default: all)."""
        for start in self.by_id if ids is None else ids:
            path: list[str] = []
            on_path: dict[str, int] = {}
            cur = start
            base = -1
            while cur not in self.depths and cur not in self.cycles:
                if cur in on_path:  # back on this walk: path[on_path[cur]:] is a cycle
                    members = path[on_path[cur] :]
                    shown = " -> ".join(repr(x[:40]) for x in [*members, members[0]][:12])
                    for x in members:
                        self.cycles[x] = f"parent_id links form a cycle: {shown}"
                    del path[on_path[cur] :]
                    break
                on_path[cur] = len(path)
                path.append(cur)
                pid = self.by_id[cur].get("parent_id")
                if not isinstance(pid, str) or pid not in self.by_id:
                    break
                cur = pid
            else:
                base = self.depths.get(cur, -1)
            for x in reversed(path):
                base += 1
                self.depths[x] = base

    def _parent(self, m: dict) -> dict | None:
        pid = m.get("parent_id")
        parent = self.by_id.get(pid) if isinstance(pid, str) else None
        return None if parent is None or pid in self.cycles or parent is m else parent

    def _up(self, m: dict, known: dict[str, Any], stop: Any) -> tuple[list[dict], dict | None]:
        """(m and its ancestors up to the first one with a value in `known` or for which `stop(node)`
        holds, nearest first; that ancestor or None)."""
        chain, seen, cur = [], set(), m
        while cur is not None and id(cur) not in seen:
            mid = cur.get("message_id")
            if isinstance(mid, str) and mid in known:
                return chain, cur
            chain.append(cur)
            seen.add(id(cur))
            if stop(cur):
                return chain, None
            cur = self._parent(cur)
        return chain, None

    def time(self, m: dict) -> Any:
        """created_date, else parent's time + 1 s, else missing_time (memoised, iterative over the chain)."""
        chain, top = self._up(m, self._time, lambda n: _parse_time(n.get("created_date")) is not None)
        base = self._time[top["message_id"]] if top is not None else None
        t = None
        for node in reversed(chain):
            t = _parse_time(node.get("created_date"))
            if t is None:
                t = self.cfg.missing_time if base is None else base + timedelta(seconds=1)
                if node.get("created_date") is None:
                    self.notes["synthetic_times"] += 1
            if isinstance(node.get("message_id"), str):
                self._time[node["message_id"]] = t
            base = t
        given = m.get("created_date")
        if given is not None and _parse_time(given) is None:
            return given  # unparseable: quarantined as bad_timestamp by the row checks
        return t if chain else base

    def user(self, m: dict) -> str:
        """The human of the conversation at this message: a prompter's own user_id; on an assistant reply,
        the user of the nearest prompter above it (anonymous if there is none)."""
        chain, top = self._up(m, self._user, lambda n: n.get("role") != "assistant")
        if top is not None:
            uid = self._user[top["message_id"]]
        elif chain[-1].get("role") != "assistant":
            own = chain[-1].get("user_id")
            if isinstance(own, str) and own:
                uid = own
            else:
                uid = f"oasst-anon:{chain[-1].get('message_id')}"
                self.notes["anonymous_users"] += 1
        else:
            uid = f"oasst-anon:{chain[-1].get('parent_id')}"
        for node in chain:
            if isinstance(node.get("message_id"), str):
                self._user[node["message_id"]] = uid
        return uid

    def depth(self, m: dict) -> int:
        mid = m.get("message_id")
        return self.depths.get(mid, 0) if isinstance(mid, str) else 0

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
        if isinstance(m.get("message_id"), str) and m["message_id"] in self.cycles:
            reason, field, detail = "parent_cycle", "parent_id", self.cycles[m["message_id"]]
        elif m.get("deleted") is True and not self.cfg.include_deleted:
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
                or not 0 <= count <= MAX_EMOJI_COUNT
                or not isinstance(name, str)
            ):
                self.reactions.bad(
                    row,
                    "wrong_type",
                    f"emoji {short(name)} count must be an integer from 0 to {MAX_EMOJI_COUNT}, got "
                    f"{short(count)}",
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
                    "time_is_click": False,  # the message's time, not when anyone clicked
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
        mapper.resolve([n["message_id"] for n, _ in order if isinstance(n.get("message_id"), str)])
        for sub, (node, depth) in enumerate(order):
            mapper.emit(node, row, sub, depth)
    return {"messages": messages, "reactions": mapper.reactions}


def from_flat(good: list[tuple[int, dict, str]], src: Any, cfg: OasstConfig, messages: Collector) -> dict:
    """Flat form: parents are found by message_id anywhere in the same file."""
    mapper = _Mapper(src, cfg, messages)
    for _, m, _ in good:
        if isinstance(m.get("message_id"), str):
            mapper.by_id.setdefault(m["message_id"], m)
    mapper.resolve()
    for row, m, _ in good:
        mapper.emit(m, row, 0, None)
    return {"messages": messages, "reactions": mapper.reactions}
