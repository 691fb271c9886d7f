"""The gateway: an OpenAI-compatible chat API with sticky A/B arms, logging every turn before it answers.

Routes
  GET  /                      the chat page (sets an anonymous signed session cookie)
  POST /v1/chat/completions   OpenAI chat completions, plain or streamed (SSE); extra body field
                              `conversation_id` continues a conversation the caller owns
  POST /v1/reactions          {message_id, type}: react to an assistant answer (a repeat is a no-op)
  DELETE /v1/reactions        {message_id, type}: undo
  GET  /v1/models (needs a user, like every /v1 call), /healthz

Answered means logged: a non-streamed answer is returned only after its rows are committed; a streamed
answer's closing chunk (finish_reason, then `data: [DONE]`) is sent only after the commit, and a failed
commit ends the stream with an error event instead.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from rluf.serve.arms import ArmAssigner
from rluf.serve.backends import GenParams, UpstreamError, build_backend, check_backend
from rluf.serve.config import ServeConfig
from rluf.serve.security import (
    ANONYMOUS_PREFIX,
    COOKIE,
    Authenticator,
    BodyLimitMiddleware,
    RateLimiter,
    client_address,
)
from rluf.serve.store import ConversationConflict, GroupCommitter, Store, Turn, path_hash

log = logging.getLogger(__name__)
# A chat request nests 5 levels (body, messages, message, content parts, part); OpenAI fields the gateway
# ignores (tools with JSON schemas) may nest deeper, so the bound is generous, but far below Python's stack.
MAX_JSON_DEPTH = 64


class GatewayError(Exception):
    """An HTTP error answered as an OpenAI-style `{"error": {...}}` body."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    # Other OpenAI fields are ignored. `model` and `user` are ignored on purpose: the arm decides the model,
    # and the user id comes from the key or the session.
    model_config = ConfigDict(extra="ignore")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    conversation_id: str | None = Field(None, min_length=1, max_length=64)


class ReactionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=64)


def _now_us() -> int:
    return time.time_ns() // 1000


def _new_id() -> str:
    return os.urandom(16).hex()  # 128 random bits, like uuid4, without building a UUID object


