import json
import logging

from .conftest import ALICE, ALICE_KEY, BOB, FixedClock, ask, counting_ids, make_config, rows
from .stub import make_stub_app


def sse_events(body: str):
    return [line[5:].strip() for line in body.split("\n") if line.startswith("data:")]


def test_answer_is_logged_with_arm_as_model_id(client, db_url):
    r = ask(client, "What is 2+2?")
    assert r.status_code == 200
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "You said: What is 2+2?"
    assert body["model"] == "rluf"  # the public name, never the arm
    msgs = rows(db_url, "SELECT * FROM messages ORDER BY turn_index")
    assert [(m["role"], m["text"], m["turn_index"]) for m in msgs] == [
        ("user", "What is 2+2?", 0), ("assistant", "You said: What is 2+2?", 1)]
    user_msg, answer = msgs
    assert answer["message_id"] == body["id"] and answer["parent_id"] == user_msg["message_id"]
    assert user_msg["model_id"] is None and answer["model_id"] in ("control", "treatment")
    assert {m["user_id"] for m in msgs} == {"alice"}
    assignment = rows(db_url, "SELECT * FROM assignments")
    assert assignment == [{"experiment": "exp1", "user_id": "alice", "arm": answer["model_id"],
                           "assigned_at": assignment[0]["assigned_at"]}]
    assert "gateway;dur=" in r.headers["server-timing"]


def test_streaming_and_plain_answers_are_logged_identically(make_client, tmp_path):
    logged = []
    for stream in (False, True):
        url = f"sqlite:///{tmp_path / f'db{stream}.db'}"
        c = make_client(cfg=make_config(url), clock_us=FixedClock(), new_id=counting_ids())
        r = ask(c, "tell me a story", stream=stream)
        assert r.status_code == 200
        if stream:
            events = sse_events(r.text)
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
            streamed = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks)
            assert streamed == "You said: tell me a story" and len(chunks) > 3
            assert {ch["id"] for ch in chunks} == {"m0002"}
        logged.append(rows(url, "SELECT * FROM messages ORDER BY turn_index"))
    assert logged[0] == logged[1]
    assert logged[0][1]["message_id"] == "m0002"


def test_sticky_arm_and_user_from_key_not_body(client, db_url):
    for i in range(3):
        assert ask(client, f"q{i}", user="mallory").status_code == 200  # body `user` is ignored
    arms = rows(db_url, "SELECT DISTINCT model_id, user_id FROM messages WHERE role='assistant'")
    assert len(arms) == 1 and arms[0]["user_id"] == "alice"


def test_conversation_continues_and_must_extend(client, db_url):
    first = ask(client, "hi").json()
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
               {"role": "user", "content": "and then?"}]
    r = client.post("/v1/chat/completions", headers=ALICE,
                    json={"messages": history, "conversation_id": first["conversation_id"]})
    assert r.status_code == 200 and r.json()["conversation_id"] == first["conversation_id"]
    msgs = rows(db_url, "SELECT turn_index, role, parent_id, message_id FROM messages ORDER BY turn_index")
    assert [m["turn_index"] for m in msgs] == [0, 1, 2, 3]
    assert all(msgs[i]["parent_id"] == msgs[i - 1]["message_id"] for i in range(1, 4))
    # an edited history does not extend the conversation
    edited = [dict(history[0], content="HI"), *history[1:]]
    r = client.post("/v1/chat/completions", headers=ALICE,
                    json={"messages": edited, "conversation_id": first["conversation_id"]})
    assert r.status_code == 409 and "do not extend" in r.json()["error"]["message"]
    # another user cannot write into alice's conversation
    r = client.post("/v1/chat/completions", headers=BOB,
                    json={"messages": history, "conversation_id": first["conversation_id"]})
    assert r.status_code == 404
    assert len(rows(db_url, "SELECT * FROM messages")) == 4


