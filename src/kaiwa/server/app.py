"""`create_app(settings)`: the ASGI application, its services built in the lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from kaiwa import __version__
from kaiwa.bus.shared import open_bus
from kaiwa.config import Settings
from kaiwa.files import open_blob_store
from kaiwa.files.expiry import sweep, sweep_interval
from kaiwa.knowledge.embed import build_embedder
from kaiwa.knowledge.index import Indexer
from kaiwa.knowledge.inflate import InflateLimits
from kaiwa.knowledge.search import KnowledgeSearch
from kaiwa.llm import ModelRegistry
from kaiwa.net import Fetcher, build_web_search
from kaiwa.runtime import Runtime, TokenSigner
from kaiwa.runtime.batches import BatchItems, batch_object
from kaiwa.runtime.indexing import IndexJobs
from kaiwa.runtime.jobs import JobWorker, Periodic
from kaiwa.runtime.observe import NO_OBSERVER, Observer, Observers
from kaiwa.runtime.replica import Replica
from kaiwa.runtime.stops import Stops
from kaiwa.runtime.sweeper import Sweeper
from kaiwa.runtime.tools.toolbox import Backends, Limits, Toolbox, chat_lookup
from kaiwa.runtime.webhooks import Webhooks, WebhookSender
from kaiwa.server import errors, idempotency
from kaiwa.server.deps import Services
from kaiwa.server.idempotency import PURGE_INTERVAL
from kaiwa.server.limits import BodyLimitMiddleware
from kaiwa.server.metrics import Metrics
from kaiwa.server.metrics_http import HttpMetrics
from kaiwa.server.metrics_observer import MetricsObserver
from kaiwa.server.ratelimit import create_limiter
from kaiwa.server.request_id import RequestIdMiddleware
from kaiwa.server.routes import (
    admin,
    agents,
    batches,
    chats,
    feedback,
    files,
    forms,
    health,
    knowledge,
    messages,
    responses,
    web,
)
from kaiwa.server.routes import metrics as metrics_route
from kaiwa.server.sse import DetachedBodies
from kaiwa.server.tracing import open_tracing
from kaiwa.store import secrets
from kaiwa.store.db import (
    checkpoint_forever,
    create_engine,
    migrate,
    offloaded,
    session_factory,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

JOBS_GRACE = 5.0
"""Seconds running jobs get, once the answers have drained, to record their outcome before
they are cancelled and given back to the queue."""
DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's and ReDoc's files (from the `fastapi-offline` package) are served."""


