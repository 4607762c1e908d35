"""The FastAPI application: ``create_app(ctx)`` serves the routers over one AppContext."""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from api import audit, auth, console
from api.context import AppContext
from api.routers import (
    alerts,
    dead_letters,
    demo,
    devices,
    health,
    intactness,
    maintenance,
    metrics,
    plans,
    readings,
    reports,
)

log = logging.getLogger(__name__)

#: The routers served, in order; a later issue adds its own here with one line.
ROUTERS: list[APIRouter] = [
    health.router,
    devices.router,
    readings.router,
    dead_letters.router,
    alerts.router,
    maintenance.router,
    intactness.router,
    plans.router,
    demo.router,
    metrics.router,
    reports.router,
    auth.router,
    audit.router,
    console.router,
]


def create_app(ctx: AppContext) -> FastAPI:
    """The API over ``ctx`` (kept on ``app.state.ctx``); it owns none of ctx's resources."""
    app = FastAPI(
        title="ParkGuard",
        summary="Fire- and safety-facility monitoring of an industrial park.",
        version=_version(),
        dependencies=[Depends(auth.authorize)],  # sign-in and roles for every route: api.policy
    )
    app.state.ctx = ctx
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_middleware(audit.AuditMiddleware)
    return app


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached is a 503 saying so, not a 500."""
    log.error("database unavailable: %s", exc)
    return JSONResponse({"detail": "the database is unavailable; try again shortly"}, 503)


def _version() -> str:
    try:
        return version("parkguard")
    except PackageNotFoundError:
        return "0+unknown"