def test_missing_or_wrong_key_is_401(client, db_url):
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    r = ask(client, headers={"Authorization": "Bearer not-a-valid-key-at-all"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = ask(client, headers={"Authorization": f"Basic {ALICE_KEY}"})
    assert r.status_code == 401
    assert rows(db_url, "SELECT * FROM messages") == []


def test_oversize_input_is_413(make_client, db_url):
    c = make_client(cfg=make_config(db_url, limits={"max_message_chars": 50, "max_messages": 3,
                                                    "max_request_bytes": 2048}))
    r = ask(c, "x" * 51)
    assert r.status_code == 413 and "51 characters; the limit is 50" in r.json()["error"]["message"]
    many = [{"role": "user", "content": "a"}] * 4
    r = c.post("/v1/chat/completions", json={"messages": many}, headers=ALICE)
    assert r.status_code == 413 and "4 messages" in r.json()["error"]["message"]
    r = c.post("/v1/chat/completions", content=b'{"messages": "' + b"y" * 4000 + b'"}', headers=ALICE)
    assert r.status_code == 413 and "max_request_bytes" in r.json()["error"]["message"]
    assert ask(c, "x" * 50).status_code == 200


def test_bad_requests_are_4xx_with_reason(client):
    r = client.post("/v1/chat/completions", content=b"{not json", headers=ALICE)
    assert r.status_code == 400
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "tool", "content": "x"}]}, headers=ALICE)
    assert r.status_code == 422 and "messages.0.role" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"},
                                                               {"role": "assistant", "content": "y"}]},
                    headers=ALICE)
    assert r.status_code == 422 and "must be the user's message" in r.json()["error"]["message"]
    assert ask(client, "  ").status_code == 422


def test_rate_limit_is_429_per_user(make_client, db_url):
    c = make_client(cfg=make_config(db_url, limits={"rate_per_minute": 1, "rate_burst": 2}))
    assert [ask(c).status_code for _ in range(3)] == [200, 200, 429]
    r = ask(c)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert ask(c, headers=BOB).status_code == 200  # bob has his own bucket


def test_upstream_failure_is_502_and_timeout_504(make_client, db_url, tmp_path):
    c = make_client(stub=make_stub_app(fail_status=500))
    r = ask(c)
    assert r.status_code == 502 and "answered HTTP 500" in r.json()["error"]["message"]
    r = ask(c, stream=True)
    assert r.status_code == 502
    slow = make_config(f"sqlite:///{tmp_path / 'slow.db'}",
                       backends={"up_a": {"kind": "openai", "base_url": "http://s/v1", "timeout_s": 0.05,
                                          "retries": 0},
                                 "up_b": {"kind": "openai", "base_url": "http://s/v1", "timeout_s": 0.05,
                                          "retries": 0}})
    c2 = make_client(stub=make_stub_app(delay_s=1.0), cfg=slow)
    r = ask(c2)
    assert r.status_code == 504 and "timed out" in r.json()["error"]["message"]
    assert rows(db_url, "SELECT * FROM messages") == []  # nothing answered, nothing logged


def test_upstream_retries_then_succeeds(make_client, db_url):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    good = make_stub_app()
    calls = {"n": 0}

    async def flaky(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return JSONResponse({"error": "busy"}, status_code=503)
        return await good.router.routes[0].endpoint(request)

    c = make_client(stub=Starlette(routes=[Route("/v1/chat/completions", flaky, methods=["POST"])]))
    assert ask(c).status_code == 200 and calls["n"] == 2


def test_cors_is_off_by_default(client):
    r = client.options("/v1/chat/completions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = ask(client, headers={**ALICE, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_no_keys_or_text_in_logs(make_client, db_url, caplog):
    c = make_client()
    with caplog.at_level(logging.DEBUG):
        assert ask(c, "my secret diagnosis").status_code == 200
        ask(c, headers={"Authorization": "Bearer wrong-key-but-secret-1234"})
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "chat user=alice" in logged  # the gateway did log the turn...
    for secret in ("my secret diagnosis", ALICE_KEY, "wrong-key-but-secret-1234"):
        assert secret not in logged  # ...but no text and no keys


def test_page_session_cookie_authenticates_and_is_signed(client, db_url):
    page = client.get("/")
    assert page.status_code == 200 and "chat.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "rluf_session" in page.cookies
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "from the page"}]})
    assert r.status_code == 200
    user = rows(db_url, "SELECT DISTINCT user_id FROM messages")[0]["user_id"]
    assert user.startswith("web-")
    client.cookies.clear()
    client.cookies.set("rluf_session", '"web-forged"')  # an unsigned id is refused
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401


