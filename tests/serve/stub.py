"""A fake OpenAI-compatible upstream that answers at once, for the gateway's tests.

It echoes the last user message ("You said: ..."), plain or streamed word by word, so a test knows the
exact answer. `fail_status` makes every call fail with that HTTP status; `delay_s` delays each answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def stub_answer(messages: list[dict]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    content = last.get("content", "")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content)
    return f"You said: {content}"


def make_stub_app(*, fail_status: int | None = None, delay_s: float = 0.0) -> Starlette:
    calls = {"n": 0}

    async def completions(request: Request) -> Response:
        calls["n"] += 1
        body = await request.json()
        if delay_s:
            await asyncio.sleep(delay_s)
        if fail_status:
            return JSONResponse({"error": {"message": "stub failure"}}, status_code=fail_status)
        text = stub_answer(body.get("messages", []))
        head = {"id": f"stub-{calls['n']}", "created": int(time.time()), "model": body.get("model", "stub")}
        if not body.get("stream"):
            return JSONResponse({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

        async def events():
            for piece in re.findall(r"\S+\s*|\s+", text):  # words with their trailing spaces
                chunk = {**head, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    app.state.calls = calls
    return app