class Gateway:
    """The request handlers' shared state and logic; FastAPI routes below are thin over it."""

    def __init__(self, cfg: ServeConfig, auth: Authenticator, store: Store, backends: dict,
                 clock_us: Callable[[], int], new_id: Callable[[], str]):
        self.cfg = cfg
        self.store = store
        self.backends = backends  # backend name -> backend object
        self.arm_backend = {a.name: a.backend for a in cfg.experiment.arms}
        self.assign = ArmAssigner(cfg.experiment.name, [(a.name, a.share) for a in cfg.experiment.arms])
        self.auth = auth
        lim = cfg.limits
        self.chat_limiter = RateLimiter(lim.rate_per_minute, lim.rate_burst)
        self.reaction_limiter = RateLimiter(lim.rate_per_minute, lim.rate_burst)
        # keyed by "chat <address>" and "reaction <address>": all anonymous users of one client together
        self.anonymous_limiter = RateLimiter(lim.anonymous_rate_per_minute, lim.rate_burst)
        self.session_limiter = RateLimiter(lim.sessions_per_hour / 60.0, lim.session_burst)
        # those in the database plus the sessions handed out since: an upper bound on anonymous user rows
        self.anonymous_users = store.count_users(ANONYMOUS_PREFIX) if cfg.auth.web_sessions else 0
        self.clock_us = clock_us
        self.new_id = new_id
        self.writer = GroupCommitter(store)

    async def read(self, fn, *args):
        """SQLite reads are sub-millisecond and never wait for the writer (WAL): run them inline; a
        PostgreSQL read is a network round trip: run it on a worker thread."""
        if self.store.dialect == "sqlite":
            return fn(*args)
        return await run_in_threadpool(fn, *args)

    # -- who ------------------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> tuple[str, bool]:
        """(user id, True if it came from the chat page's anonymous session cookie)."""
        header = request.headers.get("authorization")
        if header is not None:
            user = self.auth.user_from_bearer(header)
            if user is None:
                raise GatewayError(401, "invalid API key; send `Authorization: Bearer <key>` with a key "
                                        "configured in auth.api_keys or $RLUF_API_KEYS", "invalid_api_key",
                                   {"WWW-Authenticate": "Bearer"})
            return user, False
        user = self.auth.user_from_cookie(request.cookies.get(COOKIE))
        if user is None:
            raise GatewayError(401, "missing API key; send `Authorization: Bearer <key>` (or open the chat "
                                    "page at / for a browser session)", "missing_api_key",
                               {"WWW-Authenticate": "Bearer"})
        origin = request.headers.get("origin")
        own_origin = f"{request.url.scheme}://{request.headers.get('host')}"  # scheme and host (with port)
        if origin is not None and origin.lower() != own_origin.lower():
            raise GatewayError(403, f"cross-origin request with a session cookie refused (Origin {origin!r} "
                                    f"is not this server's {own_origin!r})", "cross_origin")
        return user, True

    def rate_limit(self, kind: str, request: Request, user: str, anonymous: bool) -> None:
        """The user's own token bucket; an anonymous user also shares one with every anonymous user of the
        same client address, since a new session cookie is only a GET / away."""
        lim = self.cfg.limits
        limiter = self.chat_limiter if kind == "chat" else self.reaction_limiter
        wait = limiter.allow(user)
        what = f"rate limit of {lim.rate_per_minute:g} requests/minute (burst {lim.rate_burst})"
        if wait == 0 and anonymous:
            address = client_address(request.client and request.client.host)
            wait = self.anonymous_limiter.allow(f"{kind} {address}")
            what = (f"rate limit of {lim.anonymous_rate_per_minute:g} requests/minute for the chat page's "
                    "users at one address (limits.anonymous_rate_per_minute)")
        if wait > 0:
            raise GatewayError(429, f"{what} reached; retry in {wait:.1f} s", "rate_limited",
                               {"Retry-After": str(max(1, round(wait)))})

    # -- chat -----------------------------------------------------------------------------------------
    def parse_chat(self, raw: bytes) -> ChatRequest:
        lim = self.cfg.limits
        data = parse_json_body(raw)
        msgs = data.get("messages") if isinstance(data, dict) else None
        if isinstance(msgs, list) and len(msgs) > lim.max_messages:
            raise GatewayError(413, f"{len(msgs)} messages in one request; the limit is {lim.max_messages} "
                                    "(limits.max_messages); start a new conversation or drop old turns",
                               "too_many_messages")
        try:
            req = ChatRequest.model_validate(data)
        except ValidationError as e:
            raise GatewayError(422, _validation_message(e), "invalid_request") from None
        for i, m in enumerate(req.messages):
            n = len(m.text())
            if n > lim.max_message_chars:
                raise GatewayError(413, f"messages[{i}] has {n} characters; the limit is {lim.max_message_chars} "
                                        "(limits.max_message_chars); send a shorter message", "message_too_long")
            if not m.text().strip():
                raise GatewayError(422, f"messages[{i}] is empty; every message needs text", "empty_message")
            if "\x00" in m.text():  # PostgreSQL text cannot hold NUL; no real message needs one
                raise GatewayError(422, f"messages[{i}] contains a NUL character; remove it", "nul_in_message")
        if req.messages[-1].role != "user":
            raise GatewayError(422, f"the last message has role {req.messages[-1].role!r}; it must be the "
                                    "user's message to answer", "last_not_user")
        return req

    async def prepare_turn(self, req: ChatRequest, user: str) -> Turn:
        """Check the conversation (owned by `user`, extended by the request) and build its new rows."""
        turns = [(m.role, m.text()) for m in req.messages]
        now = self.clock_us()
        if req.conversation_id is None:
            conv_id, prev_n, prev_hash, parent, new = self.new_id(), 0, "", None, True
        else:
            conv = await self.read(self.store.get_conversation, req.conversation_id)
            if conv is None or conv["user_id"] != user:
                raise GatewayError(404, f"conversation {req.conversation_id!r} not found for this user; omit "
                                        "conversation_id to start a new one", "conversation_not_found")
            prev_n, prev_hash = conv["n_messages"], conv["path_hash"]
            if len(turns) <= prev_n or path_hash(turns[:prev_n]) != prev_hash:
                raise GatewayError(409, f"messages do not extend conversation {req.conversation_id!r} (its first "
                                        f"{prev_n} messages must be repeated unchanged, then new ones); omit "
                                        "conversation_id to start a new one", "conversation_mismatch")
            conv_id, parent, new = req.conversation_id, conv["last_message_id"], False
        rows = []
        for i, (role, text) in enumerate(turns[prev_n:]):
            mid = self.new_id()
            rows.append(dict(message_id=mid, conversation_id=conv_id, parent_id=parent, turn_index=prev_n + i,
                             role=role, text=text, created_at=now, user_id=user, model_id=None))
            parent = mid
        return Turn(conversation_id=conv_id, user_id=user, experiment=self.cfg.experiment.name,
                    arm=self.assign(user), new=new, prev_n=prev_n, prev_hash=prev_hash, rows=rows, now_us=now)

    def add_answer(self, turn: Turn, text: str, mid: str | None = None) -> str:
        last = turn.rows[-1]
        mid = mid or self.new_id()
        turn.now_us = self.clock_us()
        turn.rows.append(dict(message_id=mid, conversation_id=turn.conversation_id, parent_id=last["message_id"],
                              turn_index=last["turn_index"] + 1, role="assistant", text=text,
                              created_at=turn.now_us, user_id=turn.user_id, model_id=turn.arm))
        return mid

    async def commit(self, turn: Turn) -> None:
        try:
            await self.writer.submit(lambda conn: self.store.apply_turn(conn, turn))
        except ConversationConflict:
            raise GatewayError(409, f"conversation {turn.conversation_id!r} was extended by another request; "
                                    "resend with its current messages", "conversation_conflict") from None
        except SQLAlchemyError as e:  # answered means logged: without the rows there is no answer
            raise GatewayError(503, f"the answer could not be logged ({type(e).__name__}), so it is not "
                                    "returned; retry later", "log_failed", {"Retry-After": "1"}) from None

    def params(self, req: ChatRequest, backend_name: str) -> GenParams:
        b = self.cfg.backends[backend_name]
        asked = req.max_completion_tokens or req.max_tokens or b.max_new_tokens
        return GenParams(max_tokens=min(asked, b.max_new_tokens),
                         temperature=b.temperature if req.temperature is None else req.temperature,
                         top_p=b.top_p if req.top_p is None else req.top_p)

    async def chat(self, request: Request) -> Response:
        t0 = time.perf_counter()
        user, anonymous = self.authenticate(request)
        self.rate_limit("chat", request, user, anonymous)
        req = self.parse_chat(await request.body())
        turn = await self.prepare_turn(req, user)
        backend_name = self.arm_backend[turn.arm]
        backend, params = self.backends[backend_name], self.params(req, backend_name)
        context = [{"role": m.role, "content": m.text()} for m in req.messages]
        if req.stream:
            return await self._stream(turn, backend, context, params)
        try:
            answer = await backend.complete(context, params)
        except UpstreamError as e:
            raise GatewayError(e.status, e.reason, "upstream_error") from None
        answer.text = storable(answer.text)
        mid = self.add_answer(turn, answer.text)
        await self.commit(turn)
        gateway_ms = (time.perf_counter() - t0) * 1e3 - answer.upstream_ms
        self._log_turn(turn, 200, gateway_ms)
        body = {"id": mid, "object": "chat.completion", "created": turn.now_us // 1_000_000,
                "model": self.cfg.server.public_model_name, "conversation_id": turn.conversation_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": answer.finish_reason}]}
        headers = {"Server-Timing": f"gateway;dur={gateway_ms:.3f}, upstream;dur={answer.upstream_ms:.3f}"}
        return JSONResponse(body, headers=headers)

    async def _stream(self, turn: Turn, backend, context, params: GenParams) -> Response:
        deltas = backend.stream(context, params).__aiter__()
        try:  # wait for the first delta so that an upstream failure is still a clean 502/504
            first = await deltas.__anext__()
        except StopAsyncIteration:
            raise GatewayError(502, "backend returned an empty answer", "upstream_error") from None
        except UpstreamError as e:
            raise GatewayError(e.status, e.reason, "upstream_error") from None
        mid = self.new_id()
        head = {"id": mid, "object": "chat.completion.chunk", "created": turn.now_us // 1_000_000,
                "model": self.cfg.server.public_model_name}

        def event(delta: dict, finish: str | None = None, **extra) -> str:
            chunk = {**head, **extra, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(chunk)}\n\n"

        async def events():
            parts = [storable(first)]
            yield event({"role": "assistant"}, conversation_id=turn.conversation_id)
            yield event({"content": parts[0]})
            try:
                async for d in deltas:
                    d = storable(d)
                    parts.append(d)
                    yield event({"content": d})
                self.add_answer(turn, "".join(parts), mid)  # the id the client already holds
                await self.commit(turn)
            except (UpstreamError, GatewayError) as e:
                self._log_turn(turn, getattr(e, "status", 502), 0.0)
                yield f"data: {json.dumps({'error': {'message': str(e), 'code': 'stream_failed'}})}\n\n"
                return
            finally:  # also when the client went away: release the upstream connection now
                await deltas.aclose()
            self._log_turn(turn, 200, 0.0)
            yield event({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _log_turn(self, turn: Turn, status: int, gateway_ms: float) -> None:
        log.debug("chat user=%s arm=%s conversation=%s new_rows=%d status=%d gateway_ms=%.2f",
                  turn.user_id, turn.arm, turn.conversation_id, len(turn.rows), status, gateway_ms)
        if self.cfg.log_text:
            for r in turn.rows:
                log.debug("text %s %s: %r", r["message_id"], r["role"], r["text"])

    # -- reactions ------------------------------------------------------------------------------------
    async def react(self, request: Request, undo: bool) -> Response:
        user, anonymous = self.authenticate(request)
        self.rate_limit("reaction", request, user, anonymous)
        data = parse_json_body(await request.body())
        try:
            req = ReactionRequest.model_validate(data)
        except ValidationError as e:
            raise GatewayError(422, _validation_message(e), "invalid_request") from None
        types = self.cfg.reactions.types
        if req.type not in types:
            raise GatewayError(422, f"reaction type {req.type!r} is not one of {types} (reactions.types)",
                               "unknown_reaction_type")
        msg = await self.read(self.store.get_message, req.message_id)
        if msg is None or msg["user_id"] != user:  # someone else's message is reported as absent
            raise GatewayError(404, f"message {req.message_id!r} not found in your conversations",
                               "message_not_found")
        if msg["role"] != "assistant":
            raise GatewayError(422, f"message {req.message_id!r} is a {msg['role']} message; reactions go on "
                                    "assistant answers", "not_an_answer")
        now = self.clock_us()
        if undo:
            op = lambda conn: self.store.apply_unreaction(conn, req.message_id, user, req.type)  # noqa: E731
        else:
            op = lambda conn: self.store.apply_reaction(conn, req.message_id, user, req.type, now)  # noqa: E731
        try:
            done = await self.writer.submit(op)
        except SQLAlchemyError as e:
            raise GatewayError(503, f"the reaction could not be logged ({type(e).__name__}); retry later",
                               "log_failed", {"Retry-After": "1"}) from None
        if undo:
            return JSONResponse({"message_id": req.message_id, "type": req.type, "deleted": done})
        created = done
        return JSONResponse({"message_id": req.message_id, "type": req.type, "created": created},
                            status_code=201 if created else 200)

    # -- page -----------------------------------------------------------------------------------------
    def page(self, request: Request, html: str) -> Response:
        resp = HTMLResponse(html, headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                                       "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                       "base-uri 'none'; form-action 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})
        if self.cfg.auth.web_sessions and self.auth.user_from_cookie(request.cookies.get(COOKIE)) is None:
            self.limit_new_sessions(request)
            _, cookie = self.auth.new_session()
            self.anonymous_users += 1
            resp.set_cookie(COOKIE, cookie, max_age=int(self.auth.max_age_s), httponly=True, samesite="strict",
                            secure=self.cfg.auth.cookie_secure, path="/")
        return resp

    def limit_new_sessions(self, request: Request) -> None:
        lim = self.cfg.limits
        if self.anonymous_users >= lim.max_anonymous_users:
            raise GatewayError(503, f"the chat page takes no new users: {self.anonymous_users} anonymous "
                                    f"users reached limits.max_anonymous_users ({lim.max_anonymous_users})",
                               "too_many_anonymous_users")
        wait = self.session_limiter.allow(client_address(request.client and request.client.host))
        if wait > 0:
            raise GatewayError(429, f"too many new chat sessions from this address ({lim.sessions_per_hour:g}"
                                    f"/hour, burst {lim.session_burst}: limits.sessions_per_hour); keep the "
                                    f"session cookie, or retry in {wait:.0f} s", "too_many_sessions",
                               {"Retry-After": str(max(1, round(wait)))})


def parse_json_body(raw: bytes):
    """The request body as JSON, checked without recursion: 400 if it is not JSON or nests deeper than
    MAX_JSON_DEPTH; 422 `bad_text` if any string in it holds a lone surrogate (not Unicode text: the
    project refuses such text everywhere it enters, docs/serve.md)."""
    too_deep = GatewayError(400, f"request body nests JSON deeper than {MAX_JSON_DEPTH} levels; a chat "
                                 "request needs 5", "too_deep")
    try:
        data = json.loads(raw)
    except RecursionError:  # deeper than the interpreter's stack
        raise too_deep from None
    except ValueError:  # also bytes that are not UTF-8
        raise GatewayError(400, "request body is not valid JSON", "invalid_json") from None
    stack = [(data, 1, None, None)]  # (value, depth, parent entry, key in parent)
    while stack:
        entry = stack.pop()
        value, depth = entry[0], entry[1]
        if depth > MAX_JSON_DEPTH:
            raise too_deep
        if isinstance(value, str):
            if not _is_text(value):
                raise GatewayError(422, f"{_json_path(entry)} holds a lone surrogate (an unpaired UTF-16 "
                                        "half, not Unicode text); send valid UTF-8 text", "bad_text")
        elif isinstance(value, dict | list):
            for key, child in value.items() if isinstance(value, dict) else enumerate(value):
                if isinstance(key, str) and not _is_text(key):
                    raise GatewayError(422, f"a key in {_json_path(entry)} holds a lone surrogate; send "
                                            "valid UTF-8 text", "bad_text")
                stack.append((child, depth + 1, entry, key))
    return data


def _is_text(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_path(entry) -> str:
    """messages[0].content, from a parse_json_body stack entry."""
    parts = []
    while entry is not None and entry[2] is not None:
        key = entry[3]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        entry = entry[2]
    return "".join(reversed(parts)).lstrip(".") or "the body"


def storable(text: str) -> str:
    """A model may emit NUL (byte-level tokens), and an upstream may send a lone surrogate: PostgreSQL
    text cannot store NUL and neither database nor UTF-8 can hold a lone surrogate, so each becomes U+FFFD
    in both the answer and the log (a user's text with them is refused instead: it is the user's to fix)."""
    if text.isascii():
        return text.replace("\x00", "\ufffd")
    return _UNSTORABLE.sub("\ufffd", text)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # in a str every surrogate code point is a lone one


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid request: " + "; ".join(parts)


def create_app(cfg: ServeConfig, *, store: Store | None = None, backends: dict | None = None,
               transport=None, clock_us: Callable[[], int] = _now_us,
               new_id: Callable[[], str] = _new_id) -> FastAPI:
    """Build the gateway. `store`/`backends` are made from `cfg` unless given; `transport` is an httpx
    transport for the OpenAI backends (tests route them to an in-process stub)."""
    used = sorted({a.backend for a in cfg.experiment.arms})
    for name in used if backends is None else ():  # a config error leaves no database file behind
        check_backend(name, cfg.backends[name])
    auth = Authenticator(cfg.auth)
    own_store = store is None
    store = store or Store(cfg.database.url, sqlite_synchronous=cfg.database.sqlite_synchronous,
                           pool_size=cfg.database.pool_size)
    backends = backends or {n: build_backend(n, cfg.backends[n], transport=transport) for n in used}
    # httpx logs every upstream call at INFO: one line per request, whatever server.access_log says
    logging.getLogger("httpx").setLevel(logging.WARNING)
    gw = Gateway(cfg, auth, store, backends, clock_us, new_id)
    # The page is not under /static: it is served only by `GET /`, with its security headers
    html = resources.files("rluf.serve").joinpath("index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_app):
        yield
        gw.writer.close()
        for b in backends.values():
            await b.aclose()
        if own_store:
            store.close()

    app = FastAPI(title="rluf gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw

    @app.exception_handler(GatewayError)
    async def _gateway_error(_request: Request, e: GatewayError):
        return JSONResponse({"error": {"message": e.message, "type": "invalid_request_error"
                                       if e.status < 500 else "upstream_error", "code": e.code}},
                            status_code=e.status, headers=e.headers)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await gw.chat(request)

    @app.post("/v1/reactions")
    async def react(request: Request):
        return await gw.react(request, undo=False)

    @app.delete("/v1/reactions")
    async def unreact(request: Request):
        return await gw.react(request, undo=True)

    @app.get("/")
    async def index(request: Request):
        return gw.page(request, html)

    @app.get("/v1/models")
    async def models(request: Request):
        gw.authenticate(request)
        return {"object": "list", "data": [{"id": cfg.server.public_model_name, "object": "model"}]}

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    app.mount("/static", StaticFiles(packages=[("rluf.serve", "static")]), name="static")
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.limits.max_request_bytes)
    return app


def serve(cfg: ServeConfig) -> None:
    """Run the gateway with uvicorn until interrupted (`rluf serve`)."""
    import uvicorn

    from rluf.serve.store import safe_url

    app = create_app(cfg)
    log.info("rluf gateway on http://%s:%d  database %s  experiment %r arms %s", cfg.server.host, cfg.server.port,
             safe_url(app.state.gateway.store.url), cfg.experiment.name,
             {a.name: a.share for a in cfg.experiment.arms})
    # Startup objects (modules, a local model's weights) go to the permanent generation, so the collector's
    # full passes during serving do not walk them: fewer long pauses in the tail of the added latency.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=cfg.server.host, port=cfg.server.port, access_log=cfg.server.access_log,
                log_level="info", server_header=False)
