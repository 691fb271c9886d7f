"""Hostile request bodies get a 4xx that says what is wrong, never a 500: JSON nested without end, text that
is not Unicode (lone surrogates), bodies that are not JSON."""

import http.client
import json
from urllib.parse import urlparse

import pytest

from .conftest import ALICE, ALICE_KEY, ask, rows

DEEP = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # 200 kB, under max_request_bytes


def post_raw(client, path, body: bytes, method="POST"):
    return client.request(method, path, content=body, headers={**ALICE, "Content-Type": "application/json"})


@pytest.mark.parametrize("path,method", [("/v1/chat/completions", "POST"), ("/v1/reactions", "POST"),
                                         ("/v1/reactions", "DELETE")])
def test_deeply_nested_body_is_400(client, db_url, path, method):
    r = post_raw(client, path, DEEP, method)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_deep"
    assert "deeper than 64 levels" in r.json()["error"]["message"]
    # 65 levels (the body, then 64 lists) is refused by the gateway's own bound, far from Python's stack limit
    r = post_raw(client, path, b'{"messages": [{"role": "user", "content": "x"}], "extra": '
                 + b"[" * 64 + b"]" * 64 + b"}", method)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_deep"
    assert rows(db_url, "SELECT * FROM messages") == []


def test_nesting_up_to_the_bound_is_accepted(client):
    # an ignored OpenAI field (say, a tool's JSON schema) may nest; 64 levels in all is fine
    extra = b"[" * 63 + b"]" * 63
    r = post_raw(client, "/v1/chat/completions",
                 b'{"messages": [{"role": "user", "content": "x"}], "tools": ' + extra + b"}")
    assert r.status_code == 200, r.text


def test_deep_body_keeps_the_connection(live_gateway):
    """On a real server: the 400 comes back on a connection that stays open for the next request."""
    url = urlparse(live_gateway)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", body=DEEP, headers=headers)
        r = conn.getresponse()
        assert r.status == 400 and json.loads(r.read())["error"]["code"] == "too_deep"
        assert r.getheader("connection") != "close"
        sock = conn.sock
        assert sock is not None  # http.client drops the socket when the server closes the connection
        conn.request("POST", "/v1/chat/completions", headers=headers,
                     body=json.dumps({"messages": [{"role": "user", "content": "still there?"}]}))
        r = conn.getresponse()
        answer = json.loads(r.read())["choices"][0]["message"]["content"]
        assert r.status == 200 and answer == "You said: still there?"
        assert conn.sock is sock  # the same connection answered
    finally:
        conn.close()


LONE = "\ud800"  # an unpaired UTF-16 half; json.dumps writes it as the escape \ud800, as a client would
HI = {"role": "user", "content": "hi"}


@pytest.mark.parametrize("body,where", [
    ({"messages": [{"role": "user", "content": f"hi {LONE}"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": LONE}]}]},
     "messages[0].content[0].text"),
    ({"messages": [HI], "conversation_id": f"c{LONE}"}, "conversation_id"),
    ({"messages": [HI], "model": "m\udc80"}, "model"),  # even an ignored field
])
def test_lone_surrogate_is_422_bad_text(make_client, db_url, body, where):
    from .stub import make_stub_app

    stub = make_stub_app()
    c = make_client(stub=stub)
    for stream in (False, True):
        r = post_raw(c, "/v1/chat/completions", json.dumps({**body, "stream": stream}).encode())
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "bad_text" and err["message"].startswith(f"{where} holds a lone surrogate")
    assert stub.state.calls["n"] == 0  # refused before the upstream is called
    assert rows(db_url, "SELECT * FROM messages") == []


def test_lone_surrogate_in_raw_utf8_bytes_is_422(client):
    # json.loads decodes bytes with 'surrogatepass', so an encoded surrogate (ED A0 80) arrives the same way
    body = b'{"messages": [{"role": "user", "content": "hi \xed\xa0\x80"}]}'
    r = post_raw(client, "/v1/chat/completions", body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_text"


def test_reaction_with_lone_surrogate_is_422(client, db_url):
    answer = ask(client).json()["id"]
    for body in ({"message_id": answer + LONE, "type": "love"}, {"message_id": answer, "type": "love" + LONE},
                 {"message_id": answer, "type": "love", LONE: 1}):
        r = post_raw(client, "/v1/reactions", json.dumps(body).encode())
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_text", r.text
    assert rows(db_url, "SELECT * FROM reactions") == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"message_id": "m", "type": "love"'])
def test_reaction_body_that_is_not_json_is_400(client, body):
    r = post_raw(client, "/v1/reactions", body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = post_raw(client, "/v1/reactions", b'["message_id", "type"]')  # JSON, but not the schema: 422
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
