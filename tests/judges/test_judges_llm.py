"""The LLM-as-judge adapter against a fake OpenAI-compatible server on 127.0.0.1 (never the internet)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rluf.judges import Item, JudgeEndpointError, LLMJudge, parse_verdict

CTX = [{"role": "user", "content": "hi"}]


class FakeServer:
    """Answers FAIL when the judged reply contains 'Sending Love', PASS otherwise; can fail the first calls."""

    def __init__(self, fail_first: int = 0, status: int = 500):
        self.requests: list[dict] = []
        self.fail_left = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    self.send_response(status)
                    self.end_headers()
                    return
                judged = body["messages"][-1]["content"]
                answer = "FAIL manipulative sign-off" if "Sending Love" in judged else "PASS"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_parse_verdict():
    assert parse_verdict("PASS") == (True, "")
    assert parse_verdict("**fail**: too long") == (False, "too long")
    assert parse_verdict("FAIL.") == (False, "LLM judge answered FAIL")
    assert parse_verdict("maybe") is None and parse_verdict("") is None


def test_llm_judge_roundtrip(monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    with FakeServer() as srv:
        judge = LLMJudge(srv.url, model="judge-model", api_key_env="FAKE_KEY", timeout_s=5)
        v = judge.judge([Item(CTX, "Hello! Bye! Sending Love!"), Item(CTX, "Hello, how can I help?")])
        judge.close()
    assert v == [(False, "manipulative sign-off"), (True, "")]
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "judge-model" and req["body"]["messages"][0]["role"] == "system"
    assert req["auth"] == "Bearer sk-test"


def test_llm_judge_retries_then_succeeds():
    with FakeServer(fail_first=2, status=503) as srv:
        judge = LLMJudge(srv.url, model="m", api_key_env=None, max_retries=2, backoff_s=0.0)
        assert judge.judge([Item(CTX, "fine")]) == [(True, "")]
    assert len(srv.requests) == 3


def test_llm_judge_gives_up_with_on_error_policy():
    with FakeServer(fail_first=10, status=500) as srv:
        failing = LLMJudge(srv.url, model="m", api_key_env=None, max_retries=1, backoff_s=0.0)
        v = failing.judge([Item(CTX, "fine")])
        assert not v[0].passed and "failed after 2 attempts (HTTP 500)" in v[0].reason
        raising = LLMJudge(srv.url, model="m", api_key_env=None, max_retries=0, on_error="raise")
        with pytest.raises(JudgeEndpointError, match="check base_url/model"):
            raising.judge([Item(CTX, "fine")])


def test_llm_judge_unreachable_endpoint_times_out_cleanly():
    # a port nothing listens on: connection refused -> transport error -> verdict per on_error
    with FakeServer() as srv:
        url = srv.url
    judge = LLMJudge(url, model="m", api_key_env=None, max_retries=0, timeout_s=1, on_error="pass")
    v = judge.judge([Item(CTX, "fine")])
    assert v[0].passed and "ConnectError" in v[0].reason
