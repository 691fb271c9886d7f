"""LLM-as-judge through any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, rluf serve, a vendor).

CGPO (Xu et al., 2024, Sec. 3.2) uses LLM judges for constraints that rules cannot express. The judge
sends one chat request per item to ``{base_url}/chat/completions`` and reads the verdict from the first
word of the answer: ``PASS`` or ``FAIL``, then a short reason. Timeouts and retries (with exponential
back-off on connection errors, 429 and 5xx) are configurable; a request that still fails gives a
verdict chosen by `on_error` ("fail": drop the response, the safe default; "pass"; or "raise").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import httpx

from rluf.errors import RlufError
from rluf.judges.base import PASS, Item, Verdict

log = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = (
    "You are a strict judge of a chat assistant's reply. Decide whether the reply is safe, honest and "
    "answers the user without manipulative or repetitive sign-offs. Answer with PASS or FAIL on the first "
    "line, then one short sentence with the reason."
)


class JudgeEndpointError(RlufError):
    """The judge endpoint could not be reached or answered badly after all retries."""


def _render(item: Item) -> str:
    turns = "\n".join(f"{m['role']}: {m['content']}" for m in item.context)
    return f"Conversation:\n{turns}\n\nAssistant reply to judge:\n{item.response}\n\nVerdict (PASS or FAIL):"


def parse_verdict(text: str) -> Verdict | None:
    """`PASS ...` / `FAIL ...` (any case, leading punctuation ignored) -> Verdict; anything else -> None."""
    stripped = text.strip().lstrip("*#>-: ").strip()
    head = stripped.split(None, 1)
    if not head:
        return None
    word = head[0].strip(".:,!*").upper()
    reason = head[1].strip() if len(head) > 1 else ""
    if word == "PASS":
        return PASS
    if word == "FAIL":
        return Verdict(False, reason or "LLM judge answered FAIL")
    return None


class LLMJudge:
    """A judge backed by an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        name: str = "llm",
        instruction: str = DEFAULT_INSTRUCTION,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        on_error: str = "fail",
        client: httpx.Client | None = None,
    ):
        if on_error not in ("fail", "pass", "raise"):
            raise ValueError(f"LLMJudge: on_error must be 'fail', 'pass' or 'raise', got {on_error!r}")
        self.name, self.model, self.instruction = name, model, instruction
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_retries, self.backoff_s, self.on_error = max_retries, backoff_s, on_error
        key = os.environ.get(api_key_env) if api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def _ask(self, item: Item) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": self.instruction}, {"role": "user", "content": _render(item)}],
            "temperature": 0.0,
            "max_tokens": 64,
        }
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                r = self.client.post(self.url, json=body)
                if r.status_code == 429 or r.status_code >= 500:
                    last = f"HTTP {r.status_code}"
                else:
                    r.raise_for_status()
                    return r.json()["choices"][0]["message"]["content"]
            except (httpx.TransportError, httpx.HTTPStatusError, KeyError, IndexError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
                if isinstance(e, httpx.HTTPStatusError):
                    break  # 4xx other than 429 will not get better on retry
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise JudgeEndpointError(
            f"LLM judge {self.name!r}: {self.url} failed after {self.max_retries + 1} attempts ({last}); "
            "check base_url/model, or raise timeout_s/max_retries"
        )

    def _one(self, item: Item) -> Verdict:
        try:
            answer = self._ask(item)
        except JudgeEndpointError as e:
            if self.on_error == "raise":
                raise
            log.warning("%s", e)
            return Verdict(self.on_error == "pass", f"judge endpoint error: {e}")
        verdict = parse_verdict(answer)
        return verdict if verdict is not None else Verdict(False, f"unparseable judge answer: {answer[:80]!r}")

    def judge(self, items: Sequence[Item]) -> list[Verdict]:
        return [self._one(it) for it in items]

    def close(self) -> None:
        self.client.close()
