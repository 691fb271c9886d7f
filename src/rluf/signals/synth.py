"""A fast synthetic log generator in the canonical schema, for stage-1 tests and the 10M-event benchmark.

It is not the simulated deployment (`rluf simulate`, with ground-truth users and a real policy): texts come
from small pools, reactions are independent draws, and a few adversarial accounts are planted so that the
filters have something to find. Everything is vectorised (numpy + pyarrow compute), so 10M events take
seconds and never exist as Python objects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rluf.schema import MESSAGES, REACTIONS, USERS

T0_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds
DAY_US = 86_400_000_000


def _ids(prefix: str, ints: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(ints), pa.string()), "")


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("int64"), type=pa.timestamp("us", tz="UTC"))


def _conversations(rng, n_conv: int, n_users: int, days: float, max_pairs: int):
    user = rng.integers(0, n_users, n_conv)
    start = T0_US + (rng.random(n_conv) * days * DAY_US).astype("int64")
    pairs = rng.integers(1, max_pairs + 1, n_conv)
    return user, start, pairs


def _messages(rng, user_names, start, pairs, prompt_pool, answer_pool, pii_share, offset):
    """Messages of conversations (user turn, assistant turn) x pairs, message ids from `offset`."""
    n_msg = 2 * pairs
    conv = np.repeat(np.arange(len(pairs)), n_msg)  # (M,)
    first = np.repeat(np.cumsum(n_msg) - n_msg, n_msg)
    turn = np.arange(len(conv)) - first  # (M,) 0-based turn within conversation
    ids = np.arange(len(conv)) + offset
    role = np.where(turn % 2 == 0, "user", "assistant")
    created = start[conv] + turn * 20_000_000 + rng.integers(0, 10_000_000, len(conv))
    text_id = np.where(turn % 2 == 0, rng.integers(0, prompt_pool, len(conv)), rng.integers(0, answer_pool, len(conv)))
    text = pc.if_else(
        pa.array(turn % 2 == 0), _ids("please explain topic ", text_id), _ids("here is answer number ", text_id)
    )
    if pii_share > 0:
        pii = pa.array((turn % 2 == 0) & (rng.random(len(conv)) < pii_share))
        text = pc.if_else(pii, pc.binary_join_element_wise(text, " mail me at jo.doe@example.com", ""), text)
    parent = pc.if_else(pa.array(turn == 0), pa.nulls(len(conv), pa.string()), _ids("m", ids - 1))
    table = pa.table(
        {
            "conversation_id": pc.take(user_names[1], pa.array(conv)),
            "message_id": _ids("m", ids),
            "parent_id": parent,
            "turn_index": pa.array(turn.astype("int32")),
            "role": pa.array(role),
            "text": text,
            "created_at": _ts(created),
            "user_id": pc.take(user_names[0], pa.array(conv)),
            "model_id": pa.array(np.where(role == "assistant", np.where(conv % 2 == 0, "arm-a", "arm-b"), None)),
        },
        schema=MESSAGES,
    )
    return table, created, role == "assistant"


def _reactions(rng, msgs: pa.Table, created, is_asst, rates: dict[str, float], delay_s=(2, 600)):
    mid = msgs["message_id"].filter(pa.array(is_asst))
    uid = msgs["user_id"].filter(pa.array(is_asst))
    at = created[is_asst]
    parts = []
    for rtype, p in rates.items():
        hit = rng.random(len(at)) < p
        delay = rng.integers(int(delay_s[0] * 1e6), int(delay_s[1] * 1e6), int(hit.sum()))
        parts.append(
            pa.table(
                {
                    "message_id": mid.filter(pa.array(hit)),
                    "type": pa.array([rtype] * int(hit.sum()), pa.string()),
                    "user_id": uid.filter(pa.array(hit)),
                    "created_at": _ts(at[hit] + delay),
                    "time_is_click": pa.nulls(int(hit.sum()), pa.bool_()),
                },
                schema=REACTIONS,
            )
        )
    return pa.concat_tables(parts)


def synth_logs(
    out_dir: str | Path,
    *,
    n_conversations: int = 2_000,
    n_users: int = 300,
    days: float = 60.0,
    max_pairs: int = 6,
    rates: dict[str, float] | None = None,
    n_spammers: int = 0,
    n_burst: int = 0,
    pii_share: float = 0.0,
    seed: int = 0,
    prompt_pool: int = 5_000,
    answer_pool: int = 50_000,
) -> dict[str, int]:
    """Write messages/reactions/users.parquet to `out_dir/logs` and the planted adversarial accounts to
    `out_dir/truth/adversarial.parquet`; return counts (events = messages + reactions)."""
    rng = np.random.default_rng(seed)
    rates = rates if rates is not None else {"love": 0.01, "like": 0.08, "dislike": 0.03}
    out = Path(out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)

    user, start, pairs = _conversations(rng, n_conversations, n_users, days, max_pairs)
    names = (pc.take(_ids("u", np.arange(n_users)), pa.array(user)), _ids("c", np.arange(n_conversations)))
    msgs, created, is_asst = _messages(rng, names, start, pairs, prompt_pool, answer_pool, pii_share, 0)
    rx = [_reactions(rng, msgs, created, is_asst, rates)]
    tables, adv = [msgs], []
    offset = len(msgs)
    if n_spammers:  # reaction spammers: love most answers within a fraction of a second
        u, s, p = _conversations(rng, n_spammers * 10, n_spammers, days, max_pairs)
        nm = (pc.take(_ids("spam", np.arange(n_spammers)), pa.array(u)), _ids("cs", np.arange(len(u))))
        m, c, a = _messages(rng, nm, s, p, prompt_pool, answer_pool, 0.0, offset)
        tables.append(m)
        rx.append(_reactions(rng, m, c, a, {"love": 0.6, "like": 0.5}, delay_s=(0.05, 0.5)))
        adv += [(f"spam{i}", "spammer") for i in range(n_spammers)]
        offset += len(m)
    if n_burst:  # a coordinated burst: new accounts, one conversation each, within the same hour
        t_burst = T0_US + int(days / 2 * DAY_US)
        s = t_burst + rng.integers(0, 1800_000_000, n_burst)
        m, c, a = _messages(
            rng,
            (_ids("burst", np.arange(n_burst)), _ids("cb", np.arange(n_burst))),
            s, np.ones(n_burst, dtype=int), prompt_pool, answer_pool, 0.0, offset,
        )
        tables.append(m)
        rx.append(_reactions(rng, m, c, a, {"love": 1.0}, delay_s=(3, 30)))
        adv += [(f"burst{i}", "burst") for i in range(n_burst)]
    messages = pa.concat_tables(tables)
    reactions = pa.concat_tables(rx)
    user_ids = pc.unique(messages["user_id"])
    first_seen = pa.table({"user_id": messages["user_id"], "t": messages["created_at"]}).group_by("user_id").aggregate(
        [("t", "min")]
    )
    # accounts exist up to a year before their first message; burst accounts are created minutes before it
    age = rng.integers(DAY_US, 365 * DAY_US, len(first_seen))
    age = np.where(pc.starts_with(first_seen["user_id"], "burst").to_numpy(zero_copy_only=False), 600_000_000, age)
    created = first_seen["t_min"].cast(pa.int64()).to_numpy() - age
    users = pa.table({"user_id": first_seen["user_id"], "created_at": _ts(created)}, schema=USERS)
    pq.write_table(messages, out / "logs" / "messages.parquet")
    pq.write_table(reactions, out / "logs" / "reactions.parquet")
    pq.write_table(users, out / "logs" / "users.parquet")
    pq.write_table(pa.table({"user_id": [a[0] for a in adv], "kind": [a[1] for a in adv]},
                            schema=pa.schema([("user_id", pa.string()), ("kind", pa.string())])),
                   out / "truth" / "adversarial.parquet")
    return {"messages": len(messages), "reactions": len(reactions), "users": len(user_ids),
            "events": len(messages) + len(reactions)}
