from __future__ import annotations

from fastapi import FastAPI
from sqlmodel import Session

from rnpc_recommendation import service
from rnpc_recommendation.routes import router
from rnpc_recommendation.settings import RecommendationSettings
from rnpc_shared.contracts.events import (
    TOPIC_EVIDENCE_BASE,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
    EventHeader,
    EvidenceBaseAnnounced,
    EvidenceMatched,
    RecurrenceRecorded,
    ScoresComputed,
)
from rnpc_shared.kafka.consumer import Route
from rnpc_shared.service import create_service_app


def create_app(settings: RecommendationSettings | None = None) -> FastAPI:
    settings = settings or RecommendationSettings()
    policy = settings.policy()

    def on_recorded(session: Session, event: EventHeader, payload: RecurrenceRecorded) -> None:
        service.on_recorded(session, payload, correlation_id=event.correlationid, policy=policy)

    def on_scored(session: Session, event: EventHeader, payload: ScoresComputed) -> None:
        service.on_scored(session, payload, correlation_id=event.correlationid, policy=policy)

    def on_matched(session: Session, event: EventHeader, payload: EvidenceMatched) -> None:
        service.on_matched(session, payload, correlation_id=event.correlationid, policy=policy)

    def on_base(session: Session, event: EventHeader, payload: EvidenceBaseAnnounced) -> None:
        service.on_base(session, payload, correlation_id=event.correlationid, policy=policy)

    return create_service_app(
        settings=settings,
        title="rNPC recommendation",
        routers=[router],
        routes={
            TOPIC_RECURRENCE_RECORDED: Route(RecurrenceRecorded, on_recorded),
            TOPIC_SCORES_COMPUTED: Route(ScoresComputed, on_scored),
            TOPIC_EVIDENCE_MATCHED: Route(EvidenceMatched, on_matched),
            TOPIC_EVIDENCE_BASE: Route(EvidenceBaseAnnounced, on_base),
        },
    )
