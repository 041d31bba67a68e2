"""The group commit on a real database: a batch of audit rows that come with no write commits
without waiting for the disk, any other batch is flushed before its callers return, and on SQLite
the WAL reaches the database file by a checkpoint of its own, off the writer's path."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from rnpc_gateway import audit
from rnpc_shared import db
from rnpc_shared.auth import Principal
from rnpc_shared.db import GroupCommit
from rnpc_devstack.stack import migrate

pytestmark = pytest.mark.integration


def _flushed_at_commit(connection: Connection) -> bool:
    """Whether this transaction's commit waits for the disk."""
    if connection.dialect.name == "postgresql":
        return connection.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
    return connection.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL; NORMAL is 1


def _auditor(group: GroupCommit) -> audit.Auditor:
    principal = Principal(subject="dr-a", client_id="test-client", scopes=frozenset(), issuer="test")
    return audit.Auditor(principal, "GET /v1/recurrences/{recurrence_id}/recommendation", None, group)


async def _levels(url: str) -> dict[str, bool]:
    group = GroupCommit(url)
    try:
        alone_relaxed = await group.run(_flushed_at_commit, durable=False)
        alone_durable = await group.run(_flushed_at_commit)
        # Queued in the same turn of the loop: one batch, flushed because one of its jobs must be.
        mixed = await asyncio.gather(group.run(_flushed_at_commit, durable=False), group.run(_flushed_at_commit))
        auditor = _auditor(group)
        _version, read = await auditor.read("read", "case-1", lambda connection: (1, _flushed_at_commit(connection)))
        captured: list[bool] = []
        await auditor.record(auditor.entry("execute", "case-1", 1, 200, None), with_write=lambda c: captured.append(_flushed_at_commit(c)))
        async with auditor.standalone("read", "case-1", version=1):
            pass
        relaxed_again = await group.run(_flushed_at_commit, durable=False)
    finally:
        await group.close()
    return {
        "alone relaxed": alone_relaxed, "alone durable": alone_durable, "mixed relaxed": mixed[0], "mixed durable": mixed[1],
        "audited read": read, "row with a write": captured[0], "relaxed after a durable one": relaxed_again,
    }  # fmt: skip


def test_only_batches_of_rows_without_a_write_skip_the_flush(databases) -> None:  # noqa: ANN001
    url = databases.new_url("group-commit")
    migrate("gateway", url)
    assert asyncio.run(_levels(url)) == {
        "alone relaxed": False, "alone durable": True, "mixed relaxed": True, "mixed durable": True,
        "audited read": False, "row with a write": True, "relaxed after a durable one": False,
    }  # fmt: skip


def _sqlite_path(databases) -> Path:  # noqa: ANN001
    url = databases.new_url("group-commit")
    if not url.startswith("sqlite"):
        pytest.skip("SQLite's WAL checkpoints; PostgreSQL flushes its own WAL")
    migrate("gateway", url)
    return Path(str(make_url(url).database))


def _rows_in_database_file_alone(path: Path, tmp_path: Path) -> int:
    """Audit rows in the database file without its WAL: what a checkpoint has copied there."""
    copy = tmp_path / "file-alone.db"
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as connection:
        return int(connection.execute("SELECT count(*) FROM audit_events").fetchone()[0])


async def _in_file_before_and_after_a_checkpoint(url: str, path: Path, tmp_path: Path) -> tuple[int, int, int]:
    group = GroupCommit(url)
    auditor = _auditor(group)
    try:
        for _ in range(3):
            await auditor.read("read", "case-1", lambda connection: (1, None))
        autocheckpoint = await group.run(lambda c: c.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())
        before = _rows_in_database_file_alone(path, tmp_path)  # committed, in the WAL only
        await group.checkpoint()
        return autocheckpoint, before, _rows_in_database_file_alone(path, tmp_path)
    finally:
        await group.close()


def test_the_writer_never_checkpoints_and_a_checkpoint_puts_its_rows_in_the_file(databases, tmp_path: Path) -> None:  # noqa: ANN001
    path = _sqlite_path(databases)
    autocheckpoint, before, after = asyncio.run(_in_file_before_and_after_a_checkpoint(f"sqlite+aiosqlite:///{path}", path, tmp_path))
    assert (autocheckpoint, before, after) == (0, 0, 3)


async def _checkpoint_scheduled(url: str) -> None:
    group = GroupCommit(url)
    try:
        await _auditor(group).read("read", "case-1", lambda connection: (1, None))
        scheduled = group._checkpoint  # noqa: SLF001 - the task the batch scheduled
        assert scheduled is not None
        await scheduled
    finally:
        await group.stop()


def test_a_batch_schedules_a_checkpoint(databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path = _sqlite_path(databases)
    monkeypatch.setattr(db, "CHECKPOINT_AFTER_S", 0.0)
    asyncio.run(_checkpoint_scheduled(f"sqlite+aiosqlite:///{path}"))
    assert _rows_in_database_file_alone(path, tmp_path) == 1


async def _failing_checkpoint_counted(url: str) -> list[str]:
    errors: list[str] = []
    group = GroupCommit(url, on_checkpoint_error=lambda: errors.append("checkpoint"))
    try:
        for _ in range(2):  # each batch after a failure schedules another
            await _auditor(group).read("read", "case-1", lambda connection: (1, None))
            scheduled = group._checkpoint  # noqa: SLF001
            assert scheduled is not None
            await scheduled
    finally:
        await group.stop()
    return errors


def test_a_failed_checkpoint_is_counted_and_the_next_batch_tries_again(databases, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path = _sqlite_path(databases)
    monkeypatch.setattr(db, "CHECKPOINT_AFTER_S", 0.0)

    def broken(connection: Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "_checkpoint", broken)
    assert asyncio.run(_failing_checkpoint_counted(f"sqlite+aiosqlite:///{path}")) == ["checkpoint", "checkpoint"]


async def _read_then_close(url: str) -> None:
    group = GroupCommit(url)
    await _auditor(group).read("read", "case-1", lambda connection: (1, None))
    await group.close()


def test_closing_flushes_what_was_committed_without_a_flush(databases, tmp_path: Path) -> None:  # noqa: ANN001
    path = _sqlite_path(databases)
    service_engine = sqlite3.connect(path)  # still open, as the service's engine is when the group commit closes
    try:
        service_engine.execute("SELECT 1 FROM audit_events").fetchall()  # the file was opened in WAL mode
        asyncio.run(_read_then_close(f"sqlite+aiosqlite:///{path}"))
        assert _rows_in_database_file_alone(path, tmp_path) == 1
    finally:
        service_engine.close()


async def _close_with_a_failing_checkpoint(url: str) -> None:
    group = GroupCommit(url)
    await _auditor(group).read("read", "case-1", lambda connection: (1, None))
    await group.close()  # must not raise: the service's shutdown goes on to close its engine


def test_a_failed_checkpoint_at_shutdown_does_not_stop_the_shutdown(databases, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path = _sqlite_path(databases)

    def broken(connection: Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(db, "_checkpoint", broken)
    asyncio.run(_close_with_a_failing_checkpoint(f"sqlite+aiosqlite:///{path}"))  # raised before
