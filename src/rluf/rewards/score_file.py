"""`score_file`: score a Parquet table of (context, response) rows with a reward model (`rluf score`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rluf.errors import DataError, SchemaError
from rluf.rewards.data import _messages, _response
from rluf.rewards.scorer import Scorer
from rluf.utils import atomic_write_bytes


def read_score_input(path: Path) -> tuple[pd.DataFrame, dict[str, tuple[list, list[str]]]]:
    """Return the table and, per output column prefix, (contexts, responses) to score.

    Accepted: prompt + completion (curated rows), prompt + response (a string), prompt + chosen + rejected.
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    df = pd.read_parquet(path)
    if "prompt" not in df.columns:
        raise SchemaError(f"{path}: no 'prompt' column (a list of {{role, content}} messages); got {list(df.columns)}")
    contexts = [_messages(v, f"{path} row {i} column prompt") for i, v in enumerate(df["prompt"])]
    if "completion" in df.columns:
        resp = [_response(v, f"{path} row {i} column completion") for i, v in enumerate(df["completion"])]
        return df, {"": (contexts, resp)}
    if "response" in df.columns:
        return df, {"": (contexts, df["response"].astype(str).tolist())}
    if "chosen" in df.columns and "rejected" in df.columns:
        return df, {
            "chosen_": (contexts, [_response(v, f"{path} row {i} column chosen") for i, v in enumerate(df["chosen"])]),
            "rejected_": (contexts, [_response(v, f"{path} row {i} column rejected")
                                     for i, v in enumerate(df["rejected"])]),
        }
    raise SchemaError(f"{path}: needs a response column: 'completion' (messages), 'response' (text), or "
                      f"'chosen' and 'rejected'; got {list(df.columns)}")


def score_file(model: str | Path, data: str | Path, out: str | Path, *, batch_size: int = 64,
               device: str = "auto", progress: bool = False) -> int:
    """Write `data`'s columns plus `score` (and `prob` for P[Love]) to `out`; returns the row count."""
    scorer = Scorer.from_pretrained(model, device=device)
    df, jobs = read_score_input(Path(data))
    df = df.copy()
    for prefix, (contexts, responses) in jobs.items():
        raw = scorer.score(contexts, responses, batch_size=batch_size, progress=progress)
        df[f"{prefix}score"] = raw
        if scorer.objective == "love":
            df[f"{prefix}prob"] = scorer.prob_from_raw(raw)
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(out, buf.getvalue())
    return len(df)
