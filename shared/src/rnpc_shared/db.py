"""Async database engine and session helpers (SQLite for the embedded default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, LargeBinary, MetaData, bindparam, create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, Row, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import pydantic_core
from sqlmodel import Session, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# Set before any table is declared so Alembic sees stable constraint names on every backend.
SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata
R = TypeVar("R")
P = ParamSpec("P")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone; we restore it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class utf8_bytes(FunctionElement[bytes]):  # noqa: N801  # used like a SQL function: utf8_bytes(column)
    """A text column read as its UTF-8 bytes, for values that are sent on as bytes (an event to the
    broker, a stored document to an HTTP client): decoding ~64 KB of non-ASCII JSON to a str and
    encoding it back cost ~0.14 ms per read. SQLite: `CAST(x AS BLOB)`, the stored bytes.
    PostgreSQL: `convert_to(x, 'UTF8')` (a `::bytea` cast would read backslashes as escapes)."""

    type = LargeBinary()
    inherit_cache = True
    name = "utf8_bytes"

    def __init__(self, column: ColumnElement[str]) -> None:
        super().__init__(column)


@compiles(utf8_bytes, "postgresql")
def _utf8_bytes_postgresql(element: utf8_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"convert_to({compiler.process(element.clauses, **kw)}, 'UTF8')"


@compiles(utf8_bytes, "sqlite")
def _utf8_bytes_sqlite(element: utf8_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS BLOB)"


def utc_now() -> datetime:
    return datetime.now(UTC)


def json_text(value: object) -> str:
    """Compact JSON text of plain values: pydantic-core's serializer, several times the stdlib's
    speed on the ~75 KB evidence and recommendation documents. Not for hashing: canonical
    hashes keep `canonical_json` (sorted keys, the stdlib's number format)."""
    return pydantic_core.to_json(value).decode()


parse_json = pydantic_core.from_json  # the matching reader (values as json.loads gives them)
# JSON columns are written and read with these, on every engine of ours.
_JSON_CODEC: dict[str, Any] = {"json_serializer": json_text, "json_deserializer": parse_json}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # DBAPI objects: untyped
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while the consumer writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_connect_args(url: URL) -> dict[str, Any]:
    """What every SQLite engine of ours (async or a `Units`' own) needs: the file's directory, and
    a lock wait of 30 s (the pragmas come with `_sqlite_pragmas`)."""
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return {"timeout": 30}


def serialise(connection: Connection, key: str) -> None:
    """Transactions that call this with the same `key` run it one after the other: the second
    waits here until the first commits, then its reads see what the first wrote. For joins that
    replicas complete concurrently (each stores its part, each must see the other's): under READ
    COMMITTED, two that ran side by side would each miss the other's part and both wait forever.

    PostgreSQL: a transaction-level advisory lock on a 64-bit hash of `key`. SQLite: nothing to
    do, a database file has one writer process (each service runs one consumer)."""
    if connection.dialect.name == "postgresql":
        lock_id = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)
        connection.execute(_ADVISORY_XACT_LOCK, {"lock_id": lock_id})


_ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:lock_id)")


def make_engine(database_url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """`pool_size` fixes the pool (no overflow): e.g. a `Units`' connections, one per thread."""
    url = make_url(database_url)
    pool: dict[str, Any] = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args=_sqlite_connect_args(url), **_JSON_CODEC, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **_JSON_CODEC, **(pool or {"pool_size": 5, "max_overflow": 5}))


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency body: one session per request; the route owns commit."""
    async with factory() as session:
        yield session


async def run_sync(session: AsyncSession, use_case: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """A sync use case (a plain function of a `Session`, as the consumer's handlers are) in an
    async session's transaction: `AsyncSession.run_sync`, typed with sqlmodel's `Session` it hands over."""
    return await session.run_sync(use_case, *args, **kwargs)  # type: ignore[arg-type]  # sqlmodel's sync_session_class


@functools.cache
def of_version(table: type[SQLModel]) -> Any:
    """The rows of `table` for one record version (every per-version table has both columns), a
    Select built once per table with the parameters of `version_params`: building a statement
    per call cost more than running it."""
    return select(table).where(
        table.recurrence_id == bindparam("recurrence_id"),  # type: ignore[attr-defined]
        table.version == bindparam("version"),  # type: ignore[attr-defined]
    )


def version_params(recurrence_id: str, version: int) -> dict[str, Any]:
    return {"recurrence_id": recurrence_id, "version": version}


@functools.cache
def _row_of_version(table: type[SQLModel]) -> Any:
    return select(table.__table__).where(of_version(table).whereclause)  # type: ignore[attr-defined]


def find_by_version(session: Session, table: type[SQLModel], recurrence_id: str, version: int) -> Row[Any] | None:
    """The row of `table` for one record version: a plain row read on the session's connection
    (write it back with a Core statement). Not an entity: the ORM's query (its autoflush of the
    batch's pending writes, the entity's construction) cost several times the statement.
    Async callers: `await run_sync(session, find_by_version, table, recurrence_id, version)`."""
    return session.connection().execute(_row_of_version(table), version_params(recurrence_id, version)).first()


@functools.cache
def _declared_defaults(table: type[SQLModel]) -> tuple[tuple[str, Any, Callable[[], Any] | None], ...]:
    """(column, default, default factory) of each of `table`'s columns that has one."""
    return tuple(
        (name, field.default, cast(Callable[[], Any] | None, field.default_factory))
        for name, field in table.model_fields.items()
        if not field.is_required()
    )


