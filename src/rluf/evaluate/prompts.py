"""The held-out prompt set and pre-generated responses, checked at the boundary.

A prompt set is a list of `EvalPrompt`: an id, a chat context (list of {role, content}) and metadata
(the prompt's other scalar columns, e.g. `reference`, `must_refuse`, `family`) that the judges read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rluf.errors import DataError, SchemaError

log = logging.getLogger(__name__)

Chat = list[dict[str, str]]
CONTEXT_COLUMNS = ("prompt", "context", "messages")  # a chat message list
TEXT_COLUMNS = ("text", "question", "query")  # a single user message
DROP_COLUMNS = {"completion", "label", "weight", "chosen", "rejected", "response"}


@dataclass
class EvalPrompt:
    prompt_id: str
    context: Chat
    metadata: dict[str, Any] = field(default_factory=dict)


def read_table(path: str | Path) -> pd.DataFrame:
    """A Parquet, JSONL or CSV file as a DataFrame; raises DataError naming the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=True)
        if path.suffix == ".csv":
            return pd.read_csv(path)
    except ValueError as e:
        raise DataError(f"{path} could not be read as {path.suffix[1:]}: {e}") from None
    raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .parquet, .jsonl or .csv")


def _chat(value: Any, where: str) -> Chat:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SchemaError(f"{where}: a string that is not a JSON message list") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise SchemaError(f"{where}: expected a non-empty list of {{role, content}} messages, got {value!r:.60}")
    out = []
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise SchemaError(f"{where}: every message needs 'role' and 'content', got {m!r:.60}")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


def _scalar(v: Any) -> Any:
    """numpy scalars to Python; pandas' NaN for a missing value back to None (judges test `is None`)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def check_prompts(df: pd.DataFrame, source: str) -> list[EvalPrompt]:
    """Rows of a prompt table to EvalPrompts (distinct contexts only, first occurrence kept)."""
    ctx_col = next((c for c in CONTEXT_COLUMNS if c in df.columns), None)
    text_col = next((c for c in TEXT_COLUMNS if c in df.columns), None)
    if ctx_col is None and text_col is None:
        raise SchemaError(
            f"{source} has no prompt column; expected one of {list(CONTEXT_COLUMNS)} (chat messages) or "
            f"{list(TEXT_COLUMNS)} (one user message); found {list(df.columns)}"
        )
    meta_cols = [c for c in df.columns if c not in {ctx_col, text_col, "prompt_id", *DROP_COLUMNS}]
    seen: set[str] = set()
    out: list[EvalPrompt] = []
    for i, row in enumerate(df.to_dict("records")):
        where = f"{source} row {i}"
        if ctx_col is not None:
            context = _chat(row[ctx_col], f"{where}, column {ctx_col!r}")
        else:
            context = [{"role": "user", "content": str(row[text_col])}]
        key = json.dumps(context, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        pid = str(row["prompt_id"]) if "prompt_id" in row and row["prompt_id"] is not None else f"p{i}"
        meta = {c: _scalar(row[c]) for c in meta_cols if np.isscalar(row[c]) or row[c] is None}
        out.append(EvalPrompt(pid, context, meta))
    ids = [p.prompt_id for p in out]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source}: prompt_id values are not unique among distinct prompts")
    return out


def prompt_file(path: str | Path) -> Path:
    """The file a prompt set is read from: a curated folder (from `rluf curate`) stands for its test.parquet,
    the contexts later in time than all training data."""
    path = Path(path)
    if path.is_dir():
        if not (path / "test.parquet").is_file():
            raise DataError(f"{path} is a folder without test.parquet; pass a prompt file or a curated folder")
        return path / "test.parquet"
    return path


def load_prompts(path: str | Path, n_prompts: int, seed: int) -> list[EvalPrompt]:
    """A seeded sample of at most `n_prompts` distinct prompts from a file or a curated folder (`prompt_file`);
    raises when fewer than 2."""
    path = prompt_file(path)
    prompts = check_prompts(read_table(path), str(path))
    if len(prompts) < 2:
        raise DataError(f"{path} holds {len(prompts)} distinct prompt(s); evaluation needs at least 2")
    if len(prompts) > n_prompts:
        keep = np.sort(np.random.default_rng(seed).choice(len(prompts), n_prompts, replace=False))
        prompts = [prompts[i] for i in keep]
    log.info("evaluating on %d prompts from %s", len(prompts), path)
    return prompts


def read_responses(path: str | Path, prompts: list[EvalPrompt], name: str) -> list[list[str]]:
    """Pre-generated responses of policy `name`: a file with `prompt_id` and `response` columns.

    Returns [len(prompts)][k] (every prompt must have the same number k >= 1 of responses).
    """
    df = read_table(path)
    missing = [c for c in ("prompt_id", "response") if c not in df.columns]
    if missing:
        raise SchemaError(f"responses file {path} for policy {name!r} lacks column(s) {missing}; "
                          "it needs prompt_id and response (or pass an HF model folder to generate)")
    groups = df.assign(prompt_id=df["prompt_id"].astype(str)).groupby("prompt_id")["response"].apply(list)
    absent = [p.prompt_id for p in prompts if p.prompt_id not in groups.index]
    if absent:
        raise DataError(f"responses file {path} for policy {name!r} has no response for {len(absent)} prompt(s), "
                        f"e.g. {absent[:3]}; generate responses for every prompt_id of the prompt set")
    out = [[str(r) for r in groups[p.prompt_id]] for p in prompts]
    counts = {len(r) for r in out}
    if len(counts) != 1:
        raise DataError(f"responses file {path} for policy {name!r}: prompts have different numbers of "
                        f"responses {sorted(counts)}; give each prompt the same number")
    return out
