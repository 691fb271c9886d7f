import time

import pytest
from fastapi.testclient import TestClient

from rluf.errors import ConfigError
from rluf.serve.config import AuthConfig
from rluf.serve.security import Authenticator, RateLimiter, client_address, parse_key_lines

from .conftest import ALICE, ask, make_config, rows


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_token_bucket_by_hand():
    # 30/minute = 0.5 token/s, burst 2: two at once, then one every 2 s
    clock = Clock()
    rl = RateLimiter(30, 2, clock=clock)
    assert rl.allow("u") == 0.0 and rl.allow("u") == 0.0
    assert rl.allow("u") == pytest.approx(2.0)  # 0 tokens: (1 - 0) / 0.5 s
    clock.t += 1.0  # +0.5 token
    assert rl.allow("u") == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    clock.t += 1.0  # 1.0 token
    assert rl.allow("u") == 0.0
    assert rl.allow("v") == 0.0  # separate bucket


def test_bucket_memory_is_bounded():
    rl = RateLimiter(60, 20, max_keys=3)
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
    c = make_client(cfg=make_config(db_url, limits={"max_request_bytes": 1024}))

    def chunks():  # no Content-Length: the middleware must count the bytes it receives
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"z" * 200
        yield b'"}]}'

    r = c.post("/v1/chat/completions", content=chunks(), headers=ALICE)
    assert r.status_code == 413


def test_client_address_groups_ipv6_by_64():
    assert client_address("2001:db8::1") == client_address("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_address("2001:db8:0:1::1") != client_address("2001:db8::1")
    assert client_address("192.0.2.1") != client_address("192.0.2.2")
    assert client_address("::ffff:192.0.2.1") == "192.0.2.1" != client_address("::ffff:192.0.2.2")
    assert client_address(None) == "unknown" and client_address("testclient") == "testclient"


def new_session(c):
    c.cookies.clear()
    return c.get("/")


def test_fresh_session_cookies_do_not_escape_the_rate_limit(make_client, db_url):
    """The attack: a fresh anonymous session from GET / every 20 requests (the per-user burst), to get far
    more than 60 requests a minute. The limits are the defaults."""
    c = make_client(cfg=make_config(db_url, limits={"rate_per_minute": 60, "rate_burst": 20}))
    lim = c.app.state.gateway.cfg.limits
    t0, codes = time.monotonic(), []
    for i in range(300):
        if i % 20 == 0:
            new_session(c)
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": f"q{i}"}]})
        codes.append(r.json()["error"]["code"] if r.status_code != 200 else 200)
    elapsed = time.monotonic() - t0
    answered = codes.count(200)
    # one address's anonymous users share one bucket: its burst, then anonymous_rate_per_minute
    assert answered <= lim.rate_burst + lim.anonymous_rate_per_minute / 60 * elapsed + 1, (answered, elapsed)
    assert codes.count("rate_limited") > 0 and set(codes) <= {200, "rate_limited", "missing_api_key"}
    users = rows(db_url, "SELECT user_id FROM users")
    assert 1 <= len(users) <= lim.session_burst and all(u["user_id"].startswith("web-") for u in users)


def test_new_sessions_are_limited_per_address(make_client, db_url):
    c = make_client(cfg=make_config(db_url, limits={"sessions_per_hour": 60, "session_burst": 3}))
    codes = [new_session(c).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = new_session(c)
    assert r.json()["error"]["code"] == "too_many_sessions" and "rluf_session" not in r.cookies
    assert 1 <= int(r.headers["retry-after"]) <= 60  # one new session a minute
    other = TestClient(c.app, client=("203.0.113.9", 50000))  # another address has its own allowance
    assert new_session(other).status_code == 200
    assert other.get("/").status_code == 200  # a page view that keeps its session is not a new session


def test_anonymous_users_are_bounded(make_client, db_url):
    cfg = make_config(db_url, limits={"max_anonymous_users": 2})
    c = make_client(cfg=cfg)
    for _ in range(2):
        assert new_session(c).status_code == 200
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200
    r = new_session(c)
    assert r.status_code == 503 and r.json()["error"]["code"] == "too_many_anonymous_users"
    assert ask(c).status_code == 200  # key holders are not anonymous users
    restarted = make_client(cfg=cfg)  # same database: the two anonymous users in it count
    assert new_session(restarted).status_code == 503
    assert len(rows(db_url, "SELECT user_id FROM users WHERE user_id LIKE 'web-%'")) == 2
