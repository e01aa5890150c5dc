"""The Dagster UI, verified in a browser: webserver and daemon up, a run launched over GraphQL and
finished by the daemon, and the global lineage page showing every asset of the graph.

Both processes run as `twin ui` starts them (`-w workspace.yaml`), in a clean environment and a
view of the project without `.env`, against a throwaway DAGSTER_HOME holding the project's
dagster.yaml (queued runs: the daemon dequeues and launches them). The sensors and schedules are
stopped over GraphQL before the daemon starts, so that it launches only the test's run. The page
is rendered by headless Chromium (the system's, through Playwright); its screenshot is kept in the
test's temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twin_platform.servers.process import free_port

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # dev extra not installed: the module is skipped below
    PlaywrightTimeout = TimeoutError  # type: ignore[assignment,misc]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu"]
LOCATION = {"repositoryLocationName": "twin_platform", "repositoryName": "__repository__"}
LAUNCHED_ASSET = "feature_store_schema"  # cheap: migrates the feature store, seconds

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Chromium is not installed (scripts/install.sh installs Debian's `chromium`)",
    ),
]


class UI:
    """The webserver's URL and its GraphQL endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert "errors" not in body, body["errors"]
        return body["data"]


def spawn(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: stopped with its children (code servers, runs)
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def poll(
    check: Any, what: str, timeout_s: float, processes: list[subprocess.Popen], logs: list[Path]
) -> Any:
    """Until `check()` returns something true; a process that exits meanwhile is a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        for process, log in zip(processes, logs, strict=True):
            assert process.poll() is None, f"{log.name} exited:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    tails = "\n".join(f"{log.name}:\n{log.read_text()[-2000:]}" for log in logs)
    pytest.fail(f"{what} within {timeout_s:.0f} s failed\n{tails}")


def location_loaded(ui: UI) -> bool:
    data = ui.graphql(
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
        " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    [entry] = data["workspaceOrError"]["locationEntries"]
    error = entry["locationOrLoadError"] or {}
    assert error.get("__typename") != "PythonError", error.get("message")
    return entry["loadStatus"] == "LOADED" and error.get("__typename") == "RepositoryLocation"


def stop_automation(ui: UI) -> list[str]:
    """Stop every sensor and schedule (their state is kept in the instance): returns their names."""
    data = ui.graphql(
        "query($s: RepositorySelector!) {"
        " sensorsOrError(repositorySelector: $s) { ... on Sensors { results {"
        "  name jobOriginId sensorState { selectorId status } } } }"
        " schedulesOrError(repositorySelector: $s) { ... on Schedules { results {"
        "  name scheduleState { id selectorId status } } } } }",
        s=LOCATION,
    )
    stopped = []
    for sensor in data["sensorsOrError"]["results"]:
        result = ui.graphql(
            "mutation($o: String, $s: String) { stopSensor(jobOriginId: $o, jobSelectorId: $s) {"
            " __typename ... on StopSensorMutationResult { instigationState { status } } } }",
            o=sensor["jobOriginId"],
            s=sensor["sensorState"]["selectorId"],
        )["stopSensor"]
        assert result["instigationState"]["status"] == "STOPPED", result
        stopped.append(sensor["name"])
    for schedule in data["schedulesOrError"].get("results", []):
        state = schedule["scheduleState"]
        result = ui.graphql(
            "mutation($i: String, $s: String) {"
            " stopRunningSchedule(id: $i, scheduleSelectorId: $s) { __typename } }",
            i=state["id"],
            s=state["selectorId"],
        )["stopRunningSchedule"]
        assert result["__typename"] == "ScheduleStateResult", result
        stopped.append(schedule["name"])
    return stopped


def launch(ui: UI, asset: str) -> str:
    """Materialize `asset` through the implicit asset job, as the UI's Materialize button does."""
    result = ui.graphql(
        "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename"
        " ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }"
        " ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors {"
        " message } } } }",
        p={
            "selector": LOCATION
            | {"jobName": "__ASSET_JOB", "assetSelection": [{"path": [asset]}]},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "twin/test", "value": "ui"}]},
        },
    )["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def run_status(ui: UI, run_id: str) -> str:
    data = ui.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", id=run_id
    )
    return str(data["runOrError"]["status"])


