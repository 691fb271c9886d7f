"""`rluf judge`: run a Mixture of Judges over a file of responses and report per-judge pass rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import Field

from rluf.config import StrictModel, load_config, parse_pairs
from rluf.errors import ConfigError, SchemaError
from rluf.judges.config import JudgeConfig


class JudgesFile(StrictModel):
    """A YAML file with a `judges:` list (the same entries as in `rluf optimize`'s config)."""

    judges: list[JudgeConfig] = Field(min_length=1)


def read_items(path: Path) -> list[dict[str, Any]]:
    """JSONL rows with `prompt` (chat messages) and `response` (text) or `completion` (one assistant
    message); every other key is metadata for the judges."""
    from rluf.judges.base import Item
    from rluf.utils import iter_json_lines

    if not path.is_file():
        raise ConfigError(f"--input {path}: no such file; give a JSONL file of {{prompt, response}} rows")
    items = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, row in iter_json_lines(lines, path, bad_json="{path}:{lineno}: not valid JSON ({e.msg})"):
        if "prompt" not in row or ("response" not in row and "completion" not in row):
            raise SchemaError(f"{path}:{i}: needs `prompt` and `response` (or `completion`), got keys {sorted(row)}")
        response = row.pop("response", None)
        if response is None:
            response = row.pop("completion")[-1]["content"]
        prompt = row.pop("prompt")
        items.append(Item(prompt, str(response), row))
    return items


def judge_cmd(
    config: Path = typer.Option(..., "--config", help="YAML with a `judges:` list (docs/judges.md)"),
    input: Path = typer.Option(..., "--input", help="JSONL: prompt (chat messages), response or completion, metadata"),
    out: Path | None = typer.Option(None, "--out", help="JSONL of verdicts: passed, failed judges with reasons"),
    objective: list[str] | None = typer.Option(None, "--objective", help="NAME=REWARD_MODEL_DIR for model judges"),
) -> None:
    """Judge responses with a Mixture of Judges; prints the pass rate of each judge."""
    from rluf.judges.config import build_judges
    from rluf.optimize.objectives import load_objectives

    spec = load_config(JudgesFile, config)
    scorers = load_objectives(parse_pairs(objective, "--objective"))
    moj = build_judges(spec.judges, scorers)
    items = read_items(input)
    res = moj.judge(items)
    if out is not None:
        from rluf.utils import atomic_write_bytes

        lines = [json.dumps({"passed": bool(res.passed[i]), "failed": res.reasons(i)}) for i in range(len(items))]
        atomic_write_bytes(out, ("\n".join(lines) + "\n").encode())
    typer.echo(json.dumps({"n": len(items), "pass_rates": res.pass_rates()}, indent=2))


def register(app: typer.Typer) -> None:
    app.command("judge")(judge_cmd)
