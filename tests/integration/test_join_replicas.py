"""Joins completed by two replicas at once (PostgreSQL, READ COMMITTED: each replica its own
transaction on the service's shared database): the evidence and recommendation stages' joins of
a case's parts, a case and its evidence base, and the gateway's results held for the one before.

A stage joins parts that arrive on different topics (record, scores, evidence; a case and the
evidence base it names), so with two replicas two parts of one join can be handled at the same
time. Without serialising, each transaction stores its part without seeing the other's, and the
case waits for good. Each scenario holds the first replica's transaction open, shows that the
second waits for it (on the advisory lock, not on a row), then commits both and checks that the
join ran exactly once.

PostgreSQL only: SQLite is the embedded profile's database, one writer process per service, so
it never has two replicas (CI's PostgreSQL leg runs these).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Session

from rnpc_devstack.stack import migrate
from rnpc_evidence import service as evidence
from rnpc_gateway import service as gateway
from rnpc_gateway.tables import StageState
from rnpc_recommendation import bases
from rnpc_recommendation import service as recommendation
from rnpc_recommendation.domain.policy import Policy
from rnpc_recommendation.tables import IssuedRecommendation
from rnpc_scoring.domain import compute_scores
from rnpc_shared.contracts.events import (
    TOPIC_EVIDENCE_BASE,
    TOPIC_EVIDENCE_MATCHED,
    EvidenceBaseAnnounced,
    EvidenceMatched,
    RecurrenceRecorded,
    ScoresComputed,
    StageResult,
    read_event,
)
from rnpc_shared.contracts.record import RecurrenceRecord, canonical_hash
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import make_engine, serialise
from rnpc_shared.kafka.consumer import is_transient
from rnpc_shared.kafka.tables import OUTBOX_TABLE, STAGE_INPUT_TABLE

pytestmark = pytest.mark.integration
CORRELATION = "test-join"
POLICY = Policy()


def _postgres_url(databases: Any, label: str, service: str) -> str:  # noqa: ANN401 - the conftest factory
    url = databases.new_url(label)
    if make_url(url).get_backend_name() != "postgresql":
        pytest.skip("two replicas share a database only on PostgreSQL (SQLite: one writer process per service)")
    migrate(service, url)
    return url


def _case(example_record: dict[str, Any], recurrence_id: str) -> tuple[RecurrenceRecorded, ScoresComputed]:
    record = RecurrenceRecord.model_validate(example_record | {"recurrence_id": recurrence_id})
    ref = {"recurrence_id": recurrence_id, "version": record.version, "content_hash": record.content_hash()}
    scores = compute_scores(record, ScoringParameters())
    return RecurrenceRecorded(**ref, record=record), ScoresComputed(
        **ref, scores=scores, result_hash=canonical_hash(scores.model_dump(mode="json"))
    )


def _handler(use_case: Callable[..., None], event: Any, **options: Any) -> Callable[[Connection], None]:  # noqa: ANN401
    def run(connection: Connection) -> None:
        with Session(bind=connection) as session:
            use_case(session, event, correlation_id=CORRELATION, **options)
            session.flush()

    return run


async def _count(engine: AsyncEngine, table: Any) -> int:  # noqa: ANN401 - a Core table
    async with engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(table))).scalar_one()


async def _waits_on_advisory_lock(engine: AsyncEngine, backend_pid: int, deadline_s: float = 30) -> None:
    """Until the backend `backend_pid` waits on an advisory lock (polled under a deadline)."""
    query = text("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = :pid")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    async with engine.connect() as connection:
        while loop.time() < deadline:
            if tuple((await connection.execute(query, {"pid": backend_pid})).one()) == ("Lock", "advisory"):
                return
            await asyncio.sleep(0.02)  # poll interval under a deadline
    raise AssertionError("the second replica never waited for the first: the join is not serialised")


async def _side_by_side(engine: AsyncEngine, first: Callable[[Connection], None], second: Callable[[Connection], None]) -> None:
    """Replica 1 runs `first` and keeps its transaction open; replica 2 starts `second`, which must
    wait for replica 1; then replica 1 commits, and replica 2 finishes and commits."""
    replica_1, replica_2 = await engine.connect(), await engine.connect()
    try:
        second_pid = (await replica_2.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await replica_2.commit()
        async with replica_1.begin():
            await replica_1.run_sync(first)
            second_done = asyncio.ensure_future(_in_transaction(replica_2, second))
            await _waits_on_advisory_lock(engine, second_pid)
            assert not second_done.done()
        await second_done
    finally:
        await replica_1.close()
        await replica_2.close()


async def _in_transaction(connection: AsyncConnection, unit: Callable[[Connection], None]) -> None:
    async with connection.begin():
        await connection.run_sync(unit)


async def _evidence_events(databases: Any, example_record: dict[str, Any], recurrence_id: str) -> tuple[EvidenceBaseAnnounced, EvidenceMatched]:  # noqa: ANN401
    """What the evidence stage emits for a case: the base announcement and the case's evidence."""
    url = _postgres_url(databases, "join-ev-src", "evidence")
    recorded, scored = _case(example_record, recurrence_id)
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_handler(evidence.on_recorded, recorded))
            await connection.run_sync(_handler(evidence.on_scored, scored))
        async with engine.connect() as connection:
            rows = (await connection.execute(select(OUTBOX_TABLE.c.topic, OUTBOX_TABLE.c.payload).order_by(OUTBOX_TABLE.c.created_at))).all()
    finally:
        await engine.dispose()
    payloads = {row.topic: row.payload for row in rows}
    announced = read_event(EvidenceBaseAnnounced, payloads[TOPIC_EVIDENCE_BASE])[1]
    matched = read_event(EvidenceMatched, payloads[TOPIC_EVIDENCE_MATCHED])[1]
    return announced, matched


