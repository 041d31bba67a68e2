"""GroupCommit on a real SQLite database: concurrent small writes share a transaction, each
caller returns only after its write committed, and one failing write fails only itself."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from rnpc_shared.db import Deferred, GroupCommit, make_engine

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("text", String(32)))


@pytest.fixture
async def engine(tmp_path: Path):  # noqa: ANN201
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'gc.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
async def group(engine):  # noqa: ANN001, ANN201
    group = GroupCommit(engine.url.render_as_string(hide_password=False))
    yield group
    await group.close()


def write(note_id: int):  # noqa: ANN201
    def job(connection: Connection) -> int:
        connection.execute(insert(notes).values(id=note_id, text=f"note {note_id}"))
        return note_id

    return job


async def stored_ids(engine) -> list[int]:  # noqa: ANN001
    async with engine.connect() as connection:
        return sorted((await connection.execute(select(notes.c.id))).scalars())


async def test_concurrent_writes_share_commits_and_are_durable_on_return(engine, group) -> None:  # noqa: ANN001
    commits: list[int] = []
    assert group.units._sync_engine is not None  # SQLite: the writer's own pysqlite engine
    event.listen(group.units._sync_engine, "commit", lambda _connection: commits.append(1))
    results = await asyncio.gather(*(group.run(write(i)) for i in range(50)))
    assert results == list(range(50))
    assert await stored_ids(engine) == list(range(50))  # every caller returned after its commit
    assert 1 <= len(commits) < 50


async def test_a_failing_write_fails_alone(engine, group) -> None:  # noqa: ANN001
    await group.run(write(7))
    outcomes = await asyncio.gather(group.run(write(1)), group.run(write(7)), group.run(write(2)), return_exceptions=True)
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], IntegrityError)  # the duplicate key, and only it
    assert await stored_ids(engine) == [1, 2, 7]


async def test_a_stopped_writer_starts_again_on_demand(engine, group) -> None:  # noqa: ANN001
    await group.run(write(1))
    await group.stop()
    assert await group.run(write(2)) == 2  # a stopped writer starts again on demand
    assert await stored_ids(engine) == [1, 2]


async def test_deferred_items_of_a_batch_are_written_by_one_flush_in_order(engine, group) -> None:  # noqa: ANN001
    flushes: list[list[int]] = []

    def flush(connection: Connection, ids: list[int]) -> None:
        flushes.append(ids)
        connection.execute(insert(notes), [{"id": i, "text": "deferred"} for i in ids])

    def deferred(note_id: int):  # noqa: ANN202
        def job(connection: Connection) -> Deferred:
            return Deferred(flush, note_id)

        return job

    results = await asyncio.gather(*(group.run(deferred(i)) for i in range(20)))
    assert results == [None] * 20
    assert [i for ids in flushes for i in ids] == list(range(20)) and len(flushes) < 20
    assert await stored_ids(engine) == list(range(20))


async def test_stopping_mid_batch_lets_the_batch_finish_and_refuses_what_is_queued(engine, group) -> None:  # noqa: ANN001
    started, release = threading.Event(), threading.Event()

    def held(connection: Connection) -> int:  # a unit on a thread cannot be interrupted
        started.set()
        assert release.wait(30)
        return write(1)(connection)

    in_flight = asyncio.create_task(group.run(held))
    assert await asyncio.to_thread(started.wait, 30)
    queued = asyncio.create_task(group.run(write(2)))
    await asyncio.sleep(0)  # let the queued job reach the queue (a scheduling step, not a timing wait)
    stopping = asyncio.create_task(group.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # waits for the batch in flight
    release.set()
    await asyncio.wait_for(stopping, 30)
    assert await in_flight == 1  # its caller learns the real outcome: written
    with pytest.raises(RuntimeError, match="shutting down"):
        await asyncio.wait_for(queued, 10)
    assert await stored_ids(engine) == [1]
