"""The embedded servers, for real: start, reuse across processes, faults, stop, restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from twin_platform import servers
from twin_platform.servers import process
from twin_platform.servers.common import ServiceError
from twin_platform.settings import load_settings


def _in_another_process(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return result.stdout.strip()


def test_status_reports_running_services_with_uris(postgres_url: str, mongodb_url: str) -> None:
    statuses = {s.name: s for s in servers.status(load_settings())}
    assert statuses["postgres"].state == "running"
    assert statuses["postgres"].uri == postgres_url
    assert statuses["postgres"].uri.startswith("postgresql://")
    assert statuses["postgres"].detail.startswith("PostgreSQL 18")
    assert statuses["mongodb"].state == "running"
    assert statuses["mongodb"].uri == mongodb_url
    assert mongodb_url.startswith("mongodb://127.0.0.1:")


def test_second_process_reuses_the_running_servers(postgres_url: str, mongodb_url: str) -> None:
    settings = load_settings()
    mongo_pid = process.read_record(settings.run_dir / "mongo.pid").pid  # type: ignore[union-attr]
    with psycopg.connect(postgres_url) as conn:
        pg_pid = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    code = (
        "from twin_platform import servers; from twin_platform.settings import load_settings; "
        "print(servers.postgres_uri(load_settings())); print(servers.mongodb_uri(load_settings()))"
    )
    assert _in_another_process(code).splitlines() == [postgres_url, mongodb_url]
    assert process.read_record(settings.run_dir / "mongo.pid").pid == mongo_pid  # type: ignore[union-attr]
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == pg_pid


def test_schema_is_migrated_once(postgres_url: str) -> None:
    from twin_platform.storage import postgres as pg_store

    assert pg_store.migrate(postgres_url) == []  # already applied at start
    with pg_store.connect(postgres_url) as conn:
        info = pg_store.describe(conn)
    assert "vector" in info["extensions"]
    assert info["migrations"] == [version for version, _ in pg_store.migration_files()]


def test_mongo_recovers_from_a_killed_server_and_a_stale_pid_file(mongodb_url: str) -> None:
    settings = load_settings()
    pid_file = settings.run_dir / "mongo.pid"
    record = process.read_record(pid_file)
    assert record is not None
    process.terminate(record)  # the server died; its pid file remains
    assert pid_file.exists()
    assert servers.status(load_settings())[1].state == "stopped"
    new_uri = servers.mongodb_uri(load_settings())
    assert process.read_record(pid_file).pid != record.pid  # type: ignore[union-attr]
    assert servers.status(load_settings())[1].uri == new_uri


def test_corrupt_pid_file_is_treated_as_stale(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("not json")
    assert process.read_record(pid_file) is None
    assert not pid_file.exists()


def test_mongo_takes_another_port_when_its_port_is_taken(twin_home: Path) -> None:
    home = twin_home / "port-taken"
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        settings = load_settings(home=home, mongo_port=taken)
        try:
            uri = servers.mongodb_uri(settings)
            assert uri != f"mongodb://127.0.0.1:{taken}/"
            servers.mongo.ping(uri)
        finally:
            servers.mongo.stop_embedded(settings.run_dir)


def test_bad_database_url_gives_one_clear_line(twin_home: Path) -> None:
    settings = load_settings(database_url="postgresql://twin:s3cret@127.0.0.1:1/twin")
    with pytest.raises(ServiceError) as err:
        servers.postgres_uri(settings)
    message = str(err.value)
    assert "\n" not in message
    assert "DATABASE_URL" in message
    assert "s3cret" not in message and "***" in message
    assert servers.status(settings)[0].state == "unreachable"


def test_bad_mongodb_uri_gives_one_clear_line(twin_home: Path) -> None:
    port = process.free_port()
    with pytest.raises(ServiceError, match="MONGODB_URI"):
        servers.mongodb_uri(load_settings(mongodb_uri=f"mongodb://127.0.0.1:{port}/"))


def test_unwritable_home_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ServiceError, match="TWIN_HOME"):
        servers.mongodb_uri(load_settings(home=blocker / "home"))


def test_data_survives_a_restart(postgres_url: str, mongodb_url: str) -> None:
    settings = load_settings()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS restart_probe (v text)")
        conn.execute("INSERT INTO restart_probe VALUES ('kept')")
    from twin_platform.storage import warehouse

    warehouse.connect(mongodb_url, "probe")["notes"].insert_one({"v": "kept"})

    assert sorted(servers.down(settings)) == ["mongodb", "postgres"]
    assert [s.state for s in servers.status(settings)] == ["stopped", "stopped"]

    statuses = servers.up(settings)
    assert [s.state for s in statuses] == ["running", "running"]
    pg_uri, mongo_uri = servers.postgres_uri(load_settings()), servers.mongodb_uri(load_settings())
    with psycopg.connect(pg_uri) as conn:
        assert conn.execute("SELECT count(*) FROM restart_probe").fetchone()[0] == 1
    assert warehouse.connect(mongo_uri, "probe")["notes"].count_documents({"v": "kept"}) == 1


def test_pid_file_of_a_reused_pid_is_not_trusted(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    # Our own pid, but with a different start time: the pid was reused by another program.
    pid_file.write_text(
        json.dumps({"pid": os.getpid(), "create_time": 1.0, "command": [], "info": {}})
    )
    assert process.read_record(pid_file) is None
    assert not pid_file.exists()


def test_embedded_postgres_gets_its_shared_buffers_and_survives_an_impossible_one() -> None:
    """Applied at first start; a size the machine cannot give is one clear error that loses nothing."""
    import shutil
    import tempfile

    from twin_platform.servers import postgres

    home = Path(tempfile.mkdtemp(prefix="twin-test-pg-"))  # not tmp_path: see conftest.twin_home
    data = home / "postgres"
    (home / "run").mkdir()

    def shared_buffers(uri: str) -> str:
        with psycopg.connect(uri) as conn:
            return str(conn.execute("SHOW shared_buffers").fetchone()[0])

    try:
        uri = postgres.start_embedded(data, "64MB")
        assert shared_buffers(uri) == "64MB"
        with psycopg.connect(uri) as conn:
            conn.execute("CREATE TABLE kept AS SELECT 1 AS v")
        postgres.stop_embedded(data)

        with pytest.raises(ServiceError, match="TWIN_POSTGRES_SHARED_BUFFERS"):
            postgres.start_embedded(data, "4000GB")

        uri = postgres.start_embedded(data, "96MB")
        assert shared_buffers(uri) == "96MB"
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (1,)
    finally:
        postgres.stop_embedded(data)
        shutil.rmtree(home, ignore_errors=True)


def test_a_port_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    """Restarting a server at once must work: its closed connections linger in TIME_WAIT."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and nx-27017 do
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not process.port_is_free(port)
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: its port enters TIME_WAIT
    assert process.port_is_free(port)