async def test_the_evidence_join_of_record_and_scores_on_two_replicas_runs_once(databases, example_record) -> None:  # noqa: ANN001
    engine = make_engine(_postgres_url(databases, "join-ev", "evidence"))
    recorded, scored = _case(example_record, "case-join-evidence")
    try:
        await _side_by_side(engine, _handler(evidence.on_recorded, recorded), _handler(evidence.on_scored, scored))
        assert await _count(engine, STAGE_INPUT_TABLE) == 0  # joined: no part left waiting
        assert await _count(engine, OUTBOX_TABLE) == 2  # the base announcement and the case's evidence, once
    finally:
        await engine.dispose()


@pytest.mark.parametrize("first", ["case", "base"])
async def test_a_case_and_its_evidence_base_on_two_replicas_are_joined_once(databases, example_record, first: str) -> None:  # noqa: ANN001
    recurrence_id = f"case-join-base-{first}"
    announced, matched = await _evidence_events(databases, example_record, recurrence_id)
    recorded, scored = _case(example_record, recurrence_id)
    engine = make_engine(_postgres_url(databases, f"join-rec-{first}", "recommendation"))
    try:
        async with engine.begin() as connection:  # the record and scores parts came earlier
            await connection.run_sync(_handler(recommendation.on_recorded, recorded, policy=POLICY))
            await connection.run_sync(_handler(recommendation.on_scored, scored, policy=POLICY))
        case = _handler(recommendation.on_matched, matched, policy=POLICY)
        base = _handler(recommendation.on_base, announced, policy=POLICY)
        bases._PARSED.clear()  # replicas are processes: neither has the other's parsed base
        if first == "case":
            await _side_by_side(engine, case, base)
        else:
            await _side_by_side(engine, _forgetting_parsed_bases(base), case)
        assert await _count(engine, IssuedRecommendation.__table__) == 1
        assert await _count(engine, STAGE_INPUT_TABLE) == 0
    finally:
        bases._PARSED.clear()
        await engine.dispose()


async def test_a_stage_result_held_for_the_one_before_it_on_another_replica_is_applied(databases, example_record) -> None:  # noqa: ANN001
    """The gateway: an evidence result read while its scores result is being applied by another
    replica is either applied at once (it waited) or held and applied by that replica, never
    held for good."""
    engine = make_engine(_postgres_url(databases, "join-gw", "gateway"))
    record = RecurrenceRecord.model_validate(example_record | {"recurrence_id": "case-join-gateway"})
    ref = {"recurrence_id": record.recurrence_id, "version": record.version, "content_hash": record.content_hash()}
    scores = StageResult(**ref, result_hash="a" * 64)
    evidence_result = StageResult(**ref, result_hash="b" * 64, scores_hash=scores.result_hash)

    def recorded(connection: Connection) -> None:
        with Session(bind=connection) as session:
            gateway.accept_record(session, record, correlation_id=CORRELATION, max_event_bytes=1_000_000)
            session.flush()

    def result(stage: str, value: StageResult) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            with Session(bind=connection) as session:
                gateway.on_stage_result(session, stage, f"{stage}-event", value)
                session.flush()

        return run

    try:
        async with engine.begin() as connection:
            await connection.run_sync(recorded)
        await _side_by_side(engine, result("scoring", scores), result("evidence", evidence_result))
        async with engine.connect() as connection:
            states = dict((await connection.execute(select(StageState.stage, StageState.state))).all())
        assert states["scoring"] == states["evidence"] == "done"
        assert await _count(engine, STAGE_INPUT_TABLE) == 0  # nothing left held
    finally:
        await engine.dispose()


async def test_two_replicas_locking_in_opposite_orders_fail_one_as_transient(databases) -> None:  # noqa: ANN001
    """Two batches joining the same two cases in opposite orders deadlock; PostgreSQL fails one of
    them, and the consumer must read that as "retry" (never as a poison event to dead-letter)."""
    engine = make_engine(_postgres_url(databases, "join-deadlock", "evidence"))

    def lock(key: str) -> Callable[[Connection], None]:
        return lambda connection: serialise(connection, key)

    try:
        one, two = await engine.connect(), await engine.connect()
        async with one.begin(), two.begin():
            await one.run_sync(lock("case-a"))
            await two.run_sync(lock("case-b"))
            outcomes = await asyncio.gather(one.run_sync(lock("case-b")), two.run_sync(lock("case-a")), return_exceptions=True)
            failures = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
            assert len(failures) == 1 and is_transient(failures[0]), outcomes
            await (two if outcomes[1] is failures[0] else one).rollback()
        await one.close()
        await two.close()
    finally:
        await engine.dispose()


def _forgetting_parsed_bases(unit: Callable[[Connection], None]) -> Callable[[Connection], None]:
    """`unit`, then the process cache of parsed bases emptied: the other replica has its own."""

    def run(connection: Connection) -> None:
        unit(connection)
        bases._PARSED.clear()

    return run

