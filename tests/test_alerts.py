"""Run-failure alerts reach a real HTTP webhook and a bounded, rotated log, with no secret in them.

The webhook is a local HTTP server (the standard library's) that records what it receives; the
failed run is a real Dagster run whose failure event the real sensor evaluates.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from twin_platform.alerts import (
    MASK,
    AlertConfig,
    append_rotating,
    build_alert,
    post_webhook,
    send_alert,
)

SECRET = "wandb-secret-0123456789"
DB_PASSWORD = "pg-pass-7788"


@dataclass
class Webhook:
    """A webhook endpoint on 127.0.0.1: what it received, and how it answers."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.received.append(
                {"json": json.loads(body), "content_type": self.headers["Content-Type"]}
            )
            time.sleep(hook.delay_s)
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/hook-token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def failed_run(monkeypatch: pytest.MonkeyPatch) -> tuple[dg.DagsterInstance, Any]:
    """A real failed run whose error quotes a token and a database URL with its password."""
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://twin:{DB_PASSWORD}@db:5432/twin")

    @dg.op
    def train_step() -> None:
        raise RuntimeError(
            f"upload failed with key {SECRET} to postgresql://twin:{DB_PASSWORD}@db:5432/twin"
        )

    @dg.job
    def nightly_training() -> None:
        train_step()

    instance = dg.DagsterInstance.ephemeral()
    result = nightly_training.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return instance, result


def evaluate_sensor(instance: dg.DagsterInstance, result: Any) -> None:
    from sensors.alerts import alert_on_run_failure

    run = instance.get_run_by_id(result.run_id)
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()
    alert_on_run_failure(context)


def test_failed_run_reaches_the_webhook_and_the_log_without_secrets(
    webhook: Webhook,
    failed_run: tuple[dg.DagsterInstance, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWIN_HOME", str(tmp_path))
    monkeypatch.setenv("TWIN_ALERT_WEBHOOK_URL", webhook.url)
    instance, result = failed_run
    evaluate_sensor(instance, result)

    [request] = webhook.received
    assert request["content_type"] == "application/json"
    assert set(request["json"]) == {"text"}  # Slack's incoming-webhook body
    text = request["json"]["text"]
    assert "nightly_training" in text and result.run_id in text
    assert "train_step" in text and "RuntimeError" in text and "upload failed" in text
    [line] = (tmp_path / "alerts.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["run_id"] == result.run_id and record["job"] == "nightly_training"
    for leaked in (text, line):
        assert SECRET not in leaked and DB_PASSWORD not in leaked and MASK in leaked
        assert "hook-token" not in leaked


def test_a_failing_or_slow_webhook_is_logged_not_raised(
    webhook: Webhook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alert = build_alert("run-1", "job", "boom", {})
    config = AlertConfig(log_file=tmp_path / "alerts.jsonl", webhook_url=webhook.url, timeout_s=0.5)

    webhook.status = 500
    assert send_alert(alert, config).webhook is False
    assert "answered HTTP 500" in caplog.text

    webhook.status, webhook.delay_s = 200, 3.0
    started = time.monotonic()
    delivery = send_alert(alert, config)
    assert delivery.webhook is False and delivery.logged
    assert time.monotonic() - started < 2.5  # bounded by the timeout, not by the server
    assert "ReadTimeout" in caplog.text

    closed = AlertConfig(log_file=config.log_file, webhook_url="http://127.0.0.1:9/", timeout_s=1)
    assert send_alert(alert, closed).webhook is False  # nothing listens there
    assert "hook-token" not in caplog.text  # the URL (Slack's holds its token) is never logged
    assert len(config.log_file.read_text().splitlines()) == 3  # every alert is in the log anyway


def test_alert_log_is_bounded_and_rotated(tmp_path: Path) -> None:
    log = tmp_path / "alerts.jsonl"
    line = json.dumps({"error": "x" * 180})  # ~200 bytes a line
    for _ in range(100):
        append_rotating(log, line, max_bytes=1024, backups=2)
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["alerts.jsonl", "alerts.jsonl.1", "alerts.jsonl.2"]
    for name in files:
        size = (tmp_path / name).stat().st_size
        assert 0 < size <= 1024
        assert all(json.loads(row) for row in (tmp_path / name).read_text().splitlines())

    append_rotating(tmp_path / "none.jsonl", line, max_bytes=300, backups=0)
    append_rotating(tmp_path / "none.jsonl", line, max_bytes=300, backups=0)
    assert len((tmp_path / "none.jsonl").read_text().splitlines()) == 1


def test_post_webhook_sends_slack_json(webhook: Webhook) -> None:
    assert post_webhook(webhook.url, "hello *world*", timeout_s=2)
    assert webhook.received[0]["json"] == {"text": "hello *world*"}


def test_alert_sensor_is_registered() -> None:
    from definitions import defs

    sensor = defs.get_sensor_def("alert_on_run_failure")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
