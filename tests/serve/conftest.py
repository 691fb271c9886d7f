import itertools
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from rluf.serve import ServeConfig, create_app

from .stub import make_stub_app

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}


def make_config(db_url: str, **sections) -> ServeConfig:
    """Two arms on two OpenAI-compatible backends (both routed to the stub in tests)."""
    data = {
        "database": {"url": db_url},
        "backends": {"up_a": {"kind": "openai", "base_url": "http://stub-a/v1", "retries": 1},
                     "up_b": {"kind": "openai", "base_url": "http://stub-b/v1", "retries": 1}},
        "experiment": {"name": "exp1", "arms": [{"name": "control", "backend": "up_a", "share": 0.5},
                                                {"name": "treatment", "backend": "up_b", "share": 0.5}]},
        "auth": {"api_keys": {ALICE_KEY: "alice", BOB_KEY: "bob"}, "api_keys_env": None},
        "limits": {"rate_per_minute": 6000, "rate_burst": 1000},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ServeConfig.model_validate(data)


def rows(db_url, sql):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = [dict(r._mapping) for r in conn.execute(text(sql))]
    engine.dispose()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FixedClock:
    """Microseconds that advance by 1000 on each call: deterministic created_at values."""

    def __init__(self, start_us: int = 1_767_225_600_000_000):  # 2026-01-01T00:00:00Z
        self.t = itertools.count(start_us, 1000)

    def __call__(self) -> int:
        return next(self.t)


def counting_ids(prefix: str = "m"):
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter):04d}"


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'gw.db'}"


@pytest.fixture
def make_client(db_url):
    """Factory: a TestClient for a gateway over an in-process stub upstream; closed at teardown."""
    opened = []

    def _make(stub=None, cfg: ServeConfig | None = None, **kw):
        cfg = cfg or make_config(db_url)
        transport = httpx.ASGITransport(stub or make_stub_app())
        app = create_app(cfg, transport=transport, **kw)
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client

    yield _make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def ask(client, text="hello", headers=ALICE, **body):
    return client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": text}], **body},
                       headers=headers)


@pytest.fixture
def live_gateway(db_url):
    """The gateway over the stub upstream on a real uvicorn server (real sockets, keep-alive); its URL."""
    app = create_app(make_config(db_url), transport=httpx.ASGITransport(make_stub_app()))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
