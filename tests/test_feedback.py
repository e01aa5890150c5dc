"""Feedback enters training only after review (issue 17, item 4).

Against the real API, Postgres and the bundled model: the author of a correction is the one the
server recorded for the answer; only the key that got the answer may rate it; ratings are used
(only corrections of bad answers wait for review); per-key limits; the preference dataset reads only
approved corrections; the review step runs from the CLI and from the `reviewed_feedback` asset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from rag_fixtures import load_corpus, start_server
from typer.testing import CliRunner

from twin_platform.api.security import key_id
from twin_platform.settings import load_settings
from twin_platform.storage.postgres import connect

KEY_A = "feedback-key-a-0123456789"
KEY_B = "feedback-key-b-0123456789"
AUTHOR = "rhea-vance"
MAX_PENDING = 3


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def api(postgres_url: str) -> Iterator[str]:
    from twin_platform.api.app import create_app

    load_corpus(postgres_url)
    settings = load_settings(
        api_keys=f"{KEY_A},{KEY_B}",
        api_rate_limit_per_minute=100_000,
        api_feedback_per_minute=60,  # a burst of 10, then one a second
        api_feedback_max_pending=MAX_PENDING,
        api_max_new_tokens=8,
        gen_max_tokens=8,
    )
    url, server, thread = start_server(create_app(settings, preload_model=False))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def answer(
    api: str, key: str, query: str = "What is Rhea Vance's sourdough starter called?"
) -> str:
    """A generated answer in rhea-vance's voice (the query names her); returns its trace id."""
    response = httpx.post(
        f"{api}/rag",
        json={"query": query, "k": 2, "temperature": 0},
        headers=auth(key),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["answer"]
    return str(response.json()["trace_id"])


def feedback(
    api: str, key: str, trace_id: str, rating: int, correction: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"trace_id": trace_id, "rating": rating}
    if correction is not None:
        body["correction"] = correction
    return httpx.post(f"{api}/feedback", json=body, headers=auth(key), timeout=30)


def stored(postgres_url: str, feedback_id: int) -> dict[str, Any]:
    with connect(postgres_url) as conn:
        cur = conn.execute("SELECT * FROM feedback WHERE feedback_id = %s", (feedback_id,))
        row = cur.fetchone()
        assert row is not None
        return dict(zip([c.name for c in cur.description], row, strict=True))


def clear_feedback(postgres_url: str) -> None:
    with connect(postgres_url) as conn:
        conn.execute("DELETE FROM feedback")


def test_the_server_files_feedback_under_the_author_it_answered_as(
    api: str, postgres_url: str
) -> None:
    clear_feedback(postgres_url)
    trace_id = answer(api, KEY_A)
    correction = "My starter is called Gerald, and I feed him rye flour every morning at six."
    bad = feedback(api, KEY_A, trace_id, -1, correction)
    assert bad.status_code == 201, bad.text
    assert bad.json()["status"] == "pending"
    row = stored(postgres_url, bad.json()["feedback_id"])
    assert row["author"] == AUTHOR and row["api_key_id"] == key_id(KEY_A)
    assert row["status"] == "pending" and row["reviewed_by"] is None
    # A correction with a good rating is a rating: nothing for a dataset, nothing to review.
    good = feedback(api, KEY_A, trace_id, 1, "Something else entirely, at length.")
    assert good.status_code == 201 and good.json()["status"] == "ignored"
    # The client cannot name an author, and another key cannot rate this answer.
    body = {"trace_id": trace_id, "rating": -1, "correction": "x" * 40, "author": "bob-stone"}
    assert httpx.post(f"{api}/feedback", json=body, headers=auth(KEY_A)).status_code == 422
    other = feedback(api, KEY_B, trace_id, -1, "Another key's correction of that answer.")
    assert other.status_code == 404
    assert other.json()["error"]["type"] == "not_found"


def test_feedback_has_per_key_limits(api: str, postgres_url: str) -> None:
    clear_feedback(postgres_url)
    trace_id = answer(api, KEY_B)
    statuses = [
        feedback(api, KEY_B, trace_id, -1, f"Correction number {i}, long enough to keep.")
        for i in range(MAX_PENDING + 1)
    ]
    assert [r.status_code for r in statuses] == [201] * MAX_PENDING + [429]
    refused = statuses[-1]
    assert refused.json()["error"] == {
        "message": f"{MAX_PENDING} corrections of this key await review",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": 429,
    }
    assert int(refused.headers["retry-after"]) >= 1
    # The other key is not held back by this one's queue.
    trace_a = answer(api, KEY_A)
    assert (
        feedback(api, KEY_A, trace_a, -1, "Key A's own correction is still taken.").status_code
        == 201
    )
    # A burst of ratings hits the feedback rate (a burst of 10 at 60 a minute).
    ratings = [feedback(api, KEY_A, trace_a, 1).status_code for _ in range(12)]
    assert 429 in ratings and ratings[0] == 201
    assert set(ratings) <= {201, 429}


def insert_trace(
    conn: Any, author: str | None, answer_text: str | None, key: str | None
) -> uuid.UUID:
    trace_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO traces (trace_id, route, query, author, answer, api_key_id)"
        " VALUES (%s, '/rag', %s, %s, %s, %s)",
        (trace_id, f"How do you proof dough? ({trace_id.hex[:6]})", author, answer_text, key),
    )
    return trace_id


