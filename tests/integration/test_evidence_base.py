"""A case's evidence names its evidence base instead of carrying it (events v2), on real migrated
databases (SQLite; PostgreSQL in CI).

The evidence stage announces the base once per evidence version, in the transaction of the first
case's event on it (its outbox row first); the recommendation stage joins a case's notes to the
base it was announced, and a case whose parts all came before the base runs when the base comes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from rnpc_devstack.stack import migrate
from rnpc_evidence import service as evidence
from rnpc_evidence.domain.catalogue import load_studies
from rnpc_evidence.domain.matching import match_evidence
from rnpc_recommendation import service as recommendation
from rnpc_recommendation.domain import recommend
from rnpc_recommendation.domain.policy import Policy
from rnpc_recommendation.tables import IssuedRecommendation
from rnpc_scoring.domain import compute_scores
from rnpc_shared.contracts.events import (
    TOPIC_EVIDENCE_BASE,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    EvidenceBaseAnnounced,
    EvidenceMatched,
    RecommendationIssued,
    RecurrenceRecorded,
    ScoresComputed,
    read_event,
)
from rnpc_shared.contracts.record import RecurrenceRecord, canonical_hash
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.db import Units, utc_now
from rnpc_shared.kafka.consumer import ProvenanceError
from rnpc_shared.kafka.tables import OUTBOX_TABLE, STAGE_INPUT_TABLE

pytestmark = pytest.mark.integration

CORRELATION = "test"
CASE_CORRELATION = "case-1-request"  # the case's, carried by its evidence event


async def _migrated(databases: Any, service: str, label: str) -> Units:  # noqa: ANN401 - conftest factory
    url = databases.new_url(label)
    migrate(service, url)
    return Units(url)


def _in_session(unit: Callable[[Session], Any]) -> Callable[[Connection], Any]:
    def run(connection: Connection) -> Any:  # noqa: ANN401
        with Session(bind=connection) as session:
            result = unit(session)
            session.flush()
            return result

    return run


def _outbox(session: Session) -> list[tuple[str, str]]:
    """(topic, payload) of every outbox row, in the order written."""
    session.flush()
    rows = session.connection().execute(
        select(OUTBOX_TABLE.c.topic, OUTBOX_TABLE.c.payload).order_by(OUTBOX_TABLE.c.created_at)
    )
    return [(row.topic, row.payload) for row in rows]


def _case(example_record: dict[str, Any], recurrence_id: str) -> tuple[RecurrenceRecorded, ScoresComputed]:
    record = RecurrenceRecord.model_validate(example_record | {"recurrence_id": recurrence_id})
    ref = {"recurrence_id": recurrence_id, "version": record.version, "content_hash": record.content_hash()}
    scores = compute_scores(record, ScoringParameters())
    recorded = RecurrenceRecorded(**ref, record=record)
    scored = ScoresComputed(**ref, scores=scores, result_hash=canonical_hash(scores.model_dump(mode="json")))
    return recorded, scored


async def test_the_base_is_announced_once_before_the_first_case_and_a_case_waits_for_it(
    databases, example_record  # noqa: ANN001
) -> None:
    evidence_units = await _migrated(databases, "evidence", "evidence-base-e")
    recommendation_units = await _migrated(databases, "recommendation", "evidence-base-r")
    cases = [_case(example_record, f"case-{n}") for n in (1, 2)]
    try:
        # Evidence: two cases matched; the base goes out once, ahead of the first case's event.
        def match(session: Session) -> list[tuple[str, str]]:
            for recorded, scored in cases:
                evidence.on_recorded(session, recorded, correlation_id=CORRELATION)
                evidence.on_scored(session, scored, correlation_id=CORRELATION)
            return _outbox(session)

        sent = await evidence_units.run(_in_session(match))
        assert [topic for topic, _ in sent] == [TOPIC_EVIDENCE_BASE, TOPIC_EVIDENCE_MATCHED, TOPIC_EVIDENCE_MATCHED]
        announced = read_event(EvidenceBaseAnnounced, sent[0][1])[1]
        matched = [read_event(EvidenceMatched, payload)[1] for _, payload in sent[1:]]
        assert all(m.evidence.base_hash == announced.base_hash == announced.base.content_hash() for m in matched)

        # A later match on the same version announces nothing more.
        recorded, scored = _case(example_record, "case-3")

        def match_again(session: Session) -> list[str]:
            evidence.on_recorded(session, recorded, correlation_id=CORRELATION)
            evidence.on_scored(session, scored, correlation_id=CORRELATION)
            return [topic for topic, _ in _outbox(session)]

        assert (await evidence_units.run(_in_session(match_again)))[3:] == [TOPIC_EVIDENCE_MATCHED]

        # A re-drive (the scores event again) re-emits the case and announces the base again: if
        # the one announcement was lost, re-driving a waiting case is what brings the base.
        def redrive(session: Session) -> list[tuple[str, str]]:
            evidence.on_recorded(session, recorded, correlation_id=CORRELATION)
            evidence.on_scored(session, scored, correlation_id=CORRELATION)
            return _outbox(session)[4:]

        again = await evidence_units.run(_in_session(redrive))
        assert [topic for topic, _ in again] == [TOPIC_EVIDENCE_BASE, TOPIC_EVIDENCE_MATCHED]
        assert read_event(EvidenceBaseAnnounced, again[0][1])[1] == announced

        # Recommendation: case 1's parts all come before the base; it waits, then runs once.
        policy = Policy()
        (recorded, scored), case_evidence = cases[0], matched[0]

        def parts_first(session: Session) -> tuple[int, int]:
            recommendation.on_recorded(session, recorded, correlation_id=CORRELATION, policy=policy)
            recommendation.on_scored(session, scored, correlation_id=CORRELATION, policy=policy)
            recommendation.on_matched(session, case_evidence, correlation_id=CASE_CORRELATION, policy=policy)
            session.flush()
            waiting = len(session.connection().execute(select(STAGE_INPUT_TABLE.c.part)).all())
            return len(_outbox(session)), waiting

        assert await recommendation_units.run(_in_session(parts_first)) == (0, 3)

        def base_comes(session: Session) -> list[tuple[str, str]]:
            recommendation.on_base(session, announced, correlation_id=CORRELATION, policy=policy)
            recommendation.on_base(session, announced, correlation_id=CORRELATION, policy=policy)  # re-sent
            assert session.connection().execute(select(STAGE_INPUT_TABLE.c.part)).all() == []
            return _outbox(session)

        issued = await recommendation_units.run(_in_session(base_comes))
        assert [topic for topic, _ in issued] == [TOPIC_RECOMMENDATION_ISSUED]
        header, advice = read_event(RecommendationIssued, issued[0][1])
        assert advice.evidence_hash == case_evidence.result_hash
        assert header.correlationid == CASE_CORRELATION  # traced as the case, not as the base's event
        # The same advice as from the whole evidence the evidence stage matched.
        whole = match_evidence(recorded.record, scored.scores, load_studies())
        expected = recommend(recorded.record, scored.scores, whole, issued_at=utc_now(), policy=policy)
        assert advice.recommendation.options == expected.options
        assert advice.recommendation.basis == expected.basis

        # Case 2 comes after the base: it runs at once.
        (recorded, scored), case_evidence = cases[1], matched[1]

        def after_base(session: Session) -> int:
            recommendation.on_matched(session, case_evidence, correlation_id=CORRELATION, policy=policy)
            recommendation.on_scored(session, scored, correlation_id=CORRELATION, policy=policy)
            recommendation.on_recorded(session, recorded, correlation_id=CORRELATION, policy=policy)
            return len(session.exec(select(IssuedRecommendation)).all())

        assert await recommendation_units.run(_in_session(after_base)) == 2
    finally:
        await evidence_units.close()
        await recommendation_units.close()


async def test_a_version_is_one_content_for_good(databases, example_record) -> None:  # noqa: ANN001
    """A base announced again with other content, or a case naming other content than the stored
    base, is a provenance error (dead-lettered with its reason), not joined; a case that waited
    with other content does not make its base's announcement fail."""
    evidence_units = await _migrated(databases, "evidence", "evidence-hash-e")
    recommendation_units = await _migrated(databases, "recommendation", "evidence-hash-r")
    recorded, scored = _case(example_record, "case-1")
    try:
        def match(session: Session) -> list[tuple[str, str]]:
            evidence.on_recorded(session, recorded, correlation_id=CORRELATION)
            evidence.on_scored(session, scored, correlation_id=CORRELATION)
            return _outbox(session)

        sent = await evidence_units.run(_in_session(match))
        announced = read_event(EvidenceBaseAnnounced, sent[0][1])[1]
        case_evidence = read_event(EvidenceMatched, sent[1][1])[1]
        policy = Policy()
        forged = case_evidence.model_copy(
            update={"evidence": case_evidence.evidence.model_copy(update={"base_hash": "e" * 64})}
        )

        def join(session: Session) -> int:
            recommendation.on_recorded(session, recorded, correlation_id=CORRELATION, policy=policy)
            recommendation.on_scored(session, scored, correlation_id=CORRELATION, policy=policy)
            recommendation.on_matched(session, forged, correlation_id=CORRELATION, policy=policy)
            session.flush()
            return len(session.connection().execute(select(STAGE_INPUT_TABLE.c.part)).all())

        # Before the base: the forged case waits like any other.
        assert await recommendation_units.run(_in_session(join)) == 3

        # The base comes: it is kept (not dead-lettered for the forged case), which is not joined.
        def base_comes(session: Session) -> tuple[int, int]:
            recommendation.on_base(session, announced, correlation_id=CORRELATION, policy=policy)
            session.flush()
            kept = len(session.connection().execute(select(STAGE_INPUT_TABLE.c.part)).all())
            return kept, len(_outbox(session))

        assert await recommendation_units.run(_in_session(base_comes)) == (3, 0)

        other = announced.model_copy(update={"base_hash": "f" * 64})
        with pytest.raises(ProvenanceError, match="evidence base .* is stored with content"):
            await recommendation_units.run(
                _in_session(lambda s: recommendation.on_base(s, other, correlation_id=CORRELATION, policy=policy))
            )

        # The forged case's evidence, sent again (e.g. by a re-drive), is refused for what it is.
        with pytest.raises(ProvenanceError, match="this event names content eeeeeeeeeeee"):
            await recommendation_units.run(_in_session(join))
    finally:
        await evidence_units.close()
        await recommendation_units.close()