def test_cookie_requests_from_another_origin_are_refused(client):
    client.get("/")
    msg = {"messages": [{"role": "user", "content": "x"}]}
    r = client.post("/v1/chat/completions", json=msg, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    # the scheme is part of the origin: this server is http://testserver, not https://testserver
    r = client.post("/v1/chat/completions", json=msg, headers={"Origin": "https://testserver"})
    assert r.status_code == 403 and "not this server's 'http://testserver'" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json=msg, headers={"Origin": "http://testserver:8080"})
    assert r.status_code == 403
    r = client.post("/v1/chat/completions", json=msg, headers={"Origin": "http://testserver"})
    assert r.status_code == 200


def test_healthz_is_open_and_models_needs_a_user(client):
    assert client.get("/healthz").status_code == 200
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = client.get("/v1/models", headers={"Authorization": "Bearer not-a-valid-key-at-all"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = client.get("/v1/models", headers=ALICE)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["rluf"]
    assert "treatment" not in r.text and "control" not in r.text
    client.get("/")  # the chat page's session cookie is a user too
    assert client.get("/v1/models").status_code == 200


def test_page_is_served_only_with_its_security_headers(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert client.get("/static/index.html").status_code == 404  # no copy of the page without them
    assert client.get("/static/chat.js").status_code == 200


def test_reaction_buttons_have_text_labels_not_emoji(client):
    """Without an emoji font an emoji button is an empty box: every button shows an inline SVG icon and
    its name as text (which is also its accessible name). chat.js builds them; check what it ships."""
    js = client.get("/static/chat.js").text
    assert js.isascii() and "\\u27" not in js and "\\ud83" not in js  # no emoji, not even escaped
    assert '["love", "Love"' in js and '["like", "Like"' in js and '["dislike", "Dislike"' in js
    assert 'createElementNS(SVG, "svg")' in js and 'setAttribute("aria-hidden", "true")' in js
    assert "label.textContent = name" in js
    assert "Emoji" not in client.get("/static/chat.css").text  # no emoji font stack is needed


def test_upstream_calls_are_not_logged_at_info(client, caplog):
    with caplog.at_level(logging.INFO):
        assert ask(client).status_code == 200
        assert ask(client, stream=True).status_code == 200
    # the upstreams are http://stub-a and http://stub-b (the test client's own calls go to http://testserver)
    assert [r.getMessage() for r in caplog.records if "http://stub-" in r.getMessage()] == []


def test_unstorable_characters(make_client, db_url):
    """NUL and lone surrogates: refused in a user's message, replaced by U+FFFD in an answer."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def bad_answer(request):  # NUL, and a lone surrogate as the JSON escape \ud800
        return Response('{"choices": [{"message": {"role": "assistant", "content": "a\\u0000b\\ud800c"}, '
                        '"finish_reason": "stop"}]}', media_type="application/json")

    c = make_client(stub=Starlette(routes=[Route("/v1/chat/completions", bad_answer, methods=["POST"])]))
    r = ask(c, "bad\x00input")
    assert r.status_code == 422 and "NUL" in r.json()["error"]["message"]
    r = ask(c, "fine")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "a\ufffdb\ufffdc"
    assert rows(db_url, "SELECT text FROM messages WHERE role='assistant'") == [{"text": "a\ufffdb\ufffdc"}]


def test_upstream_answer_nested_without_end_is_502(make_client, db_url):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def deep(request):
        return Response(b"[" * 100_000 + b"]" * 100_000, media_type="application/json")

    c = make_client(stub=Starlette(routes=[Route("/v1/chat/completions", deep, methods=["POST"])]))
    r = ask(c)
    assert r.status_code == 502 and "malformed chat completion" in r.json()["error"]["message"]
    assert rows(db_url, "SELECT * FROM messages") == []


def test_cors_only_for_configured_origins(make_client, db_url):
    c = make_client(cfg=make_config(db_url, cors_origins=["https://app.example"]))
    ok = c.options("/v1/chat/completions", headers={"Origin": "https://app.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert ok.headers.get("access-control-allow-origin") == "https://app.example"
    other = c.options("/v1/chat/completions", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers
