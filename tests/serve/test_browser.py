"""Drive the chat page in headless Debian chromium: type, see the answer, click the heart, find the reaction.

The stub upstream echoes the message, so the "model" answers with a <script> tag that must show as text.
"""

import shutil

import pytest
from sqlalchemy import create_engine, text

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="Debian chromium is not installed (bash scripts/ci_services.sh installs it)"),
]
ATTACK = 'hi <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'


def test_chat_page_end_to_end(live_gateway, db_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.goto(live_gateway + "/")
            page.fill("#input", ATTACK)
            page.press("#input", "Enter")
            answer = page.locator(".msg.assistant").last
            answer.locator(".reactions button.react-love").wait_for(timeout=20_000)
            shown = answer.locator(".text").inner_text()
            assert shown == f"You said: {ATTACK}"  # the markup is shown as text...
            assert page.evaluate("window.__pwned") is None  # ...and never ran
            assert page.locator("#log img, #log script, #log b").count() == 0
            body = page.content()
            assert "control" not in body and "treatment" not in body  # the arm is never shown
            buttons = answer.locator(".reactions button")  # a text name on each, no emoji font needed
            assert [b.inner_text().strip() for b in buttons.all()] == ["Love", "Like", "Dislike"]
            heart = answer.get_by_role("button", name="Love", exact=True)  # the accessible name
            assert heart.locator("svg").bounding_box()["width"] > 0  # the inline icon is drawn
            heart.click()
            page.wait_for_selector(".msg.assistant button.react-love[aria-pressed='true']", timeout=10_000)
            message_id = answer.get_attribute("data-message-id")
            page.fill("#input", "second turn")  # continues the same conversation
            page.press("#input", "Enter")
            page.locator(".msg.assistant .reactions").nth(1).wait_for(timeout=20_000)
            assert page.locator(".msg.failed").count() == 0
        finally:
            browser.close()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        reaction = conn.execute(text("SELECT message_id, type, user_id FROM reactions")).all()
        logged = conn.execute(text("SELECT text FROM messages WHERE message_id = :m"), {"m": message_id}).scalar()
        turns = conn.execute(text("SELECT conversation_id, turn_index, role FROM messages ORDER BY turn_index")).all()
    engine.dispose()
    assert len({t[0] for t in turns}) == 1
    assert [(t[1], t[2]) for t in turns] == [(0, "user"), (1, "assistant"), (2, "user"), (3, "assistant")]
    assert len(reaction) == 1 and tuple(reaction[0])[:2] == (message_id, "love")
    assert reaction[0][2].startswith("web-")
    assert logged == f"You said: {ATTACK}"
