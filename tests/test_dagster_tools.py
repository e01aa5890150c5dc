"""Dagster's own command-line tools work from the project root in a clean shell.

Users run `dagster dev`, `dagster definitions validate` and `dg check defs / list defs / launch`
straight from the checkout, not only through `twin`. The environment here holds nothing but a
standard PATH, a HOME and a throwaway TWIN_HOME (so the embedded servers do not touch the
developer's own): no DAGSTER_HOME, no TWIN_* settings.

Nor the developer's `.env`: Dagster's CLI loads `.env` from its working directory into the
environment by itself (over what is set), so the commands run in a view of the project (every
entry linked) that has no `.env`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from twin_platform.servers.process import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    twin_home = Path(os.environ["TWIN_HOME"]) if "TWIN_HOME" in os.environ else None
    return {
        "PATH": f"{BIN}:{STANDARD_PATH}",
        "HOME": str(home),
        "TWIN_HOME": str(twin_home or tmp_path_factory.mktemp("twin-home")),
        "TWIN_MONGO_PORT": os.environ.get("TWIN_MONGO_PORT", str(free_port())),
    }


def project_view(project: Path, parent: Path) -> Path:
    """A folder that is `project` to Dagster and Python (every entry linked), minus its `.env`
    and Dagster's leftover temporary instances."""
    view = Path(tempfile.mkdtemp(prefix="project-", dir=parent))
    for entry in project.iterdir():
        if entry.name != ".env" and not entry.name.startswith(".tmp_dagster_home_"):
            (view / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return view


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_view(ROOT, tmp_path_factory.mktemp("views"))


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def test_dagster_definitions_validate(clean_env: dict[str, str], workdir: Path) -> None:
    output = run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        clean_env,
        workdir,
    )
    assert "All code locations passed validation" in output


def test_dg_checks_and_lists_the_definitions(clean_env: dict[str, str], workdir: Path) -> None:
    assert "All definitions loaded successfully" in run(
        [str(BIN / "dg"), "check", "defs"], clean_env, workdir
    )
    listing = run([str(BIN / "dg"), "list", "defs", "--json"], clean_env, workdir)
    for asset in ("raw_articles", "embedded_chunks", "sft_model", "dpo_model"):
        assert f'"{asset}"' in listing


def test_dg_launch_materializes_an_asset(
    twin_home: Path, clean_env: dict[str, str], workdir: Path
) -> None:
    output = run(
        [str(BIN / "dg"), "launch", "--assets", "feature_store_schema"], clean_env, workdir
    )
    assert "RUN_SUCCESS" in output


def test_a_dotenv_in_the_project_does_not_reach_the_commands(
    twin_home: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    """A developer's `.env` pointing at their own (here: unreachable) servers: Dagster would load
    it into the run's environment, and the launch would fail to connect."""
    project = project_view(ROOT, tmp_path)  # the checkout, with a `.env` of its own
    (project / ".env").write_text(
        "DATABASE_URL=postgresql://dev:dev@127.0.0.1:1/dev\n"
        "MONGODB_URI=mongodb://127.0.0.1:1/\n"
        "TWIN_HOME=/nonexistent/twin-home\n"
    )
    output = run(
        [str(BIN / "dg"), "launch", "--assets", "feature_store_schema"],
        clean_env,
        project_view(project, tmp_path),
    )
    assert "RUN_SUCCESS" in output


def test_dagster_dev_serves_the_ui(clean_env: dict[str, str], workdir: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=workdir,
        env=clean_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert process.poll() is None, "dagster dev exited"
                assert time.monotonic() < deadline, "dagster dev did not answer in 180 s"
                time.sleep(1)
    finally:
        os.killpg(
            process.pid, signal.SIGINT
        )  # what Ctrl-C sends: it stops its children and cleans up
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
