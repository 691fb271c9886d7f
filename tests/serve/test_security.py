import pytest

from rluf.errors import ConfigError
from rluf.serve.config import AuthConfig, LimitsConfig
from rluf.serve.security import Authenticator, RateLimiter, parse_key_lines

from .conftest import ALICE


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_token_bucket_by_hand():
    # 30/minute = 0.5 token/s, burst 2: two at once, then one every 2 s
    clock = Clock()
    rl = RateLimiter(LimitsConfig(rate_per_minute=30, rate_burst=2), clock=clock)
    assert rl.allow("u") == 0.0 and rl.allow("u") == 0.0
    assert rl.allow("u") == pytest.approx(2.0)  # 0 tokens: (1 - 0) / 0.5 s
    clock.t += 1.0  # +0.5 token
    assert rl.allow("u") == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    clock.t += 1.0  # 1.0 token
    assert rl.allow("u") == 0.0
    assert rl.allow("v") == 0.0  # separate bucket


def test_bucket_memory_is_bounded():
    rl = RateLimiter(LimitsConfig(), max_users=3)
    for u in "abcd":
        rl.allow(u)
    assert list(rl._buckets) == ["b", "c", "d"]


def test_key_lines_and_their_errors(monkeypatch):
    assert parse_key_lines("alice:0123456789abcdef0, bob:fedcba9876543210x\n", "$K") == {
        "0123456789abcdef0": "alice", "fedcba9876543210x": "bob"}
    with pytest.raises(ConfigError, match=r"\$K: entry 1 is not `user_id:key`.*not shown"):
        parse_key_lines("alice:short", "$K")
    monkeypatch.setenv("RLUF_TEST_KEYS", "carol:carols-key-0123456789")
    auth = Authenticator(AuthConfig(api_keys_env="RLUF_TEST_KEYS", web_sessions=False))
    assert auth.user_from_bearer("Bearer carols-key-0123456789") == "carol"
    assert auth.user_from_bearer("Bearer carols-key-012345678") is None
    with pytest.raises(ConfigError, match="shorter than 16 characters"):
        Authenticator(AuthConfig(api_keys={"short": "dave"}, api_keys_env=None))


def test_session_cookie_round_trip_and_tamper(monkeypatch):
    monkeypatch.setenv("RLUF_SESSION_SECRET", "s" * 32)
    auth = Authenticator(AuthConfig(api_keys_env=None))
    user, cookie = auth.new_session()
    assert user.startswith("web-") and auth.user_from_cookie(cookie) == user
    assert Authenticator(AuthConfig(api_keys_env=None)).user_from_cookie(cookie) == user  # survives restart
    assert auth.user_from_cookie(cookie[:-2] + "xx") is None
    monkeypatch.setenv("RLUF_SESSION_SECRET", "t" * 32)
    assert Authenticator(AuthConfig(api_keys_env=None)).user_from_cookie(cookie) is None


def test_chunked_upload_over_the_limit_is_413(make_client, db_url):
    from .conftest import make_config

    c = make_client(cfg=make_config(db_url, limits={"max_request_bytes": 1024}))

    def chunks():  # no Content-Length: the middleware must count the bytes it receives
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"z" * 200
        yield b'"}]}'

    r = c.post("/v1/chat/completions", content=chunks(), headers=ALICE)
    assert r.status_code == 413
