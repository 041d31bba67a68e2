"""The audit hash chain on a real, migrated gateway database: concurrent appenders never fork it,
the database refuses edits, and the verify command detects an edit made behind its back."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys

import pytest
from sqlalchemy import text

from rnpc_gateway import audit
from rnpc_gateway.tables import AuditEntry
from rnpc_shared.auth import Principal
from rnpc_shared.db import GroupCommit, make_engine, make_session_factory
from rnpc_devstack.stack import migrate, repo_root

pytestmark = pytest.mark.integration


def _auditor(subject: str) -> audit.Auditor:
    principal = Principal(subject=subject, client_id="test-client", scopes=frozenset(), issuer="test")
    return audit.Auditor(principal, "GET /v1/recurrences/{recurrence_id}", purpose_of_use="TREAT")


async def _append_many(database_url: str, count: int) -> None:
    """Both appenders at once: a write's row in its own session, a read's through the group commit."""
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    group = GroupCommit(database_url)

    async def in_session(i: int) -> None:
        async with sessions() as session:
            await audit.append(session, _auditor(f"user-{i}").entry("read", f"case-{i % 3}", 1, 200, None))
            await session.commit()

    async def standalone(i: int) -> None:
        auditor = _auditor(f"user-{i}")
        auditor.group_commit = group
        async with auditor.standalone("read", f"case-{i % 3}", version=1):
            pass

    try:
        await asyncio.gather(*(in_session(i) if i % 2 else standalone(i) for i in range(count)))
    finally:
        await group.close()
        await engine.dispose()


async def _execute(database_url: str, sql: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


def _verify(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rnpc_gateway.audit", "verify", "--database-url", database_url],
        capture_output=True, text=True, cwd=repo_root(), check=False,
    )


def test_concurrent_appends_form_one_chain_and_an_edit_is_detected(databases) -> None:  # noqa: ANN001
    url = databases.new_url("audit")
    migrate("gateway", url)
    asyncio.run(_append_many(url, 30))
    intact = _verify(url)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact" in intact.stdout

    with pytest.raises(Exception, match="append-only"):
        asyncio.run(_execute(url, "UPDATE audit_events SET subject = 'someone-else' WHERE seq = 7"))
    with pytest.raises(Exception, match="append-only"):
        asyncio.run(_execute(url, "DELETE FROM audit_events WHERE seq = 7"))

    # Someone with the database owner's rights drops the guard and edits a row.
    if url.startswith("postgresql"):
        asyncio.run(_execute(url, "DROP TRIGGER audit_events_append_only ON audit_events"))
    else:
        asyncio.run(_execute(url, "DROP TRIGGER audit_events_no_update"))
    asyncio.run(_execute(url, "UPDATE audit_events SET subject = 'someone-else' WHERE seq = 7"))
    broken = _verify(url)
    assert broken.returncode == 1
    assert "seq 7: row_hash does not match its content" in broken.stdout


def test_a_row_to_append_has_exactly_the_tables_columns() -> None:
    columns = set(AuditEntry.__table__.columns.keys())  # type: ignore[attr-defined]
    assert set(audit.COLUMNS) == columns
    assert {field.name for field in dataclasses.fields(audit.AuditRow)} == columns


def test_the_hash_covers_every_recorded_field() -> None:
    entry = _auditor("dr-a").entry("read", "case-1", 2, 200, "detail")
    entry.seq, entry.prev_hash = 1, "0" * 64
    original = audit.row_hash(entry)
    for field, other in [("subject", "dr-b"), ("recurrence_id", "case-2"), ("version", 3), ("status", 404),
                         ("purpose_of_use", None), ("correlation_id", "x"), ("route", "GET /v1/audit"), ("prev_hash", "1" * 64)]:
        changed = dataclasses.replace(entry, **{field: other})
        assert audit.row_hash(changed) != original, field
