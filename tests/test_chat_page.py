"""The chat page in headless Chromium (Debian's, driven by Playwright): pick a twin from /v1/models,
ask, watch the answer stream with the model that answered, see the sources, ask a follow-up that
carries the conversation, send feedback; the feedback lands in Postgres."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from rag_fixtures import load_corpus, start_server

from twin_platform.llm.local import bundled_gguf_path
from twin_platform.serving.deployments import Deployment, DeploymentStore
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
AUTHOR = "rhea-vance"

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
    DeploymentStore(settings.deployments_dir).record(
        Deployment(AUTHOR, f"twin-{AUTHOR}", 7, str(bundled_gguf_path()), "unused")
    )
    url, server, thread = start_server(create_app(settings))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_chat_page_streams_answers_in_a_conversation_and_takes_feedback(
    api_url: str, postgres_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(api_url + "/")
        expect(page.get_by_role("heading", name="Your writing twin")).to_be_visible()
        expect(page.locator("#error")).to_contain_text("401")  # the model list needs the key

        page.fill("#apikey", KEY)
        page.dispatch_event("#apikey", "change")
        twin = page.get_by_label("twin")
        expect(twin.locator(f"option[value='twin-{AUTHOR}']")).to_have_count(1)
        twin.select_option(f"twin-{AUTHOR}")
        expect(page.locator("#version")).to_have_text(f"serving twin-{AUTHOR}:7")

        page.fill("#prompt", "What does Rhea Vance feed her sourdough starter?")
        page.click("#send")
        first = page.locator(".turn").first
        expect(first.locator(".sources li").first).to_contain_text(
            "https://rhea.example/sourdough", timeout=60_000
        )
        expect(first.locator(".feedback")).to_be_visible(timeout=120_000)
        expect(first.locator(".model")).to_have_text(f"answered by twin-{AUTHOR}:7")
        answer = first.locator(".answer").inner_text()
        assert answer.strip()

        page.fill("#prompt", "And how long does it rise?")
        page.click("#send")
        expect(page.locator(".turn").nth(1).locator(".feedback")).to_be_visible(timeout=120_000)

        first.locator(".correction").fill("Gerald eats rye flour.")
        first.get_by_role("button", name="good answer").click()
        expect(first.locator(".thanks")).to_have_text("Thanks for the feedback.")
        browser.close()

    deadline = time.monotonic() + 10
    with connect(postgres_url) as conn:
        while True:
            row = conn.execute(
                "SELECT f.rating, t.answer, t.model_version FROM feedback f"
                " JOIN traces t USING (trace_id) WHERE f.correction = 'Gerald eats rye flour.'"
            ).fetchone()
            follow_up = conn.execute(
                "SELECT prompt FROM traces WHERE query = 'And how long does it rise?'"
            ).fetchone()
            if (row and follow_up) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert row is not None and row[0] == 1 and row[2] == f"twin-{AUTHOR}:7"
    assert follow_up is not None and "sourdough starter" in follow_up[0]  # the history went along
