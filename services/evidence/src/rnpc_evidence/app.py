from __future__ import annotations

from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_evidence.routes import router
from rnpc_evidence.service import match_scored_version
from rnpc_evidence.settings import EvidenceSettings
from rnpc_shared.contracts.events import TOPIC_SCORES_COMPUTED, CloudEvent, ScoresComputed
from rnpc_shared.kafka.consumer import Route
from rnpc_shared.service import create_service_app


def create_app(settings: EvidenceSettings | None = None) -> FastAPI:
    settings = settings or EvidenceSettings()

    async def on_scored(session: AsyncSession, event: CloudEvent, payload: ScoresComputed) -> None:
        await match_scored_version(session, payload, correlation_id=event.correlationid)

    return create_service_app(
        settings=settings,
        title="rNPC evidence",
        routers=[router],
        routes={TOPIC_SCORES_COMPUTED: Route(ScoresComputed, on_scored)},
    )
