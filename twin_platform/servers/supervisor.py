"""The platform's own background processes: the Dagster webserver and daemon, and the API.

Each is started detached, recorded in a pid file under TWIN_HOME/run, found again by every later
command, and stopped by `stop_all`. Starting one that runs already returns its URL.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

from twin_platform.servers import process
from twin_platform.servers.common import ServiceError
from twin_platform.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent
PROCESSES = ("webserver", "daemon", "api")
# For every process of the platform, set by the CLI and inherited by what it starts: litellm's
# import would otherwise fetch its model cost map from GitHub, and telemetry stays off.
PROCESS_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DEEPEVAL_TELEMETRY_OPT_OUT": "YES",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def use_process_env() -> None:
    """The CLI's own process gets PROCESS_ENV too (values the user exported win)."""
    for name, value in PROCESS_ENV.items():
        os.environ.setdefault(name, value)


def prepare_dagster_home(settings: Settings) -> Path:
    """$TWIN_HOME/dagster with the project's dagster.yaml: the instance the CLI and the UI share."""
    home = settings.dagster_home
    process.ensure_writable(home)
    template = PROJECT_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != template.read_bytes():
        shutil.copyfile(template, target)
    return home


def wait_http(url: str, timeout_s: float, record: process.ProcessRecord, log: Path) -> None:
    """Until `url` answers; a process that exits meanwhile is an error quoting its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if not record.is_alive():
                raise ServiceError(
                    f"{record.command[0]} exited: {process.tail(log, 3)} (log: {log})"
                ) from None
            time.sleep(0.5)
    raise ServiceError(f"{url} did not answer within {timeout_s:.0f} s (log: {log})")


def start_ui(settings: Settings, port: int) -> str:
    """Dagster webserver and daemon in the background on 127.0.0.1; returns the UI's URL."""
    home = prepare_dagster_home(settings)
    env = {"DAGSTER_HOME": str(home)}
    run_dir = settings.run_dir
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    with process.exclusive_lock(run_dir / "ui.lock"):
        if process.read_record(run_dir / "daemon.pid") is None:
            process.spawn(
                [str(BIN / "dagster-daemon"), "run", "-w", workspace],
                run_dir / "daemon.pid",
                run_dir / "daemon.log",
                env=env,
            )
        web = process.read_record(run_dir / "webserver.pid")
        if web is None:
            if not process.port_is_free(port):
                raise ServiceError(
                    f"port {port} is taken: pass --port or set TWIN_UI_PORT to a free port."
                )
            web = process.spawn(
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    workspace,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                run_dir / "webserver.pid",
                run_dir / "webserver.log",
                env=env,
                info={"port": port},
            )
        url = f"http://127.0.0.1:{web.info.get('port', port)}"
        wait_http(f"{url}/server_info", 120, web, run_dir / "webserver.log")
    return url


def start_api(settings: Settings, host: str, port: int) -> str:
    """The RAG API (`twin serve`) in the background; returns its URL once /health answers."""
    run_dir = settings.run_dir
    process.ensure_writable(run_dir)
    with process.exclusive_lock(run_dir / "api.lock"):
        api = process.read_record(run_dir / "api.pid")
        if api is None:
            if not process.port_is_free(port, host):
                raise ServiceError(
                    f"port {port} is taken: pass --port or set TWIN_API_PORT to a free port."
                )
            api = process.spawn(
                [str(BIN / "twin"), "serve", "--host", host, "--port", str(port)],
                run_dir / "api.pid",
                run_dir / "api.log",
                info={"host": host, "port": port},
            )
        url = f"http://{api.info.get('host', host)}:{api.info.get('port', port)}"
        wait_http(f"{url}/health", 180, api, run_dir / "api.log")
    return url


def api_url(settings: Settings) -> str | None:
    """The URL of the API `start_api` started, if it runs."""
    api = process.read_record(settings.run_dir / "api.pid")
    return None if api is None else f"http://{api.info['host']}:{api.info['port']}"


def stop_all(settings: Settings) -> list[str]:
    """Stop the UI, the daemon and the API; returns what was running."""
    stopped = []
    for name in PROCESSES:
        record = process.read_record(settings.run_dir / f"{name}.pid")
        if record is not None:
            process.terminate(record)
            (settings.run_dir / f"{name}.pid").unlink(missing_ok=True)
            stopped.append(name)
    return stopped
