from __future__ import annotations

from fastapi import FastAPI
from sqlmodel import Session

from rnpc_evidence import service
from rnpc_evidence.routes import router
from rnpc_evidence.settings import EvidenceSettings
from rnpc_shared.contracts.events import (
    TOPIC_RECURRENCE_RECORDED,
    TOPIC_SCORES_COMPUTED,
    EventHeader,
    RecurrenceRecorded,
    ScoresComputed,
)
from rnpc_shared.kafka.consumer import Route
from rnpc_shared.service import create_service_app


def on_recorded(session: Session, event: EventHeader, payload: RecurrenceRecorded) -> None:
    service.on_recorded(session, payload, correlation_id=event.correlationid)


def on_scored(session: Session, event: EventHeader, payload: ScoresComputed) -> None:
    service.on_scored(session, payload, correlation_id=event.correlationid)


def create_app(settings: EvidenceSettings | None = None) -> FastAPI:
    settings = settings or EvidenceSettings()
    return create_service_app(
        settings=settings,
        title="rNPC evidence",
        routers=[router],
        routes={
            TOPIC_RECURRENCE_RECORDED: Route(RecurrenceRecorded, on_recorded),
            TOPIC_SCORES_COMPUTED: Route(ScoresComputed, on_scored),
        },
    )
