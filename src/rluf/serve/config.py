"""The gateway's config (`rluf serve --config serve.yaml`), one section per concern; docs/serve.md lists every field."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rluf.config import StrictModel

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"  # loopback by default; put a TLS-terminating proxy in front before opening it up
    port: int = Field(8000, ge=0, le=65535)
    public_model_name: str = "rluf"  # the `model` field of every answer: the arm is never revealed to users
    access_log: bool = True  # uvicorn's access log (method, path, status; never bodies or keys)


class DatabaseConfig(StrictModel):
    url: str = "sqlite:///runs/serve/rluf.db"  # or postgresql+psycopg://user@host:5432/db
    # SQLite only. NORMAL (with WAL) survives a process crash (SIGKILL) but may lose the last commits on a
    # power cut; FULL fsyncs every commit and survives both, at a cost in latency.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    pool_size: int = Field(8, ge=1)  # PostgreSQL connection pool size


class BackendConfig(StrictModel):
    kind: Literal["local", "openai"]
    # local: a Hugging Face causal LM folder (e.g. `rluf simulate`'s SIMDIR/policy), generated in-process
    path: str | None = None
    device: str = "auto"
    # openai: any OpenAI-compatible server (vLLM, TGI, llama.cpp server, a hosted API)
    base_url: str | None = None  # e.g. http://127.0.0.1:8001/v1 (the gateway appends /chat/completions)
    model: str | None = None  # the upstream's model name; defaults to the backend's name
    api_key_env: str | None = None  # name of an environment variable holding the upstream's key
    connect_timeout_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(60.0, gt=0)  # per attempt: deadline for a whole answer, or for a stream to start
    # and between its chunks
    retries: int = Field(2, ge=0, le=10)  # on connect errors, 429 and 5xx, before any answer byte arrived
    # generation defaults (a request's own max_tokens / temperature / top_p may lower or replace them)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)

    @model_validator(mode="after")
    def _needs_target(self) -> BackendConfig:
        if self.kind == "local" and not self.path:
            raise ValueError("a local backend needs `path` (a Hugging Face model folder, e.g. runs/default/policy)")
        if self.kind == "openai" and not self.base_url:
            raise ValueError("an openai backend needs `base_url` (e.g. http://127.0.0.1:8001/v1)")
        return self


class ArmConfig(StrictModel):
    name: str  # recorded as model_id on every assistant message of this arm
    backend: str  # a key of `backends`
    share: float = Field(gt=0, le=1)  # share of users; the shares of all arms sum to 1

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"arm name {v!r} must be 1-64 letters, digits, '_', '.', '-'")
        return v


class ExperimentConfig(StrictModel):
    name: str = "default"  # part of the assignment hash: a new name re-draws every user's arm
    arms: list[ArmConfig] = Field(default_factory=lambda: [ArmConfig(name="baseline", backend="baseline", share=1.0)])

    @model_validator(mode="after")
    def _arms_ok(self) -> ExperimentConfig:
        if not self.arms:
            raise ValueError("experiment.arms is empty; give at least one arm {name, backend, share}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment.arms has duplicate names {names}; each arm needs its own name")
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > 1e-6:
            shares = {a.name: a.share for a in self.arms}
            raise ValueError(f"experiment.arms shares {shares} sum to {total:g}; they must sum to 1")
        return self


class ReactionsConfig(StrictModel):
    types: list[str] = Field(default_factory=lambda: ["love", "like", "dislike"])

    @field_validator("types")
    @classmethod
    def _types_ok(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v) or not all(_NAME.match(t) for t in v):
            raise ValueError(f"reactions.types {v} must be a non-empty list of distinct simple names")
        return v


class AuthConfig(StrictModel):
    # Bearer keys: {key: user_id}. Prefer `api_keys_env` (lines or commas of `user_id:key`) to keys in a file.
    api_keys: dict[str, str] = Field(default_factory=dict)
    api_keys_env: str | None = "RLUF_API_KEYS"
    web_sessions: bool = True  # the chat page gives each browser an anonymous user id in a signed cookie
    session_secret_env: str = "RLUF_SESSION_SECRET"  # unset: a random secret, sessions end at restart
    session_max_age_days: float = Field(30.0, gt=0)
    cookie_secure: bool = False  # set true behind HTTPS


class LimitsConfig(StrictModel):
    max_request_bytes: int = Field(256 * 1024, ge=1024)  # 413 above
    max_message_chars: int = Field(8000, ge=1)  # 413 above, per message
    max_messages: int = Field(64, ge=1)  # 413 above, per request
    rate_per_minute: float = Field(60.0, gt=0)  # per user, token bucket; 429 with Retry-After above
    rate_burst: int = Field(20, ge=1)
    # The chat page's anonymous users, per client address (IPv6: per /64): a fresh session cookie is a fresh
    # user, so without these one client could mint users to escape the per-user rate limit.
    anonymous_rate_per_minute: float = Field(120.0, gt=0)  # all anonymous requests of one address together
    sessions_per_hour: float = Field(30.0, gt=0)  # new sessions (cookies from GET /) per address; 429 above
    session_burst: int = Field(10, ge=1)
    max_anonymous_users: int = Field(100_000, ge=1)  # no new sessions (503) once this many exist


class ServeConfig(StrictModel):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    backends: dict[str, BackendConfig] = Field(
        default_factory=lambda: {"baseline": BackendConfig(kind="local", path="runs/default/policy")}
    )
    experiment: ExperimentConfig = ExperimentConfig()
    reactions: ReactionsConfig = ReactionsConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    cors_origins: list[str] = Field(default_factory=list)  # empty: CORS off (no cross-origin browser access)
    log_text: bool = False  # log message text at DEBUG level; off so that no user text reaches server logs

    @model_validator(mode="after")
    def _arms_use_known_backends(self) -> ServeConfig:
        for i, arm in enumerate(self.experiment.arms):
            if arm.backend not in self.backends:
                raise ValueError(
                    f"experiment.arms[{i}].backend = {arm.backend!r} is not a key of backends "
                    f"{sorted(self.backends)}; add it under backends or fix the name"
                )
        return self
