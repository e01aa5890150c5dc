"""The HNSW index of `embedded_chunks`: its definition, and builds sized to the data.

pgvector builds fast while the whole graph fits in `maintenance_work_mem` (in memory, with parallel
workers); past that it inserts the remaining tuples one by one into the on-disk graph, an order of
magnitude slower: at 1,000,000 x 384 and Postgres's 64MB default, 821,113 tuples in 24 minutes. A
build here sets `maintenance_work_mem` from the graph's estimated size (within the memory the caller
grants) and the parallel workers for its own session only, resets both after, and runs CONCURRENTLY,
so searches and writes go on while it builds. A changed definition (m, ef_construction, storage) is
built beside the old index, which is dropped only once the new one is valid.

An author with many chunks in a store shared with others also gets an index of their own, a partial
index `WHERE author = ...` (`ensure_author_indexes`): a search for one author of ten then walks only
that author's graph. At a million chunks, p50 2.9 ms at recall@10 0.994, against 9.1 ms and 0.890 on
the shared index with pgvector's iterative scan (benchmarks/results/million.md). The planner uses it
only for a literal author, so searches plan for their parameters (`search.HNSW_SETTINGS_SQL`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from twin_platform.storage.feature_store.writes import embedding_dimension
from twin_platform.storage.postgres import reconnect

TABLE = "embedded_chunks"
INDEX = "embedded_chunks_hnsw"
AUTHOR_INDEX_PREFIX = "embedded_chunks_author_hnsw_"
_BUILDING = "_build"  # suffix of a new index while it builds beside the old one
_LOCK_KEY = "twin-features:hnsw"

Storage = Literal["vector", "halfvec"]
_OPCLASS = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
_MiB = 2**20


@dataclass(frozen=True)
class HnswSpec:
    """What the index is: graph degree, build candidate list, and the precision of the indexed copy.

    `halfvec` indexes `embedding::halfvec(d)` (an expression index: the table keeps full vectors):
    half the graph memory and index size; searches then order by the same expression.
    """

    m: int = 16
    ef_construction: int = 128
    storage: Storage = "vector"

    def key_sql(self, dimensions: int) -> str:
        """The indexed expression, as searches must write it for the planner to use the index."""
        if self.storage == "halfvec":
            return f"(embedding::halfvec({dimensions}))"
        return "embedding"


@dataclass(frozen=True)
class BuildBudget:
    """What a build may take. None keeps the server's own setting (a server configured for it)."""

    memory_bytes: int | None = None
    shared_memory_bytes: int | None = None  # a parallel build holds its graph in /dev/shm
    workers: int | None = None


@dataclass(frozen=True)
class BuildProgress:
    """One reading of `pg_stat_progress_create_index` for the build of `index`."""

    index: str
    phase: str
    tuples_done: int
    tuples_expected: int
    seconds: float

    @property
    def percent(self) -> float:
        return 100.0 * self.tuples_done / self.tuples_expected if self.tuples_expected else 0.0


@dataclass(frozen=True)
class BuildReport:
    """What `ensure_index` did; `workers` is the parallel workers it allowed (Postgres may use fewer
    on a small table)."""

    built: bool
    reason: str  # missing, invalid, definition changed, up to date
    index: str = INDEX
    author: str | None = None  # an author's own index
    rows: int = 0
    seconds: float = 0.0
    memory_bytes: int = 0
    workers: int = 0
    graph_bytes: int = 0
    index_bytes: int = 0


@dataclass(frozen=True)
class IndexPolicy:
    """How the pipeline keeps the index: its definition, a build's budget, and the bulk threshold.

    A load of at least `bulk_load_rows` chunks into a store holding fewer than that writes the rows
    first and builds the index once at the end (see `defer_for_load`).
    """

    spec: HnswSpec = HnswSpec()
    budget: BuildBudget = BuildBudget()
    bulk_load_rows: int = 50_000
    author_index_rows: int = 100_000  # 0: no per-author indexes (see `wants_author_index`)


Progress = Callable[[BuildProgress], None]


def graph_bytes(rows: int, dimensions: int, m: int, storage: Storage = "vector") -> int:
    """pgvector's in-memory graph for `rows` vectors (hnswbuild.c, 64-bit).

    Per element: its header (120 B) and neighbour-list pointers; 2m candidates of 16 B on layer 0
    and m on each upper layer (1/(m-1) upper layers on average); the value (8 B header + 4 or 2 B
    per dimension); and four allocations' chunk headers. 1M x 384, m 16: 2.3 GB.
    """
    upper_layers = 1 / (m - 1)
    neighbours = (8 + 16 * 2 * m) + upper_layers * (8 + 16 * m) + 8 * (1 + upper_layers)
    value = 8 + dimensions * (4 if storage == "vector" else 2)
    return int(rows * (120 + neighbours + value + 4 * 16))