def _own_mongo(twin_home: Path, name: str) -> tuple[Path, Path, int, str]:
    """An embedded MongoDB of its own, started (and so owned) by this process."""
    home = twin_home / name
    data, run_dir, port = home / "mongo", home / "run", process.free_port()
    return data, run_dir, port, servers.mongo.start_embedded(data, run_dir, port)


def _start_in_another_process(data: Path, run_dir: Path, port: int, unresponsive_s: float) -> str:
    """What a run worker does: ask for the server (it did not start it, so it does not own it)."""
    code = (
        "import sys; from pathlib import Path; from twin_platform.servers import mongo\n"
        "try:\n"
        f"    print(mongo.start_embedded(Path({str(data)!r}), Path({str(run_dir)!r}), {port},"
        f" unresponsive_s={unresponsive_s}))\n"
        "except mongo.ServiceError as exc:\n"
        "    print('ServiceError:', exc)\n"
    )
    return _in_another_process(code)


def test_a_slow_mongo_is_waited_for_not_killed(twin_home: Path) -> None:
    """A ping over a second (a busy machine, a long fsync) must not make a process kill the
    server that every other process is writing to."""
    data, run_dir, port, uri = _own_mongo(twin_home, "slow-mongo")
    record = process.read_record(run_dir / "mongo.pid")
    assert record is not None
    os.kill(record.pid, signal.SIGSTOP)  # silent for 3 s, then itself again
    resume = threading.Timer(3, os.kill, (record.pid, signal.SIGCONT))
    resume.start()
    try:
        assert _start_in_another_process(data, run_dir, port, unresponsive_s=60) == uri
        assert process.read_record(run_dir / "mongo.pid") == record
        servers.mongo.ping(uri)
    finally:
        resume.join()
        servers.mongo.stop_embedded(run_dir)


def test_a_hung_mongo_is_restarted_only_by_its_owner(twin_home: Path) -> None:
    data, run_dir, port, _ = _own_mongo(twin_home, "hung-mongo")
    record = process.read_record(run_dir / "mongo.pid")
    assert record is not None
    os.kill(record.pid, signal.SIGSTOP)
    try:
        refused = _start_in_another_process(data, run_dir, port, unresponsive_s=2)
        assert refused.startswith("ServiceError:") and "has not answered for 2 s" in refused
        assert "twin services down" in refused and record.is_alive()

        new_uri = servers.mongo.start_embedded(data, run_dir, port, unresponsive_s=2)
        restarted = process.read_record(run_dir / "mongo.pid")
        assert restarted is not None and restarted.pid != record.pid and not record.is_alive()
        servers.mongo.ping(new_uri)
    finally:
        if record.is_alive():
            os.kill(record.pid, signal.SIGKILL)
        servers.mongo.stop_embedded(run_dir)


def test_an_orphaned_hung_mongo_is_restarted_by_whoever_asks(twin_home: Path) -> None:
    """The process that started the server has exited (`twin services up`): after the long
    silence, the next process to ask takes over."""
    data, run_dir, port, _ = _own_mongo(twin_home, "orphan-mongo")
    pid_file = run_dir / "mongo.pid"
    record = process.read_record(pid_file)
    assert record is not None
    stored = json.loads(pid_file.read_text())
    stored["info"] |= {"owner_pid": record.pid, "owner_started": 1.0}  # a process long gone
    pid_file.write_text(json.dumps(stored))
    os.kill(record.pid, signal.SIGSTOP)
    try:
        new_uri = _start_in_another_process(data, run_dir, port, unresponsive_s=2)
        assert new_uri.startswith("mongodb://") and not record.is_alive()
        servers.mongo.ping(new_uri)
    finally:
        if record.is_alive():
            os.kill(record.pid, signal.SIGKILL)
        servers.mongo.stop_embedded(run_dir)
