"""Where answers come from: a local Hugging Face model in-process, or any OpenAI-compatible server.

Both give `complete(messages, params) -> Answer` and `stream(messages, params)`, an async iterator of text
deltas. Failures raise UpstreamError with the HTTP status the gateway should answer (502 or 504) and a
reason that contains no keys and no message text.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from rluf.errors import ConfigError
from rluf.serve.config import BackendConfig

log = logging.getLogger(__name__)
Chat = list[dict[str, str]]
POOL_SHARDS = 8


class UpstreamError(Exception):
    """The backend failed; `status` is 502 (bad answer or refused) or 504 (timed out)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class GenParams:
    max_tokens: int
    temperature: float
    top_p: float


@dataclass
class Answer:
    text: str
    finish_reason: str
    upstream_ms: float


class LocalBackend:
    """A local HF causal LM (rluf.policy.Policy), one generation at a time on a worker thread."""

    def __init__(self, name: str, cfg: BackendConfig):
        from rluf.policy import Policy

        check_backend(name, cfg)
        self.name = name
        self.policy = Policy.from_pretrained(Path(cfg.path), device=cfg.device)
        self._lock = threading.Lock()
        tok = self.policy.tokenizer
        self._suppress = sorted(set(tok.all_special_ids) - {tok.eos_token_id})

    def _kwargs(self, messages: Chat, params: GenParams) -> dict:
        import torch

        ids = torch.tensor([self.policy.encode_context(messages)], device=self.policy.device)  # (1, T)
        do_sample = params.temperature > 0
        tok = self.policy.tokenizer
        return dict(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=params.max_tokens,
            do_sample=do_sample, temperature=params.temperature if do_sample else None,
            top_p=params.top_p if do_sample else None, top_k=None,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, use_cache=True,
            # an answer is never empty and never holds chat-template tokens (pad, bos, role markers)
            min_new_tokens=1, suppress_tokens=self._suppress,
        )

    def _generate(self, messages: Chat, params: GenParams) -> tuple[str, str]:
        import torch

        kw = self._kwargs(messages, params)
        with self._lock, torch.no_grad():
            out = self.policy.model.generate(**kw)
        new = out[0, kw["input_ids"].shape[1]:]  # (new_tokens,)
        finish = "stop" if int(new[-1]) == self.policy.tokenizer.eos_token_id else "length"
        return self.policy.tokenizer.decode(new, skip_special_tokens=True).strip(), finish

    async def complete(self, messages: Chat, params: GenParams) -> Answer:
        t0 = time.perf_counter()
        text, finish = await asyncio.to_thread(self._generate, messages, params)
        if not text:
            raise UpstreamError(502, f"backend {self.name!r} returned an empty answer")
        return Answer(text, finish, (time.perf_counter() - t0) * 1e3)

    def _generate_streaming(self, messages: Chat, params: GenParams, streamer) -> None:
        import torch

        with self._lock, torch.no_grad():
            try:
                self.policy.model.generate(**self._kwargs(messages, params), streamer=streamer)
            except Exception:
                streamer.end()  # unblock the reader; it reports an empty or partial answer
                raise

    async def stream(self, messages: Chat, params: GenParams) -> AsyncIterator[str]:
        """Token-by-token deltas whose concatenation equals complete()'s stripped text: leading whitespace
        is dropped and trailing whitespace is held back until more text follows it."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.policy.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        worker = asyncio.get_running_loop().run_in_executor(
            None, self._generate_streaming, messages, params, streamer)
        pieces = iter(streamer)
        sent, pending = False, ""
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            text = pending + (piece if sent else piece.lstrip())
            out = text.rstrip()
            pending = text[len(out):]
            if out:
                sent = True
                yield out
        await worker
        if not sent:
            raise UpstreamError(502, f"backend {self.name!r} returned an empty answer")

    async def aclose(self) -> None:
        return None


class OpenAIBackend:
    """POST {base_url}/chat/completions on an OpenAI-compatible server, with timeouts and retries."""

    def __init__(self, name: str, cfg: BackendConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        self.cfg = cfg
        self.model = cfg.model or name
        check_backend(name, cfg)
        headers = {"Authorization": f"Bearer {os.environ[cfg.api_key_env]}"} if cfg.api_key_env else {}
        timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        # Several small connection pools used in turn: httpcore checks every pooled connection on each
        # request, so one pool of N connections costs O(N) system calls per request.
        self.clients = [httpx.AsyncClient(base_url=cfg.base_url.rstrip("/"), headers=headers, timeout=timeout,
                                          limits=limits, transport=transport) for _ in range(POOL_SHARDS)]
        self._next = itertools.cycle(self.clients)

    def _body(self, messages: Chat, params: GenParams, stream: bool) -> dict:
        return {"model": self.model, "messages": messages, "max_tokens": params.max_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "stream": stream}

    async def _send(self, body: dict, stream: bool) -> httpx.Response:
        """Send with retries on connection errors, 429 and 5xx; only before any answer byte was read."""
        delay = 0.1
        for attempt in range(self.cfg.retries + 1):
            last = attempt == self.cfg.retries
            try:
                client = next(self._next)
                req = client.build_request("POST", "/chat/completions", json=body)
                async with asyncio.timeout(self.cfg.timeout_s):  # a deadline, not only httpx's per-read timeout
                    resp = await client.send(req, stream=stream)
            except (httpx.TimeoutException, TimeoutError):
                if last:
                    raise UpstreamError(504, f"backend {self.name!r} timed out") from None
            except httpx.TransportError as e:
                if last:
                    raise UpstreamError(502, f"backend {self.name!r} unreachable ({type(e).__name__})") from None
            else:
                if resp.status_code < 400:
                    return resp
                await resp.aclose()
                retryable = resp.status_code == 429 or resp.status_code >= 500
                if last or not retryable:
                    raise UpstreamError(502, f"backend {self.name!r} answered HTTP {resp.status_code}")
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # the loop always returns or raises

    async def complete(self, messages: Chat, params: GenParams) -> Answer:
        t0 = time.perf_counter()
        resp = await self._send(self._body(messages, params, stream=False), stream=False)
        try:
            choice = resp.json()["choices"][0]
            text = choice["message"]["content"]
            finish = choice.get("finish_reason") or "stop"
        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
            raise UpstreamError(502, f"backend {self.name!r} sent a malformed chat completion") from None
        if not isinstance(text, str) or not text:
            raise UpstreamError(502, f"backend {self.name!r} returned an empty answer")
        return Answer(text, finish, (time.perf_counter() - t0) * 1e3)

    async def stream(self, messages: Chat, params: GenParams) -> AsyncIterator[str]:
        resp = await self._send(self._body(messages, params, stream=True), stream=True)
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    delta = json.loads(data)["choices"][0].get("delta", {}).get("content")
                except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
                    raise UpstreamError(502, f"backend {self.name!r} sent a malformed stream chunk") from None
                if delta:
                    yield delta
            raise UpstreamError(502, f"backend {self.name!r} ended the stream without [DONE]")
        except httpx.TimeoutException:
            raise UpstreamError(504, f"backend {self.name!r} timed out mid-stream") from None
        except httpx.TransportError as e:
            raise UpstreamError(502, f"backend {self.name!r} broke the stream ({type(e).__name__})") from None
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


def check_backend(name: str, cfg: BackendConfig) -> None:
    """What a backend needs from the machine (a model folder, an upstream key), checked before the gateway
    opens its database or loads a model."""
    if cfg.kind == "local" and not (Path(cfg.path or "") / "config.json").is_file():
        raise ConfigError(
            f"backends.{name}.path = {cfg.path!r} is not a Hugging Face model folder (no config.json); "
            "build one with `rluf simulate --out runs/default` or point it at another model folder"
        )
    if cfg.kind == "openai" and cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        raise ConfigError(
            f"backends.{name}.api_key_env = {cfg.api_key_env!r} but that environment variable is unset; "
            "export it or remove api_key_env"
        )


def build_backend(name: str, cfg: BackendConfig, transport: httpx.AsyncBaseTransport | None = None):
    if cfg.kind == "local":
        return LocalBackend(name, cfg)
    return OpenAIBackend(name, cfg, transport=transport)
