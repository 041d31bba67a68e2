"""Async database engine and session helpers (SQLite for the embedded default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from typing import Any, TypeVar

from sqlmodel import SQLModel, select
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
T = TypeVar("T", bound=SQLModel)
R = TypeVar("R")


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


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_engine(database_url: str, *, pool_size: int | None = None) -> AsyncEngine:
    """`pool_size` fixes the pool (no overflow): e.g. 1 for a single writer's own connection."""
    url = make_url(database_url)
    pool: dict[str, Any] = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:  # DBAPI objects: untyped
            cursor = dbapi_connection.cursor()
            # WAL lets the API read while the consumer writes; busy_timeout waits instead of failing.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **(pool or {"pool_size": 5, "max_overflow": 5}))


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency body: one session per request; the route owns commit."""
    async with factory() as session:
        yield session


async def find_by_version(session: AsyncSession, table: type[T], recurrence_id: str, version: int) -> T | None:
    """The row of `table` for one record version (every per-version table has both columns)."""
    return (
        await session.exec(
            select(table).where(table.recurrence_id == recurrence_id, table.version == version)  # type: ignore[attr-defined]
        )
    ).first()


Job = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True)
class Deferred:
    """A job's item that the batch writes together with the other jobs' items of the same
    `flush` (e.g. audit rows: one chain call for the whole batch), after every job has run."""

    flush: Callable[[AsyncConnection, list[Any]], Awaitable[None]]
    item: Any


class GroupCommit:
    """Small independent writes of concurrent requests (an audit row, a used token id) share one
    transaction and one commit, as a database's own group commit does for its log.

    `await run(job)` returns once the job's transaction has committed, so "written before the
    response" still holds. A job may return a `Deferred` item: the batch writes those together.
    One writer task means no two of these writes contend for SQLite's write lock. If a batch
    fails, each of its jobs is retried alone, so one bad job fails only itself.

    Give it an engine of its own (`make_engine(url, pool_size=1)`): a request that holds a pooled
    connection while it awaits its write must never wait for that same pool (a deadlock once as
    many requests as the pool holds do so at once).
    """

    def __init__(self, engine: AsyncEngine, max_batch: int = 256) -> None:
        self.engine = engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None

    async def run(self, job: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_forever(), name="group-commit")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def stop(self) -> None:
        """Stop writing; pending callers get an error (the engine stays the owner's to dispose)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drop_connection()
        while not self._queue.empty():
            _refuse([self._queue.get_nowait()])

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:  # stopped mid-batch: its callers learn it, never hang
                _refuse(batch)
                raise

    async def _write(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._transaction([job for job, _ in batch])
        except Exception:
            for job, future in batch:  # alone, so only the failing job fails
                await self._settle(job, future)
            return
        for (_job, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _transaction(self, jobs: list[Job]) -> list[Any]:
        # One connection held across batches (no checkout and reset per batch); after any
        # failure it is dropped and the next batch opens a fresh one.
        if self._connection is None:
            self._connection = await self.engine.connect()
        try:
            async with self._connection.begin():
                results = [await job(self._connection) for job in jobs]
                deferred: dict[Any, list[Any]] = {}
                for result in results:
                    if isinstance(result, Deferred):
                        deferred.setdefault(result.flush, []).append(result.item)
                for flush, items in deferred.items():
                    await flush(self._connection, items)
                return [None if isinstance(result, Deferred) else result for result in results]
        except Exception:
            await self._drop_connection()
            raise

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # already broken: nothing left to release
                pass

    async def _settle(self, job: Job, future: asyncio.Future[Any]) -> None:
        try:
            (result,) = await self._transaction([job])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)


def _refuse(batch: list[tuple[Job, asyncio.Future[Any]]]) -> None:
    """Callers of writes that will not be made (the writer stopped) get an error, never a hang."""
    for _job, future in batch:
        if not future.done():
            future.set_exception(RuntimeError("shutting down: the write was not made"))
