from __future__ import annotations

from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_recommendation.routes import router
from rnpc_recommendation.service import issue_for_version
from rnpc_recommendation.settings import RecommendationSettings
from rnpc_shared.contracts.events import TOPIC_EVIDENCE_MATCHED, CloudEvent, EvidenceMatched
from rnpc_shared.kafka.consumer import Route
from rnpc_shared.service import create_service_app


def create_app(settings: RecommendationSettings | None = None) -> FastAPI:
    settings = settings or RecommendationSettings()

    async def on_matched(session: AsyncSession, event: CloudEvent, payload: EvidenceMatched) -> None:
        await issue_for_version(
            session, payload, correlation_id=event.correlationid, policy=settings.policy()
        )

    return create_service_app(
        settings=settings,
        title="rNPC recommendation",
        routers=[router],
        routes={TOPIC_EVIDENCE_MATCHED: Route(EvidenceMatched, on_matched)},
    )
