from sqlalchemy import create_engine, text

from .conftest import ALICE, BOB, ask


def reaction_rows(db_url):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        out = [tuple(r) for r in conn.execute(text("SELECT message_id, user_id, type FROM reactions"))]
    engine.dispose()
    return out


def react(client, message_id, type_="love", headers=ALICE, undo=False):
    return client.request("DELETE" if undo else "POST", "/v1/reactions",
                          json={"message_id": message_id, "type": type_}, headers=headers)


def test_reaction_is_logged_once_and_undone(client, db_url):
    answer = ask(client).json()["id"]
    r = react(client, answer)
    assert r.status_code == 201 and r.json()["created"] is True
    r = react(client, answer)  # a repeat is idempotent
    assert r.status_code == 200 and r.json()["created"] is False
    assert reaction_rows(db_url) == [(answer, "alice", "love")]
    assert react(client, answer, "like").status_code == 201
    assert len(reaction_rows(db_url)) == 2
    r = react(client, answer, undo=True)
    assert r.status_code == 200 and r.json()["deleted"] is True
    assert react(client, answer, undo=True).json()["deleted"] is False  # undo twice: no-op
    assert reaction_rows(db_url) == [(answer, "alice", "like")]


def test_reactions_on_unknown_or_user_messages_are_rejected(client, db_url):
    ask(client)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        user_msg = conn.execute(text("SELECT message_id FROM messages WHERE role='user'")).scalar_one()
    engine.dispose()
    r = react(client, "no-such-message")
    assert r.status_code == 404 and r.json()["error"]["code"] == "message_not_found"
    r = react(client, user_msg)
    assert r.status_code == 422 and "is a user message; reactions go on assistant answers" in r.text
    assert reaction_rows(db_url) == []


def test_unknown_type_and_other_users_message(client, db_url):
    answer = ask(client).json()["id"]
    r = react(client, answer, "wow")
    assert r.status_code == 422 and "not one of ['love', 'like', 'dislike']" in r.json()["error"]["message"]
    r = react(client, answer, headers=BOB)  # bob cannot react (or undo) on alice's answers
    assert r.status_code == 404
    assert react(client, answer, headers=BOB, undo=True).status_code == 404
    r = react(client, answer, headers={})
    assert r.status_code == 401
    r = client.post("/v1/reactions", json={"message_id": answer, "type": "love", "user_id": "bob"}, headers=ALICE)
    assert r.status_code == 422  # no user id in the body, ever
    assert reaction_rows(db_url) == []
