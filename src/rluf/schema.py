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
        # false: created_at is not when the user clicked (e.g. OpenAssistant reactions get their message's
        # time); time-based filters skip such rows. Null (and true) = a real click time.
        pa.field("time_is_click", pa.bool_(), nullable=True),
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
# Columns added after logs were first written: a table without one still loads, with the column all null.
LATER_COLUMNS = {"reactions": ("time_is_click",)}


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
    time_is_click: bool | None = None


class User(BaseModel):
    """Optional user attributes (mirrors USERS)."""

    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1)
    created_at: datetime | None = None


def check_table(table: pa.Table, name: str, *, source: str = "") -> pa.Table:
    """Check that `table` has every column of the canonical table `name` and cast it to the canonical types.

    Extra columns are dropped; LATER_COLUMNS that are absent are added as nulls. Raises SchemaError naming
    the missing column(s) and the source.
    """
    schema = TABLES[name]
    for col in LATER_COLUMNS.get(name, ()):
        if col not in table.column_names:
            table = table.append_column(schema.field(col), pa.nulls(table.num_rows, schema.field(col).type))
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
