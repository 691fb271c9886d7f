"""The canonical interaction-log schema (docs/log-schema.md).

Three tables, each one Parquet file in a logs directory:
  messages.parquet   one row per message
  reactions.parquet  one row per reaction event on an assistant message
  users.parquet      optional user attributes (account creation time)
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from rluf.errors import SchemaError

TS = pa.timestamp("us", tz="UTC")
# A conversation as chat messages (TRL's conversational format): prompts, completions, preference pairs
CHAT = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))

MESSAGES = pa.schema(
    [
        pa.field("conversation_id", pa.string(), nullable=False),
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("parent_id", pa.string(), nullable=True),
        pa.field("turn_index", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=True),
    ]
)

REACTIONS = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=False),
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=True),
    ]
)

ROLES = ("user", "assistant", "system")
TABLES = {"messages": MESSAGES, "reactions": REACTIONS, "users": USERS}


class Message(BaseModel):
    """One message row (mirrors MESSAGES)."""

    model_config = ConfigDict(extra="forbid")
    conversation_id: str = Field(min_length=1)
    message_id: str = Field(min_length=1)
    parent_id: str | None = None
    turn_index: int = Field(ge=0)
    role: Literal["user", "assistant", "system"]
    text: str = Field(min_length=1)
    created_at: datetime
    user_id: str = Field(min_length=1)
    model_id: str | None = None


class Reaction(BaseModel):
    """One reaction event on an assistant message (mirrors REACTIONS)."""

    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    created_at: datetime


class User(BaseModel):
    """Optional user attributes (mirrors USERS)."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1)
    created_at: datetime | None = None


def check_table(table: pa.Table, name: str, *, source: str = "") -> pa.Table:
    """Check that `table` has every column of the canonical table `name` and cast it to the canonical types.

    Extra columns are dropped. Raises SchemaError naming the missing column(s) and the source.
    """
    schema = TABLES[name]
    missing = [f.name for f in schema if f.name not in table.column_names]
    where = f" in {source}" if source else ""
    if missing:
        raise SchemaError(
            f"{name} table{where} is missing column(s) {missing}; expected columns {schema.names} "
            "(see docs/log-schema.md)"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise SchemaError(f"{name} table{where} cannot be cast to the canonical types: {e}") from e
