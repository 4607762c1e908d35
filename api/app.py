"""The FastAPI application: ``create_app(ctx)`` serves the routers over one AppContext."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from api.context import AppContext
from api.routers import dead_letters, devices, health, metrics, readings

log = logging.getLogger(__name__)

#: The routers served, in order; a later issue adds its own here with one line.
ROUTERS: list[APIRouter] = [
    health.router,
    devices.router,
    readings.router,
    dead_letters.router,
    metrics.router,
]

#: Routers of modules being written in parallel, included when their module is there.
OPTIONAL_ROUTERS = ("api.routers.alerts",)


def create_app(ctx: AppContext) -> FastAPI:
    """The API over ``ctx`` (kept on ``app.state.ctx``); it owns none of ctx's resources."""
    app = FastAPI(
        title="ParkGuard",
        summary="Fire- and safety-facility monitoring of an industrial park.",
        version=_version(),
    )
    app.state.ctx = ctx
    for router in [*ROUTERS, *_optional_routers()]:
        app.include_router(router)
    app.add_exception_handler(OperationalError, _database_unavailable)
    return app


def _optional_routers() -> list[APIRouter]:
    found = []
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module is there but something it imports is not
                raise
            continue
        found.append(module.router)
    return found


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached is a 503 saying so, not a 500."""
    log.error("database unavailable: %s", exc)
    return JSONResponse({"detail": "the database is unavailable; try again shortly"}, 503)


def _version() -> str:
    try:
        return version("parkguard")
    except PackageNotFoundError:
        return "0+unknown"
