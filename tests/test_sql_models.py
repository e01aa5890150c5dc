"""SQL models: refs and sources resolved, dependencies from sqlglot's parse, materializations
(view, table, incremental) and YAML tests, against the real Postgres."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from twin_platform.storage import sql_models
from twin_platform.storage.postgres import connect


def write_project(folder: Path, models: dict[str, str], schema: str = "models: []") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sources.yml").write_text(
        "sources:\n  - name: raw\n    schema: public\n    tables:\n"
        "      - {name: sql_model_events, assets: [events_asset]}\n"
    )
    (folder / "schema.yml").write_text(schema)
    for name, text in models.items():
        (folder / f"{name}.sql").write_text(text)
    return folder


@pytest.fixture
def conn(postgres_url: str) -> psycopg.Connection:
    with connect(postgres_url) as connection:
        connection.execute("DROP TABLE IF EXISTS sql_model_events")
        connection.execute("CREATE TABLE sql_model_events (day date, kind text, n int)")
        connection.execute(
            "INSERT INTO sql_model_events VALUES ('2026-01-01', 'a', 1), ('2026-01-01', 'b', 2),"
            " ('2026-01-02', 'a', 5)"
        )
        yield connection


def test_dependencies_come_from_the_parse_tree(tmp_path: Path) -> None:
    project = sql_models.load_project(
        write_project(
            tmp_path,
            {
                "daily": "-- Events per day.\nSELECT day, sum(n) AS n FROM {{ source('raw', 'sql_model_events') }} GROUP BY day",
                "busy_days": "-- materialized: view\nWITH d AS (SELECT * FROM {{ ref('daily') }})"
                " SELECT * FROM d WHERE n > 2",
            },
        )
    )
    busy = project.models["busy_days"]
    assert busy.refs == ("daily",) and busy.materialized == "view"
    assert project.models["daily"].sources[0].assets == ("events_asset",)
    assert [m.name for m in project.ordered()] == ["daily", "busy_days"]
    assert "analytics.daily" in sql_models.compile_model(project, busy)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SELECT * FROM {{ ref('nope') }}", "names no model"),
        ("SELECT * FROM {{ source('raw', 'nope') }}", "not in sources.yml"),
        ("SELECT * FROM public.undeclared", "without ref"),
        ("SELECT FROM WHERE", "does not parse"),
        ("-- materialized: incremental\nSELECT 1 AS x", "unique_key"),
    ],
)
def test_bad_models_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(sql_models.SqlModelError, match=message):
        sql_models.load_project(write_project(tmp_path, {"broken": text}))


def test_table_view_and_incremental_builds_with_yaml_tests(
    tmp_path: Path, conn: psycopg.Connection
) -> None:
    project = sql_models.load_project(
        write_project(
            tmp_path,
            {
                "per_day": "-- materialized: incremental\n-- unique_key: day\n"
                "SELECT day, sum(n) AS n FROM {{ source('raw', 'sql_model_events') }}"
                " {% if is_incremental() %}WHERE day >= (SELECT max(day) FROM {{ this }}){% endif %}"
                " GROUP BY day",
                "kinds": "-- materialized: view\nSELECT DISTINCT kind FROM {{ source('raw', 'sql_model_events') }}",
            },
            "models:\n  - name: per_day\n    tests: [{row_count: {min: 1, max: 3}}]\n"
            "    columns:\n      - name: day\n        tests: [not_null, unique]\n"
            "  - name: kinds\n    columns:\n      - name: kind\n"
            "        tests: [{accepted_values: {values: [a, b]}}]\n",
        ),
    )
    per_day, kinds = project.models["per_day"], project.models["kinds"]
    assert sql_models.run_model(conn, project, per_day) == 2
    assert sql_models.run_model(conn, project, kinds) == 2
    assert all(
        r.passed for r in sql_models.run_tests(conn, per_day) + sql_models.run_tests(conn, kinds)
    )
    # A late event for the last day and a new day: the increment replaces day 2 and adds day 3.
    conn.execute(
        "INSERT INTO sql_model_events VALUES ('2026-01-02', 'c', 1), ('2026-01-03', 'a', 7)"
    )
    assert sql_models.run_model(conn, project, per_day) == 3
    rows = dict(conn.execute("SELECT day::text, n FROM analytics.per_day ORDER BY day").fetchall())
    assert rows == {"2026-01-01": 3, "2026-01-02": 6, "2026-01-03": 7}
    failing = {r.name: r.passed for r in sql_models.run_tests(conn, kinds)}
    assert failing == {"accepted_values_kind": False}  # 'c' is not an accepted value
    assert sql_models.run_model(conn, project, kinds) == 3  # a view: rebuilt, never stale


def test_the_project_models_compile() -> None:
    project = sql_models.load_project()
    assert {
        "eval_results_over_time",
        "prompt_monitoring_daily",
        "dataset_stats",
    } <= project.models.keys()
    assert project.models["embedding_coverage"].refs == ("author_corpus_stats",)
