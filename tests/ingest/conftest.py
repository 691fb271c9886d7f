"""Shared helpers for the ingest tests: a small valid canonical log and file writers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def messages() -> list[dict]:
    """One two-turn conversation and a one-turn one."""
    base = {"conversation_id": "c1", "user_id": "u1", "model_id": None, "parent_id": None}
    return [
        {
            **base,
            "message_id": "m1",
            "turn_index": 0,
            "role": "user",
            "text": "Hi there",
            "created_at": "2025-01-01T10:00:00Z",
        },
        {
            **base,
            "message_id": "m2",
            "parent_id": "m1",
            "turn_index": 1,
            "role": "assistant",
            "text": "Hello!",
            "created_at": "2025-01-01T10:00:02Z",
            "model_id": "arm-a",
        },
        {
            **base,
            "message_id": "m3",
            "parent_id": "m2",
            "turn_index": 2,
            "role": "user",
            "text": "Thanks",
            "created_at": "2025-01-01T10:01:00Z",
        },
        {
            **base,
            "message_id": "m4",
            "parent_id": "m3",
            "turn_index": 3,
            "role": "assistant",
            "text": "Any time.",
            "created_at": "2025-01-01T10:01:01Z",
            "model_id": "arm-a",
        },
        {
            "conversation_id": "c2",
            "user_id": "u2",
            "model_id": None,
            "parent_id": None,
            "message_id": "m5",
            "turn_index": 0,
            "role": "system",
            "text": "Be brief.",
            "created_at": "2025-01-02T09:00:00Z",
        },
    ]


def reactions() -> list[dict]:
    return [
        {"message_id": "m2", "type": "love", "user_id": "u1", "created_at": "2025-01-01T10:00:30Z"},
        {"message_id": "m4", "type": "like", "user_id": "u1", "created_at": "2025-01-01T10:02:00Z"},
    ]


def users() -> list[dict]:
    return [{"user_id": "u1", "created_at": "2024-12-01T00:00:00Z"}, {"user_id": "u2", "created_at": None}]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_quarantine(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def log_files(tmp_path: Path) -> list[Path]:
    """A valid canonical log as three JSONL files."""
    return [
        write_jsonl(tmp_path / "messages.jsonl", messages()),
        write_jsonl(tmp_path / "reactions.jsonl", reactions()),
        write_jsonl(tmp_path / "users.jsonl", users()),
    ]
