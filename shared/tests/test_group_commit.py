"""GroupCommit on a real SQLite database: concurrent small writes share a transaction, each
caller returns only after its write committed, and one failing write fails only itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

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


def write(note_id: int):  # noqa: ANN201
    async def job(connection: AsyncConnection) -> int:
        await connection.execute(insert(notes).values(id=note_id, text=f"note {note_id}"))
        return note_id

    return job


async def stored_ids(engine) -> list[int]:  # noqa: ANN001
    async with engine.connect() as connection:
        return sorted((await connection.execute(select(notes.c.id))).scalars())


async def test_concurrent_writes_share_commits_and_are_durable_on_return(engine) -> None:  # noqa: ANN001
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))
    group = GroupCommit(engine)
    try:
        results = await asyncio.gather(*(group.run(write(i)) for i in range(50)))
    finally:
        await group.stop()
    assert results == list(range(50))
    assert await stored_ids(engine) == list(range(50))  # every caller returned after its commit
    assert 1 <= len(commits) < 50


async def test_a_failing_write_fails_alone(engine) -> None:  # noqa: ANN001
    group = GroupCommit(engine)
    try:
        await group.run(write(7))
        outcomes = await asyncio.gather(group.run(write(1)), group.run(write(7)), group.run(write(2)), return_exceptions=True)
    finally:
        await group.stop()
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], IntegrityError)  # the duplicate key, and only it
    assert await stored_ids(engine) == [1, 2, 7]


async def test_a_stopped_writer_starts_again_on_demand(engine) -> None:  # noqa: ANN001
    group = GroupCommit(engine)
    await group.run(write(1))
    await group.stop()
    assert await group.run(write(2)) == 2  # a stopped writer starts again on demand
    await group.stop()
    assert await stored_ids(engine) == [1, 2]


async def test_deferred_items_of_a_batch_are_written_by_one_flush_in_order(engine) -> None:  # noqa: ANN001
    flushes: list[list[int]] = []

    async def flush(connection: AsyncConnection, ids: list[int]) -> None:
        flushes.append(ids)
        await connection.execute(insert(notes), [{"id": i, "text": "deferred"} for i in ids])

    def deferred(note_id: int):  # noqa: ANN202
        async def job(connection: AsyncConnection) -> Deferred:
            return Deferred(flush, note_id)

        return job

    group = GroupCommit(engine)
    try:
        results = await asyncio.gather(*(group.run(deferred(i)) for i in range(20)))
    finally:
        await group.stop()
    assert results == [None] * 20
    assert [i for ids in flushes for i in ids] == list(range(20)) and len(flushes) < 20
    assert await stored_ids(engine) == list(range(20))


async def test_stopping_mid_batch_fails_its_callers_instead_of_leaving_them_waiting(engine) -> None:  # noqa: ANN001
    started = asyncio.Event()

    async def stuck(connection: AsyncConnection) -> None:
        started.set()
        await asyncio.Event().wait()  # never set: the batch is in flight when stop() comes

    group = GroupCommit(engine)
    pending = asyncio.create_task(group.run(stuck))
    await asyncio.wait_for(started.wait(), 10)
    await group.stop()
    with pytest.raises(RuntimeError, match="shutting down"):
        await asyncio.wait_for(pending, 10)
