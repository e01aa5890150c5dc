"""Where the API may listen and whom it answers (issue 17, item 3): it fails closed on a network
address without keys, answers only allowed Host names (no DNS rebinding), and the compose
deployment publishes nothing unauthenticated and hands each service only what it needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from twin_platform.api.app import create_app
from twin_platform.api.security import UnsafeServeError, allowed_hosts, is_loopback
from twin_platform.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "security-key-0123456789"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.20", "twin.example.com"])
def test_an_api_without_keys_refuses_a_network_address(host: str) -> None:
    with pytest.raises(UnsafeServeError) as refused:
        create_app(load_settings(), bind_host=host)
    message = str(refused.value)
    assert "\n" not in message and "TWIN_API_KEYS" in message and "TWIN_API_ALLOW_OPEN" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_an_api_without_keys_may_listen_on_loopback(host: str) -> None:
    assert is_loopback(host)
    create_app(load_settings(), bind_host=host)


def test_keys_or_an_explicit_setting_allow_a_network_address() -> None:
    create_app(load_settings(api_keys=KEY), bind_host="0.0.0.0")
    create_app(load_settings(api_allow_open=True), bind_host="0.0.0.0")
    with pytest.raises(UnsafeServeError, match="placeholder"):
        create_app(load_settings(api_keys="change-me-to-a-long-random-key"), bind_host="127.0.0.1")


def test_twin_serve_stops_with_one_line(twin_home: Path) -> None:
    from twin_platform.servers.process import free_port

    env = {k: v for k, v in os.environ.items() if k != "TWIN_API_KEYS"}
    twin = str(Path(sys.executable).parent / "twin")
    served = subprocess.run(
        [twin, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env | {"COLUMNS": "400"},
        timeout=60,  # a server that starts instead of refusing is stopped here
        check=False,
    )
    assert served.returncode == 1
    lines = [line for line in served.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: refusing to serve without TWIN_API_KEYS")


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("api:8000", 200),  # the compose service name
        ("attacker.example", 400),  # a page on attacker.example rebound to 127.0.0.1
        ("localhost.attacker.example", 400),
        ("10.9.8.7:8000", 400),
    ],
)
def test_only_allowed_host_names_are_answered(host: str, status: int) -> None:
    app = create_app(load_settings(), preload_model=False)
    http = TestClient(app)  # no lifespan: the middleware decides before any route runs
    assert http.get("/health", headers={"Host": host}).status_code == status


def test_allowed_hosts_are_configurable_and_include_a_concrete_bind_address() -> None:
    settings = load_settings(api_keys=KEY, api_allowed_hosts="twin.example.com,*.twin.example.com")
    http = TestClient(create_app(settings, bind_host="10.9.8.7"))
    for host, status in [
        ("twin.example.com", 200),
        ("eu.twin.example.com", 200),
        ("10.9.8.7:8000", 200),
        ("localhost", 400),
    ]:
        assert http.get("/health", headers={"Host": host}).status_code == status, host
    assert allowed_hosts("localhost,::1", "0.0.0.0") == ["localhost", "::1", "[::1]"]


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_publishes_nothing_unauthenticated() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            published = str(port)
            if name != "api":  # the UI and the stores: loopback only, or not at all
                assert published.startswith("127.0.0.1:"), (name, published)
    assert services["dagster-webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    api_env = services["api"]["environment"]
    assert api_env["TWIN_API_KEYS"].startswith("${TWIN_API_KEYS:?")  # compose refuses without
    assert "TWIN_API_ALLOW_OPEN" not in api_env
    assert services["api"]["command"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]


def test_compose_gives_each_service_only_what_it_needs() -> None:
    services = compose()["services"]
    assert all("env_file" not in service for service in services.values())
    env = {name: set(service.get("environment") or {}) for name, service in services.items()}
    assert env["postgres"] == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    assert env["mongodb"] == {"MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"}
    # API keys only where requests are answered; store credentials only where they are used.
    assert [name for name, keys in env.items() if "TWIN_API_KEYS" in keys] == ["api"]
    assert "MONGODB_URI" not in env["api"] and "DAGSTER_POSTGRES_URL" not in env["api"]
    assert not {"DATABASE_URL", "MONGODB_URI"} & env["dagster-webserver"]
    for name in ("code-location", "dagster-daemon"):
        assert {"DATABASE_URL", "MONGODB_URI", "DAGSTER_POSTGRES_URL"} <= env[name]
    # Settings come from each service's environment, never from a .env copied into the image.
    for name in ("code-location", "dagster-webserver", "dagster-daemon", "api"):
        assert services[name]["environment"]["TWIN_ENV_FILE"] == ""
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_env_example_carries_a_key_placeholder_the_api_refuses() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    [key_line] = [line for line in lines if line.lstrip("# ").startswith("TWIN_API_KEYS=")]
    placeholder = key_line.lstrip("# ").split("=", 1)[1]
    with pytest.raises(UnsafeServeError, match="placeholder"):
        create_app(load_settings(api_keys=placeholder), bind_host="0.0.0.0")
