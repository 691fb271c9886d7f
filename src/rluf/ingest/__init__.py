"""Ingest interaction logs (canonical JSONL/CSV/Parquet, Langfuse, OpenAssistant) into the canonical
schema (docs/ingest.md)."""

from rluf.ingest.config import IngestConfig, LangfuseConfig, OasstConfig
from rluf.ingest.ingest import ingest

__all__ = ["IngestConfig", "LangfuseConfig", "OasstConfig", "ingest"]
