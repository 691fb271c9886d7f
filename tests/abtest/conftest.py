"""Synthetic A/B logs in the canonical schema with a known true lift and heavy-tailed users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rluf.schema import MESSAGES, REACTIONS

FAMILIES = ("factual", "advice", "chat")
CLICK = timedelta(seconds=30)  # a reaction comes half a minute after its answer


def user_counts(rng, users: int, rate: float, mean_responses: float = 8.0, shape: float = 0.5):
    """Per-user (y, n): n ~ 1 + Poisson, propensity ~ rate * Gamma(shape, 1/shape) (mean rate)."""
    n = 1 + rng.poisson(mean_responses - 1, size=users)
    p = np.clip(rate * rng.gamma(shape, 1 / shape, size=users), 0, 1)
    y = rng.binomial(n, p)
    return y, n


def write_logs(
    out: Path, *, users: int = 400, rate_c: float = 0.05, lift: float = 0.3, seed: int = 0,
    arms: tuple[str, str] = ("A", "B"), shape: float = 0.5, signal: str = "love",
) -> Path:
    """Write messages/reactions Parquet to out/logs and conversation families to out/truth; returns out/logs."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    msgs, reacts, convs = [], [], []
    for u in range(users):
        arm = arms[u % 2]
        rate = rate_c * (1 + lift) if arm == arms[1] else rate_c
        n = 1 + rng.poisson(7)
        p = min(1.0, rate * rng.gamma(shape, 1 / shape))
        for k in range(n):
            cid, fam = f"c{u}_{k}", FAMILIES[(u + k) % 3]
            convs.append({"conversation_id": cid, "family": fam})
            ts = t0 + timedelta(minutes=u * 100 + k)
            for turn, role in enumerate(("user", "assistant")):
                msgs.append({
                    "conversation_id": cid, "message_id": f"{cid}_{turn}", "parent_id": None, "turn_index": turn,
                    "role": role, "text": f"question {k}" if role == "user" else "hello", "created_at": ts,
                    "user_id": f"u{u}", "model_id": arm if role == "assistant" else None,
                })
            if rng.random() < p:
                reacts.append({"message_id": f"{cid}_1", "type": signal, "user_id": f"u{u}", "created_at": ts + CLICK})
            if rng.random() < 0.3:
                reacts.append({"message_id": f"{cid}_1", "type": "like", "user_id": f"u{u}", "created_at": ts + CLICK})
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(msgs, schema=MESSAGES), logs / "messages.parquet")
    pq.write_table(pa.Table.from_pylist(reacts, schema=REACTIONS), logs / "reactions.parquet")
    (out / "truth").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(convs), out / "truth" / "conversations.parquet")
    return logs


@pytest.fixture(scope="module")
def ab_logs(tmp_path_factory) -> Path:
    return write_logs(tmp_path_factory.mktemp("ab"))