def create_app(
    settings: Settings | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> FastAPI:
    """The app. With `tracing_enabled`, `tracer_provider` and `meter_provider` replace the ones
    built from the `OTEL_*` variables (a test's in-memory exporter, an application's own)."""
    settings = settings or Settings()
    # None when off; refuses to start when on without the `otel` extra.
    tracing = open_tracing(settings, tracer_provider=tracer_provider, meter_provider=meter_provider)
    # Always there, so the server's call sites need no check; measured and served when enabled.
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        await migrate(engine)
        sessions = session_factory(engine)
        # Knowledge search, indexing, lookup and the answers' checkpoints may run long.
        bulk_engine = offloaded(engine)
        bulk_sessions = session_factory(bulk_engine)
        bulk_reads = session_factory(bulk_engine, read_only=True)
        checkpoints = asyncio.create_task(checkpoint_forever(bulk_engine))
        bus = await open_bus(
            settings.redis_url,
            retention=settings.log_retention,
            max_age=settings.log_max_age,
            max_bytes=settings.log_max_bytes_per_response,
            heartbeat_ttl=settings.heartbeat_ttl,
        )
        log = bus.log
        models = ModelRegistry(settings.providers)
        secret = await secrets.get_or_create(sessions, "resume_token")
        signer = TokenSigner(secret, ttl=settings.resume_token_ttl)
        read_sessions = session_factory(engine, read_only=True)
        embedder = build_embedder(settings.embeddings)
        knowledge = KnowledgeSearch(bulk_reads, embedder)
        file_store = open_blob_store(settings)
        indexer = Indexer(
            bulk_sessions,
            embedder,
            file_store,
            limits=InflateLimits(
                max_bytes=settings.max_extracted_bytes, max_ratio=settings.max_compression_ratio
            ),
        )
        fetcher = Fetcher(
            allow_private=settings.fetch_allow_private,
            max_bytes=settings.fetch_max_bytes,
            timeout=settings.fetch_timeout,
        )
        web_search = build_web_search(settings.web_search)
        toolbox = Toolbox(
            read_sessions=read_sessions,
            models=models,
            backends=Backends(
                knowledge=knowledge,
                web_search=web_search,
                web_search_results=settings.web_search.max_results,
                fetcher=fetcher,
                lookup=chat_lookup(bulk_reads),
            ),
            limits=Limits(
                max_rounds=settings.max_tool_rounds,
                tool_timeout=settings.tool_timeout,
                max_depth=settings.call_agent_max_depth,
            ),
        )
        stops = Stops(
            sessions, log, bus.control, bus.replicas.id, poll_interval=settings.sweep_interval
        )
        # Who watches each answer: metrics, traces; combined into one observer.
        observers: list[Observer] = []
        if settings.metrics_enabled:
            observers.append(MetricsObserver(metrics))
        if tracing is not None:
            observers.append(tracing.observer)
        runtime = Runtime(
            sessions=sessions,
            log=log,
            models=models,
            settings=settings,
            signer=signer,
            toolbox=toolbox,
            owner=bus.replicas.id,
            stops=stops,
            checkpoint_sessions=bulk_sessions,
            observer=Observers(*observers) if observers else NO_OBSERVER,
            on_cancel=metrics.cancelled if settings.metrics_enabled else None,
            trace_context=tracing.observer.reserve if tracing is not None else None,
        )
        # An owner is dead once its heartbeat has been missing for two beats; alone, at once.
        confirm = 2 * settings.heartbeat_interval if bus.shared else 0.0
        sweeper = Sweeper(sessions, log, bus.replicas, confirm=confirm)
        replica = Replica(
            bus.replicas,
            sweeper,
            stops,
            heartbeat_interval=settings.heartbeat_interval,
            sweep_interval=settings.sweep_interval,
        )
        await replica.start(runtime)
        app.state.sweeper = sweeper
        # Background work, shared by every replica through the `jobs` table.
        jobs = JobWorker(
            sessions,
            bus.bell,
            owner=bus.replicas.id,
            lease=settings.job_lease,
            poll_interval=settings.job_poll_interval,
            read_sessions=read_sessions,
        )
        batch_items = BatchItems(
            sessions=sessions,
            read_sessions=read_sessions,
            runtime=runtime,
            settings=settings,
            notify=jobs.notify,
        )
        webhook_sender = WebhookSender(
            allow_private=settings.fetch_allow_private,
            timeout=settings.batch_webhook_timeout,
            attempts=1,
            backoff=0.0,
            signature_header=settings.batch_webhook_signature_header,
        )
        periodic = [
            Periodic(
                "expire_files",
                sweep_interval(settings.ephemeral_file_ttl),
                lambda: sweep(sessions, file_store, ttl=settings.ephemeral_file_ttl),
            ),
            Periodic(
                "purge_idempotency_keys",
                PURGE_INTERVAL,
                lambda: idempotency.purge(sessions, ttl=settings.idempotency_ttl),
            ),
        ]
        jobs.register(
            IndexJobs(
                indexer,
                concurrency=settings.index_concurrency,
                attempts=settings.index_attempts,
                backoff=settings.index_backoff,
            ),
            batch_items,
            Webhooks(
                sessions,
                webhook_sender,
                attempts=settings.batch_webhook_attempts,
                backoff=settings.batch_webhook_backoff,
                batch_object=batch_object,
            ),
            *periodic,
        )
        for job in periodic:
            await job.ensure(sessions)
        await jobs.start()
        app.state.jobs = jobs
        app.state.sessions = sessions
        app.state.read_sessions = read_sessions
        app.state.embedder = embedder
        app.state.knowledge = knowledge
        app.state.indexer = indexer
        app.state.files = file_store
        limiter = create_limiter(settings, bus.redis)
        app.state.services = Services(
            settings=settings,
            runtime=runtime,
            log=log,
            bus=bus,
            models=models,
            signer=signer,
            limiter=limiter,
            toolbox=toolbox,
            metrics=metrics,
            jobs=jobs,
        )
        loop = asyncio.get_running_loop()
        draining: list[asyncio.Task[None]] = []

        def begin_shutdown() -> None:
            """Thread- and signal-safe: start draining running responses."""

            def start() -> None:
                if not draining:
                    batch_items.stop()
                    jobs.stop()
                    draining.append(loop.create_task(runtime.drain(settings.shutdown_grace)))

            loop.call_soon_threadsafe(start)

        app.state.begin_shutdown = begin_shutdown
        # What start-up built (modules, the app, the services) lives as long as the app: out of
        # the collector's sight, a full collection no longer walks it, which halves the pauses
        # a full collection makes every stream wait (120 ms to 30-50 ms at 50 new turns/s).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            checkpoints.cancel()
            with suppress(asyncio.CancelledError):
                await checkpoints
            batch_items.stop()
            jobs.stop()
            await runtime.drain(0)
            await jobs.aclose(grace=JOBS_GRACE)
            await webhook_sender.aclose()
            await limiter.aclose()
            await replica.aclose()
            if embedder is not None:
                await embedder.aclose()
            await fetcher.aclose()
            if web_search is not None:
                await web_search.aclose()
            await models.aclose()
            await bus.aclose()
            await engine.dispose()
            if bulk_engine is not engine:
                await bulk_engine.dispose()
            if tracing is not None:
                await tracing.aclose()

    # With traces on, FastAPI makes the request spans (none per SSE chunk).
    telemetry: dict[str, Any] = {"telemetry": tracing.fastapi} if tracing is not None else {}
    # /docs (Swagger UI) and /redoc load their scripts from kaiwa itself, not from a CDN.
    app = FastAPIOffline(
        title="kaiwa",
        version=__version__,
        summary="Self-hosted AI agent chat server, wire-compatible with the Codeer chat API",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        **telemetry,
    )
    app.state.metrics = metrics
    errors.install(app)
    for router in (
        chats.router,
        messages.router,
        forms.router,
        responses.router,
        feedback.router,
        batches.router,
        agents.router,
        knowledge.router,
        files.router,
        health.router,
        web.router,
    ):
        app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics_route.router)
    if settings.admin_key:
        app.include_router(admin.router)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Kaiwa-Response-Id", "Idempotent-Replayed", "X-Request-ID"],
    )
    # Outside the others: CORS preflights, 413s and unhandled errors carry the id too, and are
    # counted and timed.
    app.add_middleware(
        RequestIdMiddleware, metrics=HttpMetrics(metrics) if settings.metrics_enabled else None
    )
    # Outside FastAPI's own layers too: an SSE stream's body is written once all of them have
    # returned, so that an open stream keeps none of their frames, wrappers or scope entries.
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: DetachedBodies(build())  # type: ignore[method-assign]
    return app
