"""The prompt pool CRRAFT samples its B prompts from: contexts, per-prompt metadata and y_base.

A pool is drawn once at the start of a run and stored in the run directory (`pool.jsonl`), with the
baseline response y_base of every prompt, so a resumed run sees exactly the same prompts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rluf.errors import DataError, SchemaError
from rluf.utils import atomic_write_bytes

Chat = list[dict[str, str]]


@dataclass
class PromptItem:
    """One prompt: its chat context, metadata for the judges (e.g. `reference`, `must_refuse`) and
    the logged response, if any. `y_base` is filled in when the pool is built."""

    context: Chat
    metadata: dict[str, Any] = field(default_factory=dict)
    logged: str | None = None
    y_base: str | None = None


def _check_context(value: Any, where: str) -> Chat:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise SchemaError(f"{where}: `prompt` must be a non-empty list of {{role, content}} messages, "
                          f"got {value!r:.80}")
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise SchemaError(f"{where}: every message needs `role` and `content`, got {m!r:.80}")
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]


def _completion_text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    return None


def read_prompt_file(path: str | Path) -> list[PromptItem]:
    """Read a Parquet or JSONL prompt file: `prompt` (chat messages), optional `completion`, other columns
    become metadata (TRL's prompt-only / unpaired-preference forms both work)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"prompts.path = {str(path)!r}: no such file; give a .parquet or .jsonl file")
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
    if "prompt" not in df.columns:
        raise SchemaError(f"{path}: no `prompt` column (columns: {list(df.columns)}); see docs/data_formats.md")
    meta_cols = [c for c in df.columns if c not in ("prompt", "completion", "label")]
    items = []
    for i, row in enumerate(df.to_dict("records")):
        meta = {c: _plain(row[c]) for c in meta_cols if _plain(row[c]) is not None}
        items.append(
            PromptItem(_check_context(row["prompt"], f"{path} row {i}"), meta, _completion_text(row.get("completion")))
        )
    if not items:
        raise DataError(f"{path}: the prompt file is empty")
    return items


def _plain(v: Any) -> Any:
    """numpy / pandas scalars -> plain Python (JSON-able); NaN -> None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def draw_pool(items: list[PromptItem], n: int, seed: int) -> list[PromptItem]:
    """`n` prompts without replacement (all of them if there are fewer), in a seeded order."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(items))[: min(n, len(items))]
    return [items[i] for i in idx]


def batch_indices(pool_size: int, batch: int, seed: int, iteration: int) -> np.ndarray:
    """The B prompt indices of `iteration`: a function of (seed, iteration) only, so the data position of
    a resumed run is just the iteration number."""
    rng = np.random.default_rng([seed, iteration])
    return rng.choice(pool_size, size=min(batch, pool_size), replace=False)


def save_pool(path: str | Path, pool: list[PromptItem]) -> None:
    lines = "".join(json.dumps(asdict(p)) + "\n" for p in pool)
    atomic_write_bytes(path, lines.encode())


def load_pool(path: str | Path) -> list[PromptItem]:
    with open(path, encoding="utf-8") as f:
        return [PromptItem(**json.loads(line)) for line in f if line.strip()]