def new_row(table: type[SQLModel], **values: Any) -> dict[str, Any]:
    """A new row of `table` as a Core insert's parameters: `values`, and every other column's
    default as the model declares it (a factory's fresh id or timestamp), as its entity would
    have had without being built."""
    defaults = {
        name: factory() if factory is not None else default
        for name, default, factory in _declared_defaults(table)
        if name not in values
    }
    return defaults | values


Job = Callable[[Connection], Any]  # a unit of work: a plain function of a connection in a transaction


class Units:
    """Runs a unit of work (a plain function of a sync `Connection`) in one transaction, committed
    when it returns and rolled back if it raises, with ONE hop from the event loop.

    On SQLite, aiosqlite hops to its worker thread for every DBAPI call (cursor, execute, fetch,
    close, commit): a three-statement write is ~11 hops and ~25 context switches, more CPU than the
    statements. Here the unit runs whole on a thread of ours holding its own pysqlite connection.
    On PostgreSQL it runs through `AsyncConnection.run_sync` (asyncpg's awaits are cheap).
    A connection that failed is closed; the next unit opens a fresh one.
    """

    def __init__(self, database_url: str, *, threads: int = 1, name: str = "db-units") -> None:
        url = make_url(database_url)
        self._async_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        if url.get_backend_name() == "sqlite":
            # NullPool: each thread keeps its connection itself (no pool checkout per unit).
            self._sync_engine = create_engine(
                url.set(drivername="sqlite"),
                connect_args=_sqlite_connect_args(url) | {"check_same_thread": False},
                poolclass=NullPool,
                **_JSON_CODEC,
            )
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
            self._local = threading.local()
            self._connections: set[Connection] = set()
            self._lock = threading.Lock()
        else:
            self._async_engine = make_engine(database_url, pool_size=threads)

    async def run(self, unit: Callable[..., R], *args: Any) -> R:
        if self._async_engine is not None:
            async with self._async_engine.connect() as connection, connection.begin():
                return await connection.run_sync(unit, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_on_thread, unit, args)

    @asynccontextmanager
    async def steps(self) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
        """Units with awaits between them (e.g. a network call), as `run(step, *args)`.

        On PostgreSQL they share one transaction, committed at the end, so what a step locked
        (`FOR UPDATE SKIP LOCKED`) stays locked against other replicas across the awaits. On
        SQLite each step is its own unit, one hop each: pysqlite opens no transaction for a read,
        so none spanned the awaits there anyway (and a database file has one writer process)."""
        if self._async_engine is None:
            yield self.run
            return
        async with self._async_engine.connect() as connection, connection.begin():

            async def run(unit: Callable[..., R], *args: Any) -> R:
                return await connection.run_sync(unit, *args)

            yield run

    def _run_on_thread(self, unit: Callable[..., R], args: tuple[Any, ...]) -> R:
        assert self._sync_engine is not None
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._sync_engine.connect()
            with self._lock:
                self._connections.add(connection)
        try:
            with connection.begin():
                return unit(connection, *args)
        except Exception:
            self._local.connection = None
            with self._lock:
                self._connections.discard(connection)
            connection.close()
            raise

    async def close(self) -> None:
        """After the units in flight have finished (a unit on a thread cannot be interrupted)."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
            return
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            connection.close()
        assert self._sync_engine is not None
        self._sync_engine.dispose()


@dataclass(frozen=True)
class Deferred:
    """A job's item that the batch writes together with the other jobs' items of the same
    `flush` (e.g. audit rows: one chain call for the whole batch), after every job has run."""

    flush: Callable[[Connection, list[Any]], None]
    item: Any
    result: Any = None  # what the job's caller gets


class GroupCommit:
    """Small independent writes of concurrent requests (an audit row, a used token id) share one
    transaction and one commit, as a database's own group commit does for its log.

    `await run(job)` returns once the job's transaction has committed, so "written before the
    response" still holds. A job may return a `Deferred` item: the batch writes those together.
    One writer (a `Units` of one thread: a whole batch is one hop) means no two of these writes
    contend for SQLite's write lock. If a batch fails, each of its jobs is retried alone, so one
    bad job fails only itself.

    It has connections of its own: a request that holds a pooled connection while it awaits its
    write must never wait for that same pool.
    """

    def __init__(self, database_url: str, max_batch: int = 256) -> None:
        self.units = Units(database_url, threads=1, name="group-commit")
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def run(self, job: Callable[[Connection], R]) -> R:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_forever(), name="group-commit")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def stop(self) -> None:
        """Stop writing: the batch in flight finishes and its callers get its outcome; queued
        callers get an error."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():
            _refuse([self._queue.get_nowait()])

    async def close(self) -> None:
        await self.stop()
        await self.units.close()

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            writing = asyncio.ensure_future(self._write(batch))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:  # stopped mid-batch: a unit on a thread runs to its end anyway
                await writing
                raise

    async def _write(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.units.run(_run_jobs, [job for job, _ in batch])
        except Exception:
            for job, future in batch:  # alone, so only the failing job fails
                await self._settle(job, future)
            return
        for (_job, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _settle(self, job: Job, future: asyncio.Future[Any]) -> None:
        try:
            (result,) = await self.units.run(_run_jobs, [job])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)


def _run_jobs(connection: Connection, jobs: list[Job]) -> list[Any]:
    results = [job(connection) for job in jobs]
    deferred: dict[Any, list[Any]] = {}
    for result in results:
        if isinstance(result, Deferred):
            deferred.setdefault(result.flush, []).append(result.item)
    for flush, items in deferred.items():
        flush(connection, items)
    return [result.result if isinstance(result, Deferred) else result for result in results]


def _refuse(batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
    """Callers of writes that will not be made (the writer stopped) get an error, never a hang."""
    for _job, future in batch:
        if not future.done():
            future.set_exception(RuntimeError("shutting down: the write was not made"))
