"""``GET /api/v1/dead-letters``: the messages ingest rejected, newest first, to inspect."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from api.deps import ID, SessionDep
from api.schemas import DeadLetterPublic, DeadLettersPublic
from api.timefmt import to_rfc3339
from core.models import DeadLetter

router = APIRouter(prefix="/api/v1", tags=["dead letters"])

PAGE_MAX = 500
OFFSET_MAX = 10_000_000


@router.get("/dead-letters", response_model=DeadLettersPublic, summary="Rejected messages")
def list_dead_letters(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Entries to skip.")] = 0,
    reason: Annotated[
        str | None,
        Query(pattern=r"^[a-z_]{1,32}$", description="Only this reason code, e.g. not_json."),
    ] = None,
    device: Annotated[str | None, Query(pattern=ID, description="Only this device id.")] = None,
) -> DeadLettersPublic:
    """Newest first, each with the stored start of its payload as text and as base64."""
    filters = [
        column == value
        for column, value in ((DeadLetter.reason, reason), (DeadLetter.device_id, device))
        if value is not None
    ]
    total = session.scalar(select(func.count()).select_from(DeadLetter).where(*filters)) or 0
    rows = session.scalars(
        select(DeadLetter)
        .where(*filters)
        .order_by(DeadLetter.received_ms.desc(), DeadLetter.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [
        DeadLetterPublic(
            id=row.id,
            received=to_rfc3339(row.received_ms),
            received_ms=row.received_ms,
            topic=row.topic,
            reason=row.reason,
            detail=row.detail,
            device_id=row.device_id,
            payload_size=row.payload_size,
            payload_stored=len(row.payload),
            payload_text=row.payload.decode("utf-8", errors="replace"),
            payload_base64=base64.b64encode(row.payload).decode("ascii"),
        )
        for row in rows
    ]
    return DeadLettersPublic(items=items, total=total, limit=limit, offset=offset)
