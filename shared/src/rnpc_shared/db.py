"""Async database engine and session helpers (SQLite for the embedded default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, closing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, LargeBinary, MetaData, bindparam, create_engine, event, text
from sqlalchemy.engine import URL, Connection, Dialect, Engine, Row, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import pydantic_core
from sqlmodel import Session, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

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
    # A commit is on disk when it returns (WAL's default sync level is a build option). `Units`
    # lowers it per unit for what may be flushed a moment later (`durable=False`).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _no_auto_checkpoint(dbapi_connection: Any, _record: Any) -> None:
    """A connection that never copies the WAL into the database file when it commits: the commit
    that crossed the WAL's 1,000 pages did it, with two fsyncs, inside one unlucky request."""
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


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

    def __init__(self, database_url: str, *, threads: int = 1, name: str = "db-units", auto_checkpoint: bool = True) -> None:
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
            if not auto_checkpoint:
                event.listen(self._sync_engine, "connect", _no_auto_checkpoint)
            self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
            self._local = threading.local()
            self._connections: set[Connection] = set()
            self._lock = threading.Lock()
        else:
            self._async_engine = make_engine(database_url, pool_size=threads)

    async def run(self, unit: Callable[..., R], *args: Any, durable: bool = True) -> R:
        """`durable=False`: the commit returns before it is flushed to disk. It survives a crash of
        this process (and of the database server's processes) but not a power loss of the database
        host in the moment before the flush: SQLite's synchronous=NORMAL (flushed at the next
        checkpoint, see `GroupCommit`), PostgreSQL's synchronous_commit=off (flushed by its WAL
        writer within 3 × wal_writer_delay, 0.6 s by default)."""
        if self._async_engine is not None:
            async with self._async_engine.connect() as connection, connection.begin():
                if not durable:
                    await connection.exec_driver_sql("SET LOCAL synchronous_commit TO off")
                return await connection.run_sync(unit, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_on_thread, unit, args, durable)

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

    def _run_on_thread(self, unit: Callable[..., R], args: tuple[Any, ...], durable: bool = True) -> R:
        assert self._sync_engine is not None
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._sync_engine.connect()
            self._local.durable = True  # _sqlite_pragmas: synchronous=FULL
            with self._lock:
                self._connections.add(connection)
        try:
            if durable != self._local.durable:  # set between transactions, only when it changes
                _pragma(connection, "PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
                self._local.durable = durable
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


_Compiled = tuple[str, list[str], dict[str, Any], dict[str, Any]]  # SQL, parameter names in order, bind processors, literals


class Prepared:
    """A Core statement on the path of every audited read (the read and its audit row), compiled
    once per dialect and run on the driver's cursor in the caller's transaction. SQLAlchemy's work
    per execution (cache key, execution context, result object) cost more than SQLite's own: about
    0.3 ms of a stored read's 2 ms on the 2-core machine.

    Values are bound through their types' bind processors, as `Connection.execute` binds them;
    rows come back as the driver gives them (no result types), so use it for columns whose
    driver value is already the Python one (integers, text, bytes)."""

    def __init__(self, statement: ClauseElement, *, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def execute(self, connection: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run once; the rows it returns (RETURNING, SELECT), else []."""
        sql, positions, processors, defaults = self._for(connection.dialect)
        with closing(connection.connection.cursor()) as cursor:
            cursor.execute(sql, _bound(params, positions, processors, defaults))
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def executemany(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        sql, positions, processors, defaults = self._for(connection.dialect)
        with closing(connection.connection.cursor()) as cursor:
            cursor.executemany(sql, [_bound(row, positions, processors, defaults) for row in rows])

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = cast(SQLCompiler, self._statement.compile(dialect=dialect, column_keys=self._column_keys))
            if not statement.positional or statement.positiontup is None:
                raise ValueError(f"{dialect.name}: Prepared needs a positional paramstyle, not {dialect.paramstyle}")
            binds = {name: statement.binds[name] for name in statement.positiontup}
            processors = {name: processor for name, bind in binds.items() if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))}
            compiled = self._compiled[dialect.name] = (
                statement.string, list(statement.positiontup), processors, {name: bind.value for name, bind in binds.items()}
            )
        return compiled


def _bound(params: dict[str, Any], positions: list[str], processors: dict[str, Any], defaults: dict[str, Any]) -> tuple[Any, ...]:
    bound = []
    for name in positions:
        value = params.get(name, defaults[name])  # a literal in the statement is a default
        bound.append(processors[name](value) if name in processors else value)
    return tuple(bound)


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

    `run(job, durable=False)` is for a write that changes nothing else (the audit row of a read):
    a batch of only such jobs commits without waiting for the disk (`Units.run`), since an fsync
    (~0.5 ms here, tens of ms at times) was most of a stored read's time. A batch with any other
    job is flushed before its callers return.

    On SQLite the writer never checkpoints when it commits: a checkpoint runs on a connection of
    its own `CHECKPOINT_AFTER_S` after a batch (none pending), which also puts the batches that
    were not flushed on disk. It has connections of its own: a request that holds a pooled
    connection while it awaits its write must never wait for that same pool.
    """

    def __init__(self, database_url: str, max_batch: int = 256, *, on_checkpoint_error: Callable[[], None] | None = None) -> None:
        self.units = Units(database_url, threads=1, name="group-commit", auto_checkpoint=False)
        sqlite = make_url(database_url).get_backend_name() == "sqlite"
        self._checkpointer = Units(database_url, threads=1, name="wal-checkpoint") if sqlite else None
        self._on_checkpoint_error = on_checkpoint_error
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Job, bool, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._checkpoint: asyncio.Task[None] | None = None

    async def run(self, job: Callable[[Connection], R], *, durable: bool = True) -> R:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_forever(), name="group-commit")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, durable, future))
        return await future

    async def checkpoint(self) -> None:
        """Copy the WAL into the database file, flushing both (SQLite; nothing to do on PostgreSQL).
        PASSIVE: it waits for no reader or writer, so the group commit's batches go on meanwhile."""
        if self._checkpointer is not None:
            await self._checkpointer.run(_checkpoint)

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
        if self._checkpoint is not None:
            self._checkpoint.cancel()
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        await self.units.close()
        if self._checkpointer is not None:
            try:
                await self.checkpoint()  # what was committed without a flush is flushed before we exit
            except Exception:  # e.g. the disk is gone: the rest of the shutdown still runs
                log.exception("WAL checkpoint at shutdown failed")
            await self._checkpointer.close()

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

    async def _write(self, batch: list[tuple[Job, bool, asyncio.Future[Any]]]) -> None:
        durable = any(durable for _job, durable, _future in batch)
        try:
            results = await self.units.run(_run_jobs, [job for job, _durable, _future in batch], durable=durable)
        except Exception:
            for job, durable, future in batch:  # alone, so only the failing job fails
                await self._settle(job, durable, future)
            self._schedule_checkpoint()
            return
        self._schedule_checkpoint()
        for (_job, _durable, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _settle(self, job: Job, durable: bool, future: asyncio.Future[Any]) -> None:
        try:
            (result,) = await self.units.run(_run_jobs, [job], durable=durable)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)

    def _schedule_checkpoint(self) -> None:
        if self._checkpointer is not None and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.create_task(self._checkpoint_soon(), name="wal-checkpoint")

    async def _checkpoint_soon(self) -> None:
        await asyncio.sleep(CHECKPOINT_AFTER_S)  # a schedule: one checkpoint for the batches of this interval
        try:
            await self.checkpoint()
        except Exception:  # the next batch schedules another; the WAL only grows meanwhile
            log.exception("WAL checkpoint failed")
            if self._on_checkpoint_error is not None:
                self._on_checkpoint_error()


CHECKPOINT_AFTER_S = 1.0  # a batch committed without a flush is on disk within about this (SQLite)


def _checkpoint(connection: Connection) -> None:
    _pragma(connection, "PRAGMA wal_checkpoint(PASSIVE)")


def _pragma(connection: Connection, statement: str) -> None:
    """On the driver's cursor: through SQLAlchemy, the statement would begin a transaction."""
    with closing(connection.connection.cursor()) as cursor:
        cursor.execute(statement)


def _run_jobs(connection: Connection, jobs: list[Job]) -> list[Any]:
    results = [job(connection) for job in jobs]
    deferred: dict[Any, list[Any]] = {}
    for result in results:
        if isinstance(result, Deferred):
            deferred.setdefault(result.flush, []).append(result.item)
    for flush, items in deferred.items():
        flush(connection, items)
    return [result.result if isinstance(result, Deferred) else result for result in results]


def _refuse(batch: list[tuple[Job, bool, asyncio.Future[Any]]]) -> None:
    """Callers of writes that will not be made (the writer stopped) get an error, never a hang."""
    for _job, _durable, future in batch:
        if not future.done():
            future.set_exception(RuntimeError("shutting down: the write was not made"))
