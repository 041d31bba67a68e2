from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlmodel import Session

from rnpc_gateway import service
from rnpc_gateway.audit import audit_refusal
from rnpc_gateway.limits import ConcurrencyLimit
from rnpc_gateway.cds.routes import router as cds_router
from rnpc_gateway.fhir.inbound import InboundMessage, inbound_handler
from rnpc_gateway.fhir.recovery import pending_retry_loop
from rnpc_gateway.fhir.routes import router as fhir_router
from rnpc_gateway.routes import redrive, router
from rnpc_gateway.settings import GatewaySettings
from rnpc_gateway.upstream import upstream_resource
from rnpc_shared import metrics
from rnpc_shared.contracts.events import (
    PIPELINE_TOPICS,
    TOPIC_EHR_INBOUND,
    TOPIC_EVIDENCE_MATCHED,
    TOPIC_RECOMMENDATION_ISSUED,
    TOPIC_SCORES_COMPUTED,
    EventHeader,
    RecommendationIssued,
    StageResult,
    dlq_topic,
)
from rnpc_shared.kafka.consumer import DeadLetter, DeadLetterRoute, Route
from rnpc_shared.auth import AuthError
from rnpc_shared.service import Runtime, create_service_app

log = logging.getLogger(__name__)


def on_dead_letter(session: Session, letter: DeadLetter) -> None:
    service.note_dead_letter(session, letter)


async def redrive_loop(runtime: Runtime) -> None:
    """Periodic re-drive; a failed pass (e.g. the database is down) is logged and counted, and
    the loop goes on, so /livez stays truthful."""
    settings: GatewaySettings = runtime.settings  # type: ignore[assignment]
    while True:
        await asyncio.sleep(settings.redrive_interval_s)  # a schedule, not synchronisation
        try:
            await redrive(runtime, timedelta(seconds=settings.redrive_after_s))
        except Exception:
            log.exception("re-drive pass failed; the next pass runs on schedule")
            metrics.BACKGROUND_ERRORS.labels("gateway", "redrive").inc()


def on_scored(session: Session, event: EventHeader, payload: StageResult) -> None:
    service.on_stage_result(session, "scoring", event.id, payload)


def on_matched(session: Session, event: EventHeader, payload: StageResult) -> None:
    service.on_stage_result(session, "evidence", event.id, payload)


def on_issued(session: Session, event: EventHeader, payload: RecommendationIssued) -> None:
    service.on_stage_result(session, "recommendation", event.id, payload)


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
    metrics.at_zero(metrics.REDRIVES, ("gateway",))  # RnpcRecordsRedriven sees the first re-drive
    metrics.at_zero(metrics.BACKGROUND_ERRORS, ("gateway", "redrive"), ("gateway", "fhir-pending-retry"))
    app = create_service_app(
        settings=settings,
        title="rNPC retreatment advisor — gateway",
        routers=[router, fhir_router, cds_router],
        routes={
            # The gateway reads only the reference and hashes of the scores and evidence events (their
            # results are skipped while parsing, never built), and the recommendation it serves.
            TOPIC_SCORES_COMPUTED: Route(StageResult, on_scored),
            TOPIC_EVIDENCE_MATCHED: Route(StageResult, on_matched),
            TOPIC_RECOMMENDATION_ISSUED: Route(RecommendationIssued, on_issued),
            TOPIC_EHR_INBOUND: Route(InboundMessage, inbound_handler(settings.kafka_max_message_bytes)),
            **{dlq_topic(topic): DeadLetterRoute(on_dead_letter) for topic in PIPELINE_TOPICS},
        },
        extra_tasks=[*([redrive_loop] if settings.run_consumer else []), *([pending_retry_loop] if settings.run_api else [])],
        resources=[upstream_resource, limits_resource],
    )
    app.add_exception_handler(AuthError, audit_refusal)  # 403s are audited (see audit_refusal)
    return app
