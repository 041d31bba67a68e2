"""Service runtime: the lifespan owns engine, producer, outbox relay and consumer, in that order."""

from __future__ import annotations

import asyncio
import logging
import functools
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from rnpc_shared import metrics
from rnpc_shared.auth import TokenVerifier, smart_security_scheme
from rnpc_shared.db import GroupCommit, Units, make_engine, make_session_factory, ping
from rnpc_shared.http import health_router, install_http_middleware
from rnpc_shared.kafka.consumer import DeadLetterRoute, EventConsumer, Route
from rnpc_shared.kafka.outbox import OutboxRelay, Retention
from rnpc_shared.kafka.producer import EventProducer
from rnpc_shared.logging import configure_logging
from rnpc_shared.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: ServiceSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: EventProducer | None = None
    relay: OutboxRelay | None = None
    consumer: EventConsumer | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    scheduled: list[asyncio.Task[None]] = field(default_factory=list)  # cancelled on shutdown
    draining: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    group_commit: GroupCommit = field(init=False)  # small writes of concurrent requests, one commit
    reads: Units = field(init=False)  # hot small reads (CDS Hooks: a patient's stored recommendation), one hop each

    def __post_init__(self) -> None:
        database_url = self.settings.database_url.get_secret_value()
        checkpoint_errors = metrics.BACKGROUND_ERRORS.labels(self.settings.service_name, "wal-checkpoint")
        self.group_commit = GroupCommit(database_url, on_checkpoint_error=checkpoint_errors.inc)
        self.reads = Units(database_url, threads=2, name="reads")

    def live(self) -> bool:
        if any(task.done() for task in [*self.tasks, *self.scheduled]):
            return False  # a background loop died: restart the process
        return self.consumer is None or self.consumer.polled_recently()

    async def ready(self) -> dict[str, bool]:
        """The checks run side by side, each bounded at 2 s: in turn they could outlast the probe's
        3 s timeout, and a probe that times out reads as not ready whatever the answer."""
        checks = {"accepting": not self.draining}
        database, broker = await asyncio.gather(
            self._database_reachable(), self.producer.broker_reachable() if self.producer is not None else _absent()
        )
        checks["database"] = database
        if broker is not None:
            checks["broker"] = broker
        if self.relay is not None:  # committed results that do not reach Kafka: say so
            checks["outbox"] = self.relay.oldest_pending_age_s <= self.settings.outbox_stuck_after_s
        return checks

    async def _database_reachable(self) -> bool:
        try:
            await asyncio.wait_for(ping(self.engine), timeout=2.0)
        except Exception:  # noqa: BLE001 - any failure means not reachable, which /readyz reports
            return False
        return True


async def _absent() -> None:
    return None


def _touch(connection: Connection) -> None:
    connection.exec_driver_sql("SELECT 1")


