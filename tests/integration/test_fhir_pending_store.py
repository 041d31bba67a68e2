"""Kept FHIR Subscription events (`fhir_pending_events`) on a real database (SQLite; PostgreSQL in CI).

Replicas of the gateway share the table: a due row is leased by one of them (SKIP LOCKED while it
claims, then a lease in `next_attempt_at`), so two replicas never retry the same events at once.
Ingested numbers are taken out of kept ranges, which split around them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway.fhir import store
from rnpc_gateway.fhir.store import Pending
from rnpc_gateway.tables import PendingFhirEvents
from rnpc_shared.db import make_engine, utc_now

pytestmark = pytest.mark.integration
SUBSCRIPTION = "https://ehr.test/fhir/Subscription/rnpc"


async def _engine(databases: Any, label: str) -> Any:  # noqa: ANN401 - the conftest factory, an AsyncEngine
    engine = make_engine(databases.new_url(label))
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all, tables=[PendingFhirEvents.__table__])  # type: ignore[attr-defined]
    return engine


async def _kept(engine: Any) -> list[tuple[int, int, str | None]]:  # noqa: ANN401
    async with AsyncSession(engine) as session:
        return sorted((r.first_event, r.last_event, r.focus) for r in await store.list_pending(session, limit=100))


async def test_a_due_row_is_leased_by_one_replica_only(databases) -> None:  # noqa: ANN001
    engine = await _engine(databases, "fhir-lease")
    now = utc_now()
    async with AsyncSession(engine) as session:
        store.keep_pending(session, SUBSCRIPTION, [Pending(1, 3, None, "$events failed"), Pending(7, 7, "Condition/x", "down")], next_attempt_at=now)
        await session.commit()
    try:
        async with AsyncSession(engine) as first, AsyncSession(engine) as second:
            claimed = await store.claim_due(first, now=now, lease_s=600)
            assert sorted(r.first_event for r in claimed) == [1, 7] and all(r.attempts == 1 for r in claimed)
            if engine.dialect.name == "postgresql":  # locked while the first replica claims: skipped, not waited for
                assert await store.claim_due(second, now=now, lease_s=600) == []
                await second.rollback()
            await first.commit()
        async with AsyncSession(engine) as later:  # leased: not due for anyone until the lease ends
            assert await store.claim_due(later, now=now + timedelta(seconds=599), lease_s=600) == []
            assert len(await store.claim_due(later, now=now + timedelta(seconds=601), lease_s=600)) == 2
            await later.rollback()
    finally:
        await engine.dispose()


async def test_ingested_numbers_are_taken_out_of_kept_ranges(databases) -> None:  # noqa: ANN001
    engine = await _engine(databases, "fhir-resolve")
    now = utc_now()
    try:
        async with AsyncSession(engine) as session:
            store.keep_pending(session, SUBSCRIPTION, [Pending(1, 10, None, "not returned"), Pending(12, 12, "Condition/y", "down")],
                               next_attempt_at=now, noticed_at=now - timedelta(minutes=5))
            store.keep_pending(session, "https://ehr.test/fhir/Subscription/other", [Pending(1, 10, None, "other")], next_attempt_at=now)
            await session.commit()
            assert await store.pending_among(session, SUBSCRIPTION, [4, 11, 12]) == {4, 12}
            assert await store.pending_summary(session, now) == (21, 300.0)
            await store.resolve_pending(session, SUBSCRIPTION, {1, 4, 5, 12})
            await session.commit()
        assert await _kept(engine) == [(1, 10, None), (2, 3, None), (6, 10, None)]  # the other subscription's 1-10 untouched
        async with AsyncSession(engine) as session:
            [row] = [r for r in await store.list_pending(session, limit=100) if r.first_event == 6]
            assert row.noticed_at == now - timedelta(minutes=5)  # a split range keeps its age (and its alert)
            assert await store.dismiss_pending(session, row.id or 0) == f"{SUBSCRIPTION} events 6-10"
            assert await store.dismiss_pending(session, row.id or 0) is None
            await session.commit()
        assert await _kept(engine) == [(1, 10, None), (2, 3, None)]
    finally:
        await engine.dispose()


async def test_many_scattered_numbers_are_looked_up_and_taken_out_in_parts(databases) -> None:  # noqa: ANN001
    """1500 separate numbers: more OR terms than one WHERE clause may hold on SQLite."""
    engine = await _engine(databases, "fhir-scattered")
    now = utc_now()
    scattered = list(range(1, 3000, 2))
    try:
        async with AsyncSession(engine) as session:
            store.keep_pending(session, SUBSCRIPTION, [Pending(1, 5000, None, "too many missed")], next_attempt_at=now)
            await session.commit()
            assert await store.pending_among(session, SUBSCRIPTION, scattered) == set(scattered)
            await store.resolve_pending(session, SUBSCRIPTION, set(scattered))
            await session.commit()
            assert (await store.pending_summary(session, now))[0] == 5000 - len(scattered)
    finally:
        await engine.dispose()
