from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf.schema import MESSAGES, REACTIONS, USERS
from rluf.signals.synth import synth_logs

T0 = datetime(2025, 1, 1, tzinfo=UTC)
D = timedelta(days=1)


def write_logs(root, messages, reactions, users=None):
    """Write hand-built rows (lists of dicts) as canonical logs in root/logs; return that folder."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(messages, schema=MESSAGES), logs / "messages.parquet")
    pq.write_table(pa.Table.from_pylist(reactions, schema=REACTIONS), logs / "reactions.parquet")
    if users is not None:
        pq.write_table(pa.Table.from_pylist(users, schema=USERS), logs / "users.parquet")
    return logs


def conversation(cid, user, start, texts, model="arm-a", gap=timedelta(seconds=30)):
    """Messages alternating user / assistant, ids `{cid}-{turn}`."""
    out = []
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        out.append(dict(
            conversation_id=cid, message_id=f"{cid}-{i}", parent_id=f"{cid}-{i - 1}" if i else None,
            turn_index=i, role=role, text=text, created_at=start + i * gap, user_id=user,
            model_id=model if role == "assistant" else None,
        ))
    return out


def reaction(message, rtype, after=timedelta(seconds=20), user=None):
    return dict(message_id=message["message_id"], type=rtype, user_id=user or message["user_id"],
                created_at=message["created_at"] + after)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Synthetic logs with 5 reaction spammers and a 15-account burst (truth in synth_dir/truth)."""
    root = tmp_path_factory.mktemp("synth")
    synth_logs(root, n_conversations=2000, n_users=300, n_spammers=5, n_burst=15, pii_share=0.05, seed=1)
    return root


@pytest.fixture(scope="session")
def ten_days(tmp_path_factory):
    """Conversations c0..c9, one a day (c_i by user u{i % 3}); c0 has 6 messages; c1 and c2 are identical."""
    msgs = conversation("c0", "u0", T0, ["q1", "a1", "q2", "a2", "q3", "a3"])
    for i in range(1, 10):
        texts = ["same q", "same a"] if i in (1, 2) else [f"q{i}", f"a{i}", f"q{i}b", f"a{i}b"]
        msgs += conversation(f"c{i}", f"u{i % 3}", T0 + i * D, texts)
    by_id = {m["message_id"]: m for m in msgs}
    rx = [reaction(by_id[i], "love") for i in ("c0-3", "c1-1", "c4-1", "c8-1", "c9-3")]
    rx += [reaction(by_id["c5-1"], "like"), reaction(by_id["c6-3"], "dislike")]
    return write_logs(tmp_path_factory.mktemp("ten"), msgs, rx)
