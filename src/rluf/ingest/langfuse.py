"""Langfuse exports -> canonical messages and reactions (docs/log-schema.md, "Langfuse").

Traces (UI export as JSON/JSONL/CSV, or API pages {"data": [...]}; camelCase keys are accepted):
  id, timestamp, session_id, user_id, input, output, [latency, version, release, metadata]
  -> a user message "<id>:input" (text from input) and an assistant message "<id>:output" (text from
  output). conversation_id = session_id (the trace id when there is none); within a session traces are
  ordered by timestamp and turn_index = 2k (user), 2k+1 (assistant); parent_id links the turns.
  The assistant's created_at = timestamp + latency (seconds) when latency is given, else timestamp.
  model_id = metadata.model_id, else version, else release.
Scores: trace_id, name, value, data_type, string_value, timestamp, [source, user_id]
  -> a reaction on "<trace_id>:output". type = "<name>:<string_value>" (CATEGORICAL) or "<name>:<value>"
  (BOOLEAN, NUMERIC), renamed by langfuse.score_types; user_id = the score's, else its trace's user_id.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from rluf import jsonsafe
from rluf.ingest.config import LangfuseConfig
from rluf.ingest.records import Collector, short

# A score without userId reacts as its trace's user; rluf.ingest.validate fills it in from the message
# (the trace may be in another file).
TRACE_USER = "<trace user>"

_TEXT_KEYS = (
    "content",
    "text",
    "query",
    "question",
    "prompt",
    "input",
    "output",
    "answer",
    "completion",
    "response",
    "message",
)


def _maybe_json(v: Any) -> Any:
    """CSV exports hold input/output as JSON text. Raises JSONDepthError for JSON nested too deep."""
    if isinstance(v, str) and v[:1] in ("{", "[", '"'):
        try:
            return jsonsafe.loads(v)
        except jsonsafe.JSONDepthError:
            raise
        except ValueError:
            return v
    return v


def _content(c: Any) -> str | None:
    """OpenAI-style content: a string or a list of parts with text."""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        parts = [p.get("text") if isinstance(p, dict) else p for p in c]
        texts = [p for p in parts if isinstance(p, str)]
        return "\n".join(texts) if texts else None
    return None


def extract_text(v: Any, role: str) -> str | None:
    """The chat text inside a Langfuse input/output value (any JSON).

    A string is the text. A list of chat messages gives the last message with `role` (or the last one);
    {"messages": [...]} likewise; {"choices": [{"message": ...}]} (OpenAI responses) the first choice;
    an object with content/text/query/... that field. Anything else is kept as its JSON text.
    """
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, list):
        msgs = [m for m in v if isinstance(m, dict)]
        pick = [m for m in msgs if m.get("role") == role] or msgs
        if pick:
            return extract_text(pick[-1], role)
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        if isinstance(v.get("messages"), list):
            return extract_text(v["messages"], role)
        if isinstance(v.get("choices"), list) and v["choices"] and isinstance(v["choices"][0], dict):
            return extract_text(v["choices"][0].get("message") or v["choices"][0].get("text"), role)
        for key in _TEXT_KEYS:
            if key in v:
                text = _content(v[key]) if key == "content" else extract_text(v[key], role)
                if text is not None:
                    return text
    return json.dumps(v, ensure_ascii=False)


def _time(v: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(v) if isinstance(v, str) else None
    except ValueError:
        return None


def _trace_model(t: dict) -> Any:
    try:
        meta = _maybe_json(t.get("metadata"))
    except jsonsafe.JSONDepthError:
        meta = None
    if isinstance(meta, dict) and isinstance(meta.get("model_id"), str):
        return meta["model_id"]
    return t.get("version") or t.get("release")


def _text(t: dict, key: str, role: str) -> tuple[str | None, tuple[str, str, str] | None]:
    """(message text from the trace's input or output, (reason, field, detail) if it cannot be had)."""
    try:
        return extract_text(_maybe_json(t.get(key)), role), None
    except jsonsafe.JSONDepthError as e:
        return None, ("too_deep", key, f"{key} holds JSON text: {e}")


def from_traces(good: list[tuple[int, dict, str]], src: Any, messages: Collector) -> dict:
    """Two messages per trace; sessions ordered by timestamp (then file order)."""
    sessions: dict[Any, list[tuple[datetime | None, int, dict, str]]] = {}
    for row, t, raw in good:
        key = t.get("session_id") or t.get("id")
        sessions.setdefault(key if isinstance(key, str) else f"row:{row}", []).append(
            (_time(t.get("timestamp")), row, t, raw)
        )
    for conv, traces in sessions.items():
        traces.sort(key=lambda x: (x[0] is None, x[0].timestamp() if x[0] else 0.0, x[1]))
        prev = None
        for k, (ts, row, t, raw) in enumerate(traces):
            tid = t.get("id")
            ids = (f"{tid}:input", f"{tid}:output") if isinstance(tid, str) else (tid, tid)
            latency = t.get("latency")
            out_time, problem = t.get("timestamp"), None
            if ts is not None and isinstance(latency, int | float) and not isinstance(latency, bool):
                try:
                    out_time = (ts + timedelta(seconds=float(latency))).isoformat()
                except (OverflowError, ValueError):
                    detail = f"latency {short(latency)} s is not a usable duration"
                    problem = ("wrong_type", "latency", detail)
            common = {"conversation_id": conv, "user_id": t.get("user_id")}
            text, text_problem = _text(t, "input", "user")
            messages.add(
                {
                    **common,
                    "message_id": ids[0],
                    "parent_id": prev,
                    "turn_index": 2 * k,
                    "role": "user",
                    "text": text,
                    "created_at": t.get("timestamp"),
                },
                row,
                0,
                raw,
                *(text_problem or (None, None, None)),
            )
            text, text_problem = _text(t, "output", "assistant")
            messages.add(
                {
                    **common,
                    "message_id": ids[1],
                    "parent_id": ids[0],
                    "turn_index": 2 * k + 1,
                    "role": "assistant",
                    "text": text,
                    "created_at": out_time,
                    "model_id": _trace_model(t),
                },
                row,
                1,
                raw,
                *(text_problem or problem or (None, None, None)),
            )
            prev = ids[1]
    return {"messages": messages}


def _score_type(s: dict) -> tuple[str | None, str | None]:
    """(default reaction type, problem)."""
    name, value, sval = s.get("name"), s.get("value"), s.get("string_value")
    dtype = s.get("data_type") or ("CATEGORICAL" if value is None and sval is not None else "NUMERIC")
    if not isinstance(name, str) or not name:
        return None, f"score name must be a non-empty string, got {short(name)}"
    if str(dtype).upper() == "CATEGORICAL":
        label = sval if sval is not None else value
        if not isinstance(label, str | int | float) or isinstance(label, bool):
            return None, f"categorical score needs string_value, got {short(label)}"
        return f"{name}:{label}", None
    value = _maybe_json(value) if isinstance(value, str) else value
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None, f"score value must be a number for data_type {dtype}, got {short(value)}"
    return f"{name}:{value:g}", None


def from_scores(
    good: list[tuple[int, dict, str]], src: Any, cfg: LangfuseConfig, reactions: Collector
) -> dict:
    """One reaction per score on a trace; other scores are quarantined with their reason."""
    for row, s, raw in good:
        trace_id = s.get("trace_id")
        rtype, problem = _score_type(s)
        rec = {
            "message_id": f"{trace_id}:output" if isinstance(trace_id, str) else trace_id,
            "type": cfg.score_types.get(rtype, rtype) if rtype else None,
            "user_id": s.get("user_id") or TRACE_USER,
            "created_at": s.get("timestamp"),
        }
        source = s.get("source")
        if trace_id is None and (s.get("session_id") or s.get("dataset_run_id")):
            reactions.add(
                rec,
                row,
                0,
                raw,
                "score_not_on_trace",
                "trace_id",
                "score is attached to a session or dataset run, not to a trace's answer",
            )
        elif source is not None and source not in cfg.score_sources:
            reactions.add(
                rec,
                row,
                0,
                raw,
                "score_source",
                "source",
                f"score source {source!r} is not in langfuse.score_sources {cfg.score_sources}",
            )
        elif problem is not None:
            reactions.add(rec, row, 0, raw, "wrong_type", "value", problem)
        else:
            reactions.add(rec, row, 0, raw)
    return {"reactions": reactions}
