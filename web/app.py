"""The Starlette application: routes, middleware, and what starts and stops with the process."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.extensions import SchemaExtension

from auth.actor import CLIENT_SOURCE_HEADER, CREDENTIAL_HEADERS
from auth.api_keys import record_key_uses
from auth.devices import DEVICE_HEADER
from auth.rate_limits import REFUSAL_HEADERS
from models import Database
from privacy_api.config import Config, load_config
from web import access_log, metrics, routes, tracing
from web.confirm_email import ConfirmEmailPages
from web.confirm_signup import ConfirmSignupPages
from web.exports import download_export
from web.graphql import GraphQLView
from web.html_pages import ASSETS as PAGE_ASSETS
from web.middleware import REQUEST_ID_HEADER, EdgeMiddleware, Shortcut
from web.observe import ObservedOperation
from web.parental_consent import ParentalConsentPages
from web.playground import ASSET_DIR
from web.receipts import receipt_keys
from web.reset_password import ResetPasswordPages
from web.services import Services, build_services
from web.unsubscribe import UnsubscribePages

logger = logging.getLogger("privacy_api.app")


async def healthz(request: Request) -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


# Seconds /readyz waits for the database and the rate-limit store together, whatever the database
# timeouts: probes commonly give up after 1 to 5 seconds, and one that times out learns nothing.
READINESS_WAIT = 1.5


async def _answers(check: Awaitable[object]) -> bool:
    try:
        await asyncio.wait_for(check, READINESS_WAIT)
    except Exception:
        return False
    return True


async def readyz(request: Request) -> JSONResponse:
    """The database and the shared rate-limit store answer; a load balancer sends traffic only
    then."""
    services: Services = request.app.state.services
    database, store = await asyncio.gather(
        _answers(services.database.check()), services.limiter.check(READINESS_WAIT)
    )
    if not database:
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    if not store:
        return JSONResponse({"status": "rate limit store unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def write_key_uses(services: Services) -> None:
    """The API key uses this process counted and has not written yet (see KeyUsage)."""
    taken = services.key_usage.take()
    if not taken:
        return
    try:
        async with services.database.transaction() as session:
            await record_key_uses(session, taken)
    except Exception:
        logger.warning("could not write the use counts of %d API keys", len(taken), exc_info=True)


# Work that runs beside the app for as long as it serves, until the event is set (`serve`'s
# in-process mail delivery, handed in by cli so that the HTTP edge and the workers stay apart).
Alongside = Callable[[Services, asyncio.Event], Coroutine[Any, Any, None]]


def create_app(
    config: Config | None = None,
    database: Database | None = None,
    *,
    alongside: Alongside | None = None,
) -> Starlette:
    """The ASGI app for `config` (read from the environment when not given), on `database`
    when one is given (see `build_services`), running `alongside` while it serves."""
    config = config or load_config()
    # Each worker process builds its app: its records are made as lean as the command's.
    access_log.lean_records()
    # aiosqlite logs each statement with its parameters at DEBUG: emails and phone numbers.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    services = build_services(config, database)
    observers: list[Callable[[], SchemaExtension]] = [ObservedOperation]
    if config.tracing:
        tracing.install_provider()
        tracing.trace_statements(services.database)
        observers.append(tracing.GraphQLTracing)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        worker: asyncio.Task[None] | None = None
        if alongside is not None:
            worker = asyncio.create_task(alongside(services, stop), name="alongside")
        # What start-up built (the schema, its plans, the ORM's mappers) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks all of it.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            stop.set()
            if worker is not None:
                await worker
            await write_key_uses(services)
            await services.database.dispose()
            if os.environ.get(metrics.MULTIPROCESS_DIR):
                # This worker's share of the live gauges (connections in use) ends with it.
                metrics.multiprocess.mark_process_dead(os.getpid())

    unsubscribe = UnsubscribePages(services)
    confirm_email = ConfirmEmailPages(services)
    parental_consent = ParentalConsentPages(services)
    confirm_signup = ConfirmSignupPages(services)
    reset_password = ResetPasswordPages(services)
    view = GraphQLView(services, observers)
    graphql = Route(routes.GRAPHQL, view, methods=["GET", "POST"])
    # Registered documents posted without an Origin (the app, servers, the CMS's backend) are
    # answered by the edge before the router; a browser's go through CORS as every request.
    shortcut = Shortcut(graphql, "POST", view.answer_lean) if view.compiled else None
    app = Starlette(
        routes=[
            graphql,
            Route(routes.EXPORT_DOWNLOAD, download_export, methods=["GET"]),
            Route(routes.UNSUBSCRIBE, unsubscribe.confirm, methods=["GET"]),
            Route(routes.UNSUBSCRIBE, unsubscribe.unsubscribe, methods=["POST"]),
            Route(routes.CONFIRM_EMAIL, confirm_email.ask, methods=["GET"]),
            Route(routes.CONFIRM_EMAIL, confirm_email.confirm, methods=["POST"]),
            Route(routes.RECEIPT_KEYS, receipt_keys, methods=["GET"]),
            Route(routes.PARENTAL_CONSENT, parental_consent.show, methods=["GET"]),
            Route(routes.PARENTAL_CONSENT, parental_consent.answer, methods=["POST"]),
            Route(routes.CONFIRM_SIGNUP, confirm_signup.ask, methods=["GET"]),
            Route(routes.CONFIRM_SIGNUP, confirm_signup.confirm, methods=["POST"]),
            Route(routes.RESET_PASSWORD, reset_password.ask, methods=["GET"]),
            Route(routes.RESET_PASSWORD, reset_password.reset, methods=["POST"]),
            Route(routes.HEALTHZ, healthz, methods=["GET"]),
            Route(routes.READYZ, readyz, methods=["GET"]),
            Mount(routes.PLAYGROUND_ASSETS, StaticFiles(directory=ASSET_DIR, check_dir=False)),
            Mount(routes.PAGE_ASSETS, StaticFiles(directory=PAGE_ASSETS)),
            *(
                [Route(routes.METRICS, metrics.endpoint(services.database), methods=["GET"])]
                if config.metrics
                else []
            ),
        ],
        middleware=[
            *([tracing.middleware()] if config.tracing else []),
            Middleware(
                EdgeMiddleware,
                production=config.production,
                log_format=config.log_format,
                shortcut=shortcut,
            ),
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.allowed_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST"],
                # Every header the API reads that a page may set; Sec-GPC, Cookie and User-Agent
                # are set by the browser itself and need no permission.
                allow_headers=[
                    *CREDENTIAL_HEADERS,
                    CLIENT_SOURCE_HEADER,
                    REQUEST_ID_HEADER,
                    DEVICE_HEADER,
                ],
                expose_headers=["X-Request-ID", *REFUSAL_HEADERS],
            ),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
