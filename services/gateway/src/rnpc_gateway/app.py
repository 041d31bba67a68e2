from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_gateway import service
from rnpc_gateway.limits import ConcurrencyLimit
from rnpc_gateway.cds.routes import router as cds_router
from rnpc_gateway.fhir.inbound import InboundMessage, on_inbound
from rnpc_gateway.fhir.routes import router as fhir_router
from rnpc_gateway.routes import redrive, router
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.upstream import upstream_resource
from rnpc_shared.contracts.events import (
    PIPELINE_TOPICS,
    TOPIC_EHR_INBOUND,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    TOPIC_SCORES_COMPUTED,
    CloudEvent,
    EvidenceMatched,
    RecommendationIssued,
    ScoresComputed,
    dlq_topic,
)
from rnpc_shared.kafka.consumer import DeadLetter, DeadLetterRoute, Route
from rnpc_shared.service import Runtime, create_service_app


async def on_scored(session: AsyncSession, event: CloudEvent, payload: ScoresComputed) -> None:
    await service.mark_stage_done(session, payload.record.recurrence_id, payload.record.version, "scoring")


async def on_matched(session: AsyncSession, event: CloudEvent, payload: EvidenceMatched) -> None:
    await service.mark_stage_done(session, payload.record.recurrence_id, payload.record.version, "evidence")


async def on_issued(session: AsyncSession, event: CloudEvent, payload: RecommendationIssued) -> None:
    await service.store_recommendation(session, payload)


async def on_dead_letter(session: AsyncSession, letter: DeadLetter) -> None:
    await service.note_dead_letter(session, letter)


async def redrive_loop(runtime: Runtime) -> None:
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    while True:
        await asyncio.sleep(settings.redrive_interval_s)  # a schedule, not synchronisation
        await redrive(runtime, timedelta(seconds=settings.redrive_after_s))


def limits_resource(runtime: Runtime):  # noqa: ANN201 - an async context manager factory
    @asynccontextmanager
    async def _limits() -> AsyncIterator[None]:
        settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
        runtime.extras["evaluate_limit"] = ConcurrencyLimit(
            "POST /v1/evaluate", settings.evaluate_max_concurrency, settings.evaluate_retry_after_s
        )
        yield

    return _limits()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    return create_service_app(
        settings=settings,
        title="rNPC retreatment advisor — gateway",
        routers=[router, fhir_router, cds_router],
        routes={
            TOPIC_SCORES_COMPUTED: Route(ScoresComputed, on_scored),
            TOPIC_EVIDENCE_MATCHED: Route(EvidenceMatched, on_matched),
            TOPIC_RECOMMENDATION_ISSUED: Route(RecommendationIssued, on_issued),
            TOPIC_EHR_INBOUND: Route(InboundMessage, on_inbound),
            **{dlq_topic(topic): DeadLetterRoute(on_dead_letter) for topic in PIPELINE_TOPICS},
        },
        extra_tasks=[redrive_loop] if settings.run_consumer else [],
        resources=[upstream_resource, limits_resource],
    )