def build_memory(needed: int, current: int, budget: BuildBudget) -> tuple[int, int | None]:
    """(maintenance_work_mem, parallel workers or None for the server's) for a graph of `needed`.

    The graph plus 10% and 64 MB of slack, never below the server's setting nor above the budget.
    A parallel build keeps its graph in dynamic shared memory (/dev/shm): when the graph fits the
    budget but not there, one process building in memory beats several spilling to disk.
    """
    if budget.memory_bytes is None:
        return current, budget.workers
    wanted = int(needed * 1.1) + 64 * _MiB
    memory = max(current, min(wanted, budget.memory_bytes))
    shm = budget.shared_memory_bytes
    if budget.workers == 0 or shm is None or memory <= shm:
        return memory, budget.workers
    if wanted <= memory:
        return memory, 0
    return max(current, shm), budget.workers  # spills to disk either way: at least in parallel


def defer_for_load(missing: int, stored: int, bulk_load_rows: int) -> bool:
    """Whether a load of `missing` chunks into a store of `stored` should build the index after.

    One build of N rows runs in memory on every core; N inserts run one by one in the writing
    session, each walking the on-disk graph and WAL-logging its page changes (at 2,000 chunks/s from
    a GPU the inserts, not the model, set the pace). But while the index is gone, searches scan the
    table (4.3 µs a row: 432 ms at 1M). So only a big load into a store that is still small: under
    50,000 rows an exact scan takes about 0.2 s at worst, and 50,000 rows build in under a minute.
    """
    return missing >= bulk_load_rows and stored < bulk_load_rows


@contextmanager
def _index_lock(conn: psycopg.Connection) -> Iterator[None]:
    """One process changes the index at a time; the others wait, then find it built."""
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (_LOCK_KEY,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (_LOCK_KEY,))


def indexed_storage(conn: psycopg.Connection) -> Storage | None:
    """The storage of the valid HNSW index (from its operator class), None without one."""
    state = _state(conn, INDEX)
    if state is None or not state[0]:
        return None
    return "halfvec" if state[2] == _OPCLASS["halfvec"] else "vector"


def _state(conn: psycopg.Connection, name: str) -> tuple[bool, dict[str, str], str] | None:
    """(valid, reloptions, operator class) of an index, None when it does not exist."""
    row = conn.execute(
        "SELECT i.indisvalid, coalesce(c.reloptions, '{}'), o.opcname FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_opclass o ON o.oid = i.indclass[0]"
        " WHERE i.indexrelid = to_regclass(%s)",
        (name,),
    ).fetchone()
    if row is None:
        return None
    options = dict(option.split("=", 1) for option in row[1])
    return bool(row[0]), options, str(row[2])


def _matches(state: tuple[bool, dict[str, str], str], spec: HnswSpec) -> bool:
    _, options, opclass = state
    return (
        opclass == _OPCLASS[spec.storage]
        and int(options.get("m", 16)) == spec.m
        and int(options.get("ef_construction", 64)) == spec.ef_construction
    )


def drop_index(conn: psycopg.Connection) -> bool:
    """Drop the index without blocking searches or writes (before a bulk load); True if it was."""
    with _index_lock(conn):
        existed = _state(conn, INDEX) is not None
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(INDEX)))
    return existed


def ensure_index(
    conn: psycopg.Connection,
    spec: HnswSpec,
    budget: BuildBudget,
    progress: Progress | None = None,
    poll_s: float = 10.0,
) -> BuildReport:
    """Build the index if it is missing, invalid (an interrupted build) or defined otherwise.

    Costs one catalog query when the index is up to date. `conn` must be autocommit; `progress` is
    called every `poll_s` seconds while a build runs, from the calling thread.
    """
    with _index_lock(conn):
        return _ensure(conn, INDEX, None, spec, budget, progress, poll_s)


def author_index(author: str) -> str:
    """The name of an author's own index: a digest, since author names are free text."""
    return AUTHOR_INDEX_PREFIX + hashlib.sha256(author.encode()).hexdigest()[:16]


def wants_author_index(rows: int, store_rows: int, min_rows: int) -> bool:
    """Whether an author with `rows` of the store's `store_rows` chunks should have an own index.

    At least `min_rows` (0: never), and at most half the store: when one author holds most of it,
    a filter on them discards little and the shared index already serves them.
    """
    return 0 < min_rows <= rows and 2 * rows <= store_rows


def ensure_author_indexes(
    conn: psycopg.Connection,
    spec: HnswSpec,
    budget: BuildBudget,
    min_rows: int,
    progress: Progress | None = None,
    poll_s: float = 10.0,
) -> list[BuildReport]:
    """Give each author who `wants_author_index` a partial index, and drop the others' (CONCURRENTLY).

    Every author is looked at, not only the one just embedded: a new author changes the others'
    share. Reports the indexes built or dropped (reason "no longer wanted").
    """
    with _index_lock(conn):
        counts = dict(
            conn.execute("SELECT author, count(*) FROM embedded_chunks GROUP BY author").fetchall()
        )
        store_rows = sum(counts.values())
        wanted = {
            author_index(author): author
            for author, rows in counts.items()
            if wants_author_index(rows, store_rows, min_rows)
        }
        reports = [
            _ensure(conn, name, author, spec, budget, progress, poll_s)
            for name, author in sorted(wanted.items(), key=lambda item: item[1])
        ]
        existing = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND starts_with(indexname, %s)",
            (TABLE, AUTHOR_INDEX_PREFIX),
        ).fetchall()
        for (name,) in existing:
            if name not in wanted:  # the lock is held: a `_build` name is a dead try
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                )
                reports.append(BuildReport(built=False, reason="no longer wanted", index=name))
    return [report for report in reports if report.reason != "up to date"]


