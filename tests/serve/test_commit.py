"""Answered means logged: group commit under concurrency, and a failed commit means no answer."""

import asyncio

import httpx
from sqlalchemy.exc import OperationalError

from rluf.serve import create_app

from .conftest import ALICE, BOB, ask, make_config
from .stub import make_stub_app
from .test_gateway import rows, sse_events


def test_concurrent_requests_are_all_logged_once(db_url):
    app = create_app(make_config(db_url), transport=httpx.ASGITransport(make_stub_app()))

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
            async def one(i):
                h = ALICE if i % 2 else BOB
                r = await c.post("/v1/chat/completions", headers=h,
                                 json={"messages": [{"role": "user", "content": f"q{i}"}]})
                return r.status_code, r.json()["id"]
            return await asyncio.gather(*[one(i) for i in range(40)])

    try:
        results = asyncio.run(main())
    finally:
        app.state.gateway.writer.close()
    assert [s for s, _ in results] == [200] * 40
    logged = {r["message_id"] for r in rows(db_url, "SELECT message_id FROM messages WHERE role='assistant'")}
    assert logged == {mid for _, mid in results}
    assert len(rows(db_url, "SELECT * FROM messages")) == 80
    assert len(rows(db_url, "SELECT * FROM assignments")) == 2 and len(rows(db_url, "SELECT * FROM users")) == 2


def test_racing_turns_on_one_conversation_conflict_cleanly(db_url):
    app = create_app(make_config(db_url), transport=httpx.ASGITransport(make_stub_app()))

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
            first = (await c.post("/v1/chat/completions", headers=ALICE,
                                  json={"messages": [{"role": "user", "content": "start"}]})).json()
            hist = [{"role": "user", "content": "start"},
                    {"role": "assistant", "content": first["choices"][0]["message"]["content"]}]

            async def one(i):
                r = await c.post("/v1/chat/completions", headers=ALICE, json={
                    "messages": hist + [{"role": "user", "content": f"next {i}"}],
                    "conversation_id": first["conversation_id"]})
                return r.status_code
            return await asyncio.gather(*[one(i) for i in range(8)])

    try:
        statuses = asyncio.run(main())
    finally:
        app.state.gateway.writer.close()
    assert statuses.count(200) == 1 and statuses.count(409) == 7  # exactly one extends the conversation
    assert [r["turn_index"] for r in rows(db_url, "SELECT turn_index FROM messages ORDER BY turn_index")] == [
        0, 1, 2, 3]


def _break_commits(client):
    store = client.app.state.gateway.store

    def broken(conn, turn):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    store.apply_turn = broken


def test_a_failed_commit_is_not_answered(client, db_url):
    _break_commits(client)
    r = ask(client, "will this be logged?")
    assert r.status_code == 503 and "could not be logged" in r.json()["error"]["message"]
    assert "You said" not in r.text
    r = ask(client, "and streamed?", stream=True)
    events = sse_events(r.text)
    assert "[DONE]" not in events and "could not be logged" in events[-1]
    assert rows(db_url, "SELECT * FROM messages") == []


def test_sqlite_wal_is_checkpointed_off_the_request_path(tmp_path):
    """Commits never checkpoint (wal_autocheckpoint=0); the Store's background thread copies the WAL back."""
    import time

    from sqlalchemy import text

    from rluf.serve.store import Store

    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 0
        size_before = (tmp_path / "gw.db").stat().st_size
        with store.engine.begin() as conn:
            conn.execute(text("CREATE TABLE filler (x TEXT)"))
            conn.execute(text("INSERT INTO filler VALUES (:x)"), [{"x": "y" * 500}] * 2000)
        deadline = time.time() + 10
        while (tmp_path / "gw.db").stat().st_size <= size_before and time.time() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "gw.db").stat().st_size > size_before + 500_000  # the rows reached the database file
    finally:
        store.close()
    assert not store._checkpointer._thread.is_alive()