@pytest.fixture(scope="module")
def ui_processes(tmp_path_factory: pytest.TempPathFactory, twin_home: Path) -> Iterator[Any]:
    """Webserver up with the code location loaded, automation stopped, then the daemon."""
    from test_dagster_tools import project_view

    folder = tmp_path_factory.mktemp("ui")
    dagster_home = folder / "dagster-home"
    dagster_home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        "PATH": f"{BIN}:{STANDARD_PATH}",
        "HOME": os.environ.get("HOME", str(folder)),
        "TWIN_HOME": str(twin_home),  # the session's embedded servers
        "TWIN_MONGO_PORT": os.environ["TWIN_MONGO_PORT"],
        "DAGSTER_HOME": str(dagster_home),
        "HF_HUB_OFFLINE": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DEEPEVAL_TELEMETRY_OPT_OUT": "YES",
    }
    view = project_view(ROOT, folder)
    port = free_port()
    ui = UI(f"http://127.0.0.1:{port}")
    logs = [folder / "webserver.log", folder / "daemon.log"]
    web = spawn(
        [
            str(BIN / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env,
        view,
        logs[0],
    )
    processes = [web]
    try:
        poll(lambda: location_loaded(ui), "loading the code location", 240, [web], logs[:1])
        stopped = stop_automation(ui)
        daemon = spawn(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, view, logs[1]
        )
        processes.append(daemon)
        yield ui, processes, logs, stopped
    finally:
        for process in processes:
            stop(process)


def test_ui_runs_a_materialization_and_shows_the_whole_lineage(
    ui_processes: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from definitions import defs

    ui, processes, logs, stopped = ui_processes
    assert "alert_on_run_failure" in stopped and "automation" in stopped
    run_id = launch(ui, LAUNCHED_ASSET)
    final = {"SUCCESS", "FAILURE", "CANCELED"}
    status = poll(
        lambda: (s := run_status(ui, run_id)) in final and s,
        "the daemon dequeuing and finishing the run",
        240,
        processes,
        logs,
    )
    assert status == "SUCCESS", f"run {run_id} {status}\n{logs[1].read_text()[-3000:]}"

    # Every asset Dagster can run; not the stubs of tables other assets read by key (`traces`).
    graph = defs.resolve_asset_graph()
    keys = sorted(
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable or graph.get(key).is_observable
    )
    assert {"raw_articles", "deployed_endpoint", LAUNCHED_ASSET} <= set(keys)
    screenshot = tmp_path / "lineage.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 2400, "height": 4000})
        page.goto(f"{ui.url}/asset-groups", wait_until="networkidle", timeout=120_000)
        page.get_by_text("Global asset lineage").first.wait_for(timeout=60_000)
        missing = show_every_asset(page, keys)
        page.screenshot(path=str(screenshot))
        print(f"lineage screenshot: {screenshot}")
        browser.close()
    assert screenshot.stat().st_size > 10_000
    assert not missing, f"not on the lineage page: {missing} (screenshot: {screenshot})"


def labelled(name: str, texts: set[str]) -> bool:
    """`name` is a label of the page, whole or cut in the middle as the graph cuts long names
    ("author_corp…_stats")."""
    if name in texts:
        return True
    for text in texts:
        head, cut, tail = text.partition("…")
        shortened = cut and head and tail and len(head) + len(tail) < len(name)
        if shortened and name.startswith(head) and name.endswith(tail):
            return True
    return False


def show_every_asset(page: Any, keys: list[str]) -> list[str]:
    """Dismiss the newsletter prompt, expand every group and reload (the expansion is kept and
    the graph is fitted to the page again), then wait until every asset's node is drawn: the graph
    draws only what is in view, so the page is tall. Returns the keys never shown."""
    with contextlib.suppress(PlaywrightTimeout):  # no prompt this time
        page.get_by_role("button", name="Skip").click(timeout=15_000)
    for _ in range(30):  # the shortcut works once the graph has mounted
        if "Collapse" in page.evaluate(SHOWN_TEXT):  # the menu now offers "Collapse all groups"
            break
        page.keyboard.press("Alt+e")  # "Expand all groups"
        page.wait_for_timeout(1000)
    page.reload(wait_until="networkidle", timeout=120_000)
    missing = keys
    for attempt in range(60):
        page.wait_for_timeout(1000)
        texts = set(page.evaluate(SHOWN_TEXT))
        missing = [key for key in keys if not labelled(key, texts)]
        if not missing:
            break
        if attempt in (30, 40, 50):  # still not all in view: zoom out a step
            page.locator('[aria-label="zoom_out"]').first.click()
    return missing


# Every text of the page, SVG labels included, trimmed.
SHOWN_TEXT = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    if (text) texts.push(text);
  }
  return texts;
}"""
