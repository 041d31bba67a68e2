from __future__ import annotations

from fastapi import FastAPI

from rnpc_scoring.routes import router
from rnpc_scoring.service import score_recorded_version
from rnpc_scoring.settings import ScoringSettings
from rnpc_shared.contracts.events import TOPIC_RECURRENCE_RECORDED, EventHeader, RecurrenceRecorded
from rnpc_shared.contracts.scores import ScoringParameters
from rnpc_shared.kafka.consumer import Route
from rnpc_shared.service import create_service_app
from sqlmodel import Session


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    params = ScoringParameters()

    def on_recorded(session: Session, event: EventHeader, payload: RecurrenceRecorded) -> None:
        score_recorded_version(session, payload, params=params, correlation_id=event.correlationid)

    return create_service_app(
        settings=settings,
        title="rNPC scoring",
        routers=[router],
        routes={TOPIC_RECURRENCE_RECORDED: Route(RecurrenceRecorded, on_recorded)},
    )
