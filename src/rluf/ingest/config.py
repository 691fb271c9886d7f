"""`rluf ingest` settings (docs/ingest.md). One place for every field; the YAML mirrors it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field

from rluf.config import StrictModel


class OasstConfig(StrictModel):
    """How OpenAssistant exports map onto the canonical schema."""

    missing_time: datetime = Field(
        default=datetime(2023, 4, 15, tzinfo=UTC),
        description="created_at for a root message without created_date (the oasst1 release date); a reply "
        "without one gets its parent's time + 1 s. Counted in ingest.json notes.synthetic_times.",
    )
    reaction_types: dict[str, str] = Field(
        default={"+1": "like", "-1": "dislike", "red_flag": "red_flag"},
        description="emoji name -> canonical reaction type. Names starting with '_skip' are never reactions; "
        "other names not listed keep their own name.",
    )
    include_deleted: bool = Field(
        default=False, description="Keep messages flagged deleted=true (else quarantined, reason 'deleted')."
    )


class LangfuseConfig(StrictModel):
    """How Langfuse trace and score exports map onto the canonical schema."""

    score_sources: list[str] = Field(
        default=["API", "ANNOTATION"],
        description="Score sources taken as reactions (user feedback arrives through the API; EVAL scores "
        "are "
        "LLM judges, not users). A score with another source is quarantined (reason 'score_source').",
    )
    score_types: dict[str, str] = Field(
        default={},
        description="Rename default reaction types, e.g. {'user-feedback:1': 'like', 'user-feedback:0': "
        "'dislike'}. Default type: BOOLEAN/NUMERIC '<name>:<value>', CATEGORICAL '<name>:<string_value>'.",
    )


class IngestConfig(StrictModel):
    """Every setting of `rluf ingest`."""

    max_text_bytes: int = Field(
        default=1_000_000,
        gt=0,
        description="A message longer than this many UTF-8 bytes is quarantined (reason 'text_too_long'). "
        "1 MB is far past any chat turn a reward model reads; bigger texts are pasted dumps or logging bugs.",
    )
    future_tolerance_s: float = Field(
        default=300.0,
        ge=0,
        description="A timestamp later than now + this many seconds is quarantined ('future_timestamp'); "
        "the slack absorbs clock skew between the logging hosts and this machine.",
    )
    raw_max_chars: int = Field(
        default=1000,
        gt=0,
        description="quarantine.jsonl keeps at most this many characters of the raw record.",
    )
    csv_block_mb: int = Field(
        default=64,
        gt=0,
        description="pyarrow CSV block size in MB; one CSV field must fit in a block "
        "(a 10 MB message needs > 10).",
    )
    oasst: OasstConfig = Field(default_factory=OasstConfig)
    langfuse: LangfuseConfig = Field(default_factory=LangfuseConfig)
