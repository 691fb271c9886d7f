"""Who is asking, and how much they may ask: API keys, signed session cookies, rate and size limits.

The user id always comes from the bearer key or the signed cookie, never from the request body.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import secrets
import time
from collections import OrderedDict

from itsdangerous import BadSignature, URLSafeTimedSerializer

from rluf.errors import ConfigError
from rluf.serve.config import AuthConfig

log = logging.getLogger(__name__)
COOKIE = "rluf_session"
ANONYMOUS_PREFIX = "web-"  # the user ids of the chat page's anonymous sessions


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key_lines(text: str, source: str) -> dict[str, str]:
    """`user_id:key` entries separated by newlines or commas -> {key: user_id}."""
    out: dict[str, str] = {}
    for i, entry in enumerate(e.strip() for e in text.replace(",", "\n").splitlines()):
        if not entry:
            continue
        user, sep, key = entry.partition(":")
        if not sep or not user.strip() or len(key.strip()) < 16:
            raise ConfigError(
                f"{source}: entry {i + 1} is not `user_id:key` with a key of at least 16 characters; "
                "fix or remove it (the key itself is not shown)"
            )
        out[key.strip()] = user.strip()
    return out


class Authenticator:
    """Bearer keys (hashed in memory) and itsdangerous-signed session cookies holding a user id."""

    def __init__(self, cfg: AuthConfig):
        keys = dict(cfg.api_keys)
        if cfg.api_keys_env and os.environ.get(cfg.api_keys_env):
            keys.update(parse_key_lines(os.environ[cfg.api_keys_env], f"${cfg.api_keys_env}"))
        for key, user in keys.items():
            if len(key) < 16:
                raise ConfigError(f"auth.api_keys: the key of user {user!r} is shorter than 16 characters; "
                                  "use a long random key, e.g. "
                                  "`python -c 'import secrets; print(secrets.token_urlsafe())'`")
        self._users = {_digest(k): u for k, u in keys.items()}
        secret = os.environ.get(cfg.session_secret_env)
        if not secret and cfg.web_sessions:
            log.warning("%s is unset: using a random session secret, so browser sessions end when the gateway "
                        "restarts", cfg.session_secret_env)
        self._serializer = URLSafeTimedSerializer(secret or secrets.token_urlsafe(32), salt="rluf-session")
        self.max_age_s = cfg.session_max_age_days * 86400
        self.cfg = cfg

    @property
    def n_keys(self) -> int:
        return len(self._users)

    def user_from_bearer(self, header: str | None) -> str | None:
        if not header or not header.lower().startswith("bearer "):
            return None
        return self._users.get(_digest(header[7:].strip()))

    def user_from_cookie(self, cookie: str | None) -> str | None:
        if not cookie or not self.cfg.web_sessions:
            return None
        try:
            return self._serializer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None

    def new_session(self) -> tuple[str, str]:
        """A fresh anonymous web user: (user_id, signed cookie value)."""
        user_id = f"{ANONYMOUS_PREFIX}{secrets.token_hex(8)}"
        return user_id, self._serializer.dumps(user_id)


class RateLimiter:
    """A token bucket per key (a user, or a client address): `per_minute` sustained, `burst` at once.
    Bounded memory (LRU)."""

    def __init__(self, per_minute: float, burst: int, max_keys: int = 100_000, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str) -> float:
        """0.0 if allowed (and a token is spent), else the seconds to wait for the next token."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def client_address(host: str | None) -> str:
    """The key that limits one client: its IP address, or for IPv6 its /64 network (one host commonly
    holds a whole /64, so single IPv6 addresses are free to rotate)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # not an IP (a test client's name, a Unix socket)
        return host
    if ip.version == 6 and ip.ipv4_mapped:  # an IPv4 client of a dual-stack socket
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class BodyLimitMiddleware:
    """Pure ASGI: answer 413 before the app runs when a request body exceeds `max_bytes`.

    Checks Content-Length first, then counts the bytes actually received (chunked uploads).
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send, int(length))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._reject(send, size)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, send, size: int):
        import json

        body = json.dumps({"error": {
            "message": f"request body is {size} bytes or more; the limit is {self.max_bytes} bytes "
                       "(limits.max_request_bytes); send fewer or shorter messages",
            "type": "invalid_request_error", "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
