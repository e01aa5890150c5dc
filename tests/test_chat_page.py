"""The chat page in headless Chromium (Debian's, driven by Playwright): ask, watch the answer stream,
see the sources, send feedback; the feedback lands in Postgres."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from rag_fixtures import load_corpus, start_server

from twin_platform.settings import load_settings
from twin_platform.storage.postgres import connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "page-key-42"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="Chromium is not installed (scripts/install.sh installs Debian's `chromium`)",
    ),
]


@pytest.fixture(scope="module")
def api_url(postgres_url: str) -> Iterator[str]:
    from twin_platform.api.app import create_app

    load_corpus(postgres_url)
    settings = load_settings(api_keys=KEY, gen_max_tokens=12)
    url, server, thread = start_server(create_app(settings))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_chat_page_streams_an_answer_and_takes_feedback(api_url: str, postgres_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(api_url + "/")
        expect(page.get_by_role("heading", name="Your writing twin")).to_be_visible()

        # Without the key the API refuses, and the page says so.
        page.fill("#prompt", "What does Rhea Vance feed her sourdough starter?")
        page.click("#send")
        expect(page.locator("#error")).to_contain_text("401")

        page.fill("#apikey", KEY)
        page.click("#send")
        expect(page.locator("#sources li").first).to_contain_text(
            "https://rhea.example/sourdough", timeout=60_000
        )
        expect(page.locator("#feedback")).to_be_visible(timeout=120_000)
        answer = page.locator("#answer").inner_text()
        assert answer.strip()

        page.fill("#correction", "Gerald eats rye flour.")
        page.get_by_role("button", name="good answer").click()
        expect(page.locator("#thanks")).to_have_text("Thanks for the feedback.")
        browser.close()

    deadline = time.monotonic() + 10
    with connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT f.rating, f.correction, t.answer FROM feedback f JOIN traces t USING (trace_id)"
            " WHERE f.correction = 'Gerald eats rye flour.'"
        ).fetchone()
        assert time.monotonic() < deadline
    assert row is not None and row[0] == 1 and row[2] == answer