def test_datasets_read_only_approved_corrections_of_bad_answers(postgres_url: str) -> None:
    from twin_platform.datasets import feedback as reviewed
    from twin_platform.monitoring import add_feedback

    author = f"review-{uuid.uuid4().hex[:8]}"
    good_text = "I proof it overnight in the fridge, then bake it cold straight from there."
    with connect(postgres_url) as conn:
        ids = {}
        for name, rating in [
            ("approved", -1),
            ("rejected", -1),
            ("pending", -1),
            ("good_rating", 1),
        ]:
            trace_id = insert_trace(conn, author, "Any way you like.", "k_test")
            ids[name], status = add_feedback(
                conn, trace_id, rating, f"{good_text} ({name})", api_key_id="k_test"
            )
            assert status == ("ignored" if name == "good_rating" else "pending")
        no_answer = insert_trace(conn, author, None, "k_test")
        assert add_feedback(conn, no_answer, -1, good_text, api_key_id="k_test")[1] == "ignored"
        assert reviewed.load_feedback_pairs(conn, author) == []  # nothing reviewed yet
        assert reviewed.review(conn, author, [ids["approved"]], "approved", "tester") == [
            ids["approved"]
        ]
        assert reviewed.review(conn, author, [ids["rejected"]], "rejected", "tester") == [
            ids["rejected"]
        ]
        # A rating is never reviewable, and another author's decision list leaves these alone.
        assert reviewed.review(conn, author, [ids["good_rating"]], "approved", "tester") == []
        assert reviewed.review(conn, "someone-else", [ids["pending"]], "approved", "x") == []
        pairs = reviewed.load_feedback_pairs(conn, author)
        counts = reviewed.status_counts(conn, author)
    assert [p.sample_id for p in pairs] == [f"feedback:{ids['approved']}"]
    assert pairs[0].answer.endswith("(approved)") and pairs[0].rejected == "Any way you like."
    assert counts == {"pending": 1, "approved": 1, "rejected": 1, "ignored": 2}


def test_the_review_asset_applies_decisions_and_shows_the_queue(postgres_url: str) -> None:
    from assets.feedback import reviewed_feedback
    from resources import PostgresResource
    from twin_platform.monitoring import add_feedback

    author = f"asset-{uuid.uuid4().hex[:8]}"
    with connect(postgres_url) as conn:
        ids = [
            add_feedback(
                conn,
                insert_trace(conn, author, "Whatever works.", None),
                -1,
                f"Correction {i}: proof it cold.",
            )[0]
            for i in range(3)
        ]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", [author])

    def materialize(**config: Any) -> dict[str, Any]:
        result = dg.materialize(
            [reviewed_feedback],
            partition_key=author,
            instance=instance,
            resources={"postgres": PostgresResource()},
            run_config={"ops": {"reviewed_feedback": {"config": config}}},
        )
        assert result.success
        return {
            k: v.value
            for k, v in result.asset_materializations_for_node("reviewed_feedback")[
                0
            ].metadata.items()
        }

    before = materialize()
    assert (before["pending"], before["approved"]) == (3, 0)
    assert all(str(i) in before["awaiting_review"] for i in ids)
    after = materialize(approve=[ids[0]], reject=[ids[1]], reviewer="ada")
    assert (after["pending"], after["approved"], after["rejected"]) == (1, 1, 1)
    assert after["approved_now"] == [ids[0]] and after["rejected_now"] == [ids[1]]
    assert after["approved_digest"] != before["approved_digest"]
    assert stored(postgres_url, ids[0])["reviewed_by"] == "ada"
    record = instance.get_latest_materialization_event(dg.AssetKey("reviewed_feedback"))
    assert record is not None


def test_twin_feedback_lists_approves_and_rejects(postgres_url: str, twin_home: Path) -> None:
    from assets.partitions import add_authors
    from cli import app
    from cli.common import open_instance
    from twin_platform.monitoring import add_feedback

    author = f"cli-{uuid.uuid4().hex[:8]}"
    with connect(postgres_url) as conn:
        ids = [
            add_feedback(
                conn,
                insert_trace(conn, author, "It depends.", None),
                -1,
                f"Correction {i}: I always proof overnight.",
            )[0]
            for i in range(2)
        ]
    runner = CliRunner()
    listed = runner.invoke(app, ["feedback", "list", "--author", author], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    assert all(str(i) in listed.output for i in ids) and "pending" in listed.output
    unregistered = runner.invoke(app, ["feedback", "approve", str(ids[0])])
    assert unregistered.exit_code != 0 and "not a registered author" in str(unregistered.exception)
    add_authors(open_instance(load_settings()), [author])
    approved = runner.invoke(app, ["feedback", "approve", str(ids[0]), "--reviewer", "ada"])
    assert approved.exit_code == 0, approved.output
    assert f"{ids[0]}  {author}  approved" in approved.output
    rejected = runner.invoke(app, ["feedback", "reject", str(ids[1])])
    assert rejected.exit_code == 0, rejected.output
    assert stored(postgres_url, ids[1])["status"] == "rejected"
    unknown = runner.invoke(app, ["feedback", "approve", "999999999"])
    assert unknown.exit_code != 0 and "no feedback with id 999999999" in str(unknown.exception)
    # The decision runs are in the UI's instance, with the new counts.
    event = open_instance(load_settings()).get_latest_materialization_event(
        dg.AssetKey("reviewed_feedback")
    )
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["rejected"].value >= 1
