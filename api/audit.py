"""The audit log: every state-changing request (POST, PUT, PATCH, DELETE under ``/api/``),
allowed or refused, becomes one row saying who (the signed-in user, or the name tried at a
sign-in), what (method, path, route template, target ids, status), when and from where (the
client address). ``GET /api/v1/audit`` reads it, newest first, for managers, auditors and
admins. Rows are never changed: the table refuses UPDATE and DELETE (migration 0007_auth).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import policy
from api.context import AppContext
from api.deps import SessionDep
from api.timefmt import parse_time, to_rfc3339
from core.contract import now_ms
from core.db import session_scope
from core.models_auth import AuditRecord

log = logging.getLogger(__name__)

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_MAX = 500
OFFSET_MAX = 10_000_000


class AuditMiddleware:
    """Writes one audit row after each state-changing API request has been answered.

    A row that cannot be written (the database is down) is logged and counted in
    ``failures``; the request's own answer is not changed by it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failures = 0
        self.written = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in AUDITED_METHODS
            or not str(scope["path"]).startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            row = _row(scope, status)
            ctx = getattr(scope["app"].state, "ctx", None)
            if isinstance(ctx, AppContext):
                await asyncio.to_thread(self._write, ctx, row)

    def _write(self, ctx: AppContext, row: AuditRecord) -> None:
        try:
            with session_scope(ctx.sessions) as session:
                session.add(row)
            self.written += 1
        except SQLAlchemyError as exc:
            self.failures += 1
            log.error(
                "audit row not written (%s %s by %s): %s",
                row.method,
                row.path,
                row.actor,
                str(exc).splitlines()[0][:300],
            )


def _row(scope: Scope, status: int) -> AuditRecord:
    state: dict[str, Any] = scope.get("state") or {}
    user = state.get("user")
    actor = getattr(user, "username", None) or state.get("audit_actor")
    route = getattr(scope.get("route"), "path_format", None)
    path = str(scope["path"])
    if not isinstance(route, str):
        route = policy.template_for(path)
    params = scope.get("path_params") or {}
    target = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))[:256] or None
    client = scope.get("client")
    return AuditRecord(
        at_ms=now_ms(),
        actor=str(actor)[:64] if actor else None,
        role=getattr(user, "role", None),
        method=str(scope["method"]),
        path=path[:512],
        route=route[:256] if route else None,
        target=target,
        status=status,
        client_ip=str(client[0])[:64] if client else None,
        detail=None,
    )


# ---- reading it -----------------------------------------------------------------------------


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: int
    """The row's id."""
    at: str
    """When (RFC 3339, UTC)."""
    at_ms: int
    """``at`` in epoch milliseconds."""
    actor: str | None
    """The user, the name tried at a sign-in, or null when nobody signed in."""
    role: str | None
    """The user's role then."""
    method: str
    """POST, PUT, PATCH or DELETE."""
    path: str
    """The path asked for."""
    route: str | None
    """The route's template, e.g. ``/api/v1/alerts/{alert_id}/ack``."""
    target: str | None
    """The ids in the path, e.g. ``alert_id=12``."""
    status: int
    """The HTTP status answered: 2xx done, 401/403 refused, 4xx rejected."""
    client_ip: str | None
    """The client's address."""


class AuditPublic(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    items: list[AuditEntryPublic]
    """This page, newest first."""
    total: int
    """Rows matching the filters, over all pages."""
    limit: int
    """The page size asked for."""
    offset: int
    """Rows skipped before this page."""


router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit", response_model=AuditPublic, summary="The audit log, newest first")
def read_audit(
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=64, description="Only this user.")] = None,
    method: Annotated[
        str | None, Query(pattern=r"^(POST|PUT|PATCH|DELETE)$", description="Only this method.")
    ] = None,
    since: Annotated[
        str | None, Query(max_length=64, description="At or after (RFC 3339 or epoch ms).")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description="Before (RFC 3339 or epoch ms).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Rows to skip.")] = 0,
) -> AuditPublic:
    filters: list[Any] = []
    if actor is not None:
        filters.append(AuditRecord.actor == actor)
    if method is not None:
        filters.append(AuditRecord.method == method)
    try:
        if since is not None:
            filters.append(AuditRecord.at_ms >= parse_time(since, "since"))
        if until is not None:
            filters.append(AuditRecord.at_ms < parse_time(until, "until"))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    total = session.scalar(select(func.count()).select_from(AuditRecord).where(*filters)) or 0
    rows = session.scalars(
        select(AuditRecord)
        .where(*filters)
        .order_by(AuditRecord.at_ms.desc(), AuditRecord.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [
        AuditEntryPublic(
            id=r.id,
            at=to_rfc3339(r.at_ms),
            at_ms=r.at_ms,
            actor=r.actor,
            role=r.role,
            method=r.method,
            path=r.path,
            route=r.route,
            target=r.target,
            status=r.status,
            client_ip=r.client_ip,
        )
        for r in rows
    ]
    return AuditPublic(items=items, total=total, limit=limit, offset=offset)