async def _warm_up(app: FastAPI, runtime: Runtime) -> None:
    """Paid at start, before /readyz, instead of by the first requests (and every request queued
    behind them): FastAPI builds an included router's routes on its first request (~150 ms for
    the gateway, measured), and the database units open their connections on first use. A
    database that is down does not stop the start: /readyz reports it."""
    app.openapi()
    try:
        await asyncio.gather(runtime.reads.run(_touch), runtime.reads.run(_touch), runtime.group_commit.run(_touch))
    except Exception:  # noqa: BLE001 - any failure here is the readiness check's to report
        log.warning("database not reachable at start; /readyz reports it")


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain-def dependency in a worker thread, a hop per request for nothing
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with (await get_runtime(request)).sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _supervised(name: str, coro_factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    async def runner() -> None:
        try:
            await coro_factory()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s stopped with an error; /livez now fails", name)
            raise

    return asyncio.create_task(runner(), name=name)


def create_service_app(
    *,
    settings: ServiceSettings,
    title: str,
    routers: list[APIRouter],
    routes: dict[str, Route[Any] | DeadLetterRoute] | None = None,
    extra_tasks: list[Callable[[Runtime], Awaitable[None]]] | None = None,
    resources: list[Callable[[Runtime], AbstractAsyncContextManager[None]]] | None = None,
) -> FastAPI:
    """One process per service: the API, and in its lifespan the consumer and the outbox relay."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url.get_secret_value())
        runtime = Runtime(settings=settings, engine=engine, sessions=make_session_factory(engine))
        app.state.runtime = runtime
        exit_stack = AsyncExitStack()
        for resource in resources or []:
            await exit_stack.enter_async_context(resource(runtime))
        if settings.run_relay or (settings.run_consumer and routes):
            runtime.producer = EventProducer(settings)
            await runtime.producer.start()
        if settings.run_relay and runtime.producer is not None:
            runtime.relay = OutboxRelay(
                service=settings.service_name,
                session_factory=runtime.sessions,
                producer=runtime.producer,
                poll_interval_s=settings.outbox_poll_interval_s,
                batch_size=settings.outbox_batch_size,
                max_attempts=settings.outbox_max_attempts,
                max_message_bytes=settings.kafka_max_message_bytes,
                housekeeping_interval_s=settings.housekeeping_interval_s,
                retention=Retention(
                    outbox_s=settings.outbox_retention_s,
                    inbox_s=settings.inbox_retention_s,
                    batch_rows=settings.retention_batch_rows,
                ),
            )
            runtime.tasks.append(_supervised("outbox-relay", runtime.relay.run))
        if settings.run_consumer and routes and runtime.producer is not None:
            runtime.consumer = EventConsumer(
                settings=settings,
                routes=routes,
                producer=runtime.producer,
                relay=runtime.relay,
            )
            runtime.tasks.append(_supervised("consumer", runtime.consumer.run))
        for task_factory in extra_tasks or []:
            runtime.scheduled.append(_supervised(getattr(task_factory, "__name__", "task"), functools.partial(task_factory, runtime)))
        await _warm_up(app, runtime)
        log.info("service started")
        try:
            yield
        finally:
            # Readiness 503 → stop fetching → drain → commit → leave group → relay → producer → engine.
            runtime.draining = True
            if runtime.consumer is not None:
                runtime.consumer.stop()
            if runtime.relay is not None:
                runtime.relay.stop()
            for task in runtime.scheduled:
                task.cancel()  # periodic jobs hold no state worth draining
            await asyncio.gather(*runtime.tasks, *runtime.scheduled, return_exceptions=True)
            if runtime.producer is not None:
                await runtime.producer.stop()
            await exit_stack.aclose()
            await runtime.group_commit.close()
            await runtime.reads.close()
            await engine.dispose()
            log.info("service stopped")

    settings.check_security()  # refuse to start without an issuer, or with the dev one outside dev
    app = FastAPI(title=title, lifespan=lifespan)
    app.state.token_verifier = TokenVerifier(
        settings.trusted_issuers(), audience=settings.audience, leeway_s=settings.auth_clock_skew_s
    )
    install_http_middleware(app, settings.service_name, settings.max_body_bytes, settings.body_timeout_s)
    _document_scopes(app, settings)
    app.include_router(
        health_router(
            service=settings.service_name, live=lambda: app.state.runtime.live(), ready=lambda: app.state.runtime.ready()
        )
    )
    if settings.run_api:  # a consumer-only Deployment still serves health and metrics
        for router in routers:
            app.include_router(router)
    return app


def _document_scopes(app: FastAPI, settings: ServiceSettings) -> None:
    """Add the scope catalogue to the OpenAPI security schemes (next to the bearer scheme)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["smart"] = smart_security_scheme(settings.auth_token_url or "about:blank")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# A young-generation collection every 20,000 allocations instead of CPython's 700: parsing one event
# builds thousands of short-lived objects, most freed by their reference counts before a later
# collection would walk them. Measured: -10 to -20% CPU per record across the four services (A/B,
# fresh stacks, bursts of 500). The price is longer young passes: 7-18 ms of CPU each in the
# gateway, over ~20,000 young objects, mostly parsed events' models. Every 5,000 measured worse on both
# CPU and the CDS Hooks tail.
GC_YOUNG_ALLOCATIONS = 20_000


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
    # What is built by now (modules, models' schemas, mappers, the app: ~140k objects in the
    # gateway) lives as long as the process. Frozen, it is left out of the collector's full
    # passes, each of which walked all of it with the event loop stopped (~40-100 ms: the HTTP
    # tail's stalls). Collected first, so no startup garbage is kept for good.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, *gc.get_threshold()[1:])
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