def _ensure(
    conn: psycopg.Connection,
    name: str,
    author: str | None,
    spec: HnswSpec,
    budget: BuildBudget,
    progress: Progress | None,
    poll_s: float,
) -> BuildReport:
    state = _state(conn, name)
    if state is not None and state[0] and _matches(state, spec):
        return BuildReport(built=False, reason="up to date", index=name, author=author)
    reason = "missing" if state is None else "invalid" if not state[0] else "definition changed"
    return _rebuild(conn, name, author, spec, budget, reason, state is not None, progress, poll_s)


def _rebuild(
    conn: psycopg.Connection,
    name: str,
    author: str | None,
    spec: HnswSpec,
    budget: BuildBudget,
    reason: str,
    replace: bool,
    progress: Progress | None,
    poll_s: float,
) -> BuildReport:
    started = time.perf_counter()
    staging = sql.Identifier(name + _BUILDING)
    conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(staging))  # a dead try
    where = (
        sql.SQL("") if author is None else sql.SQL(" WHERE author = {}").format(sql.Literal(author))
    )
    rows = _count(conn, sql.SQL("SELECT count(*) FROM {}{}").format(sql.Identifier(TABLE), where))
    dims = embedding_dimension(conn)
    needed = graph_bytes(rows, dims, spec.m, spec.storage)
    current = _count(conn, "SELECT pg_size_bytes(current_setting('maintenance_work_mem'))")
    memory, workers = build_memory(needed, current, budget)
    statement = sql.SQL(
        "CREATE INDEX CONCURRENTLY {name} ON {table} USING hnsw ({key} {opclass})"
        " WITH (m = {m}, ef_construction = {ef}){where}"
    ).format(
        name=staging,
        table=sql.Identifier(TABLE),
        key=sql.SQL(spec.key_sql(dims)),
        opclass=sql.SQL(_OPCLASS[spec.storage]),
        m=sql.Literal(spec.m),
        ef=sql.Literal(spec.ef_construction),
        where=where,
    )
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (f"{memory // 1024}kB",))
    if workers is not None:
        conn.execute(
            "SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(workers),)
        )
    try:
        _run_watched(conn, name, statement, rows, progress, poll_s)
    finally:
        conn.execute("RESET maintenance_work_mem")
        conn.execute("RESET max_parallel_maintenance_workers")
    if replace:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)))
    conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(staging, sql.Identifier(name)))
    used_workers = _count(conn, "SELECT current_setting('max_parallel_maintenance_workers')::int")
    return BuildReport(
        built=True,
        reason=reason,
        index=name,
        author=author,
        rows=rows,
        seconds=time.perf_counter() - started,
        memory_bytes=memory,
        workers=used_workers if workers is None else workers,
        graph_bytes=needed,
        index_bytes=_count(conn, "SELECT pg_relation_size(%s::regclass)", name),
    )


def _count(conn: psycopg.Connection, query: str | sql.Composable, *params: object) -> int:
    row = conn.execute(query, params or None).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row and row[0] is not None else 0


_PROGRESS_SQL = "SELECT phase, tuples_done FROM pg_stat_progress_create_index WHERE pid = %s"


def _run_watched(
    conn: psycopg.Connection,
    name: str,
    statement: sql.Composable,
    rows: int,
    progress: Progress | None,
    poll_s: float,
) -> None:
    """Run `statement` on `conn` in a helper thread; report its progress from this one.

    The build connection is busy for the whole statement, so a second connection reads the
    progress view (for the leader's pid: in a parallel build it counts every worker's tuples).
    """
    if progress is None:
        conn.execute(statement)
        return
    started = time.perf_counter()
    pid = conn.info.backend_pid
    with ThreadPoolExecutor(1, thread_name_prefix="hnsw-build") as pool, reconnect(conn) as watch:
        done = pool.submit(conn.execute, statement)
        try:
            while not _finished(done, poll_s):
                row = watch.execute(_PROGRESS_SQL, (pid,)).fetchone()
                if row is not None:
                    seconds = time.perf_counter() - started
                    progress(BuildProgress(name, str(row[0]), int(row[1] or 0), rows, seconds))
        except BaseException:
            if not done.done():  # interrupted here (a cancelled run): stop the server's build too
                conn.cancel_safe()
            raise


def _finished(future: Future[object], timeout_s: float) -> bool:
    """Wait up to `timeout_s`; True once done (raising the statement's error, if any)."""
    try:
        future.result(timeout=timeout_s)
    except TimeoutError:
        return False
    return True
