"""``GET /api/v1/health``: is ingest working right now, and if not, what is down."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Response
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from api.deps import CtxDep
from api.schemas import (
    BrokerHealthPublic,
    CollectorHealthPublic,
    DatabaseHealthPublic,
    DeadLetterCountsPublic,
    HealthPublic,
    IngestCountsPublic,
    QueueHealthPublic,
    ReadingsHealthPublic,
)
from api.timefmt import to_rfc3339
from core.models import DeadLetter

router = APIRouter(prefix="/api/v1", tags=["health"])


READINGS_FIELDS = set(ReadingsHealthPublic.model_fields)


@router.get(
    "/health",
    response_model=HealthPublic,
    summary="Broker, database, queue and dead letters",
    responses={503: {"model": HealthPublic, "description": "The database or broker is down."}},
)
def health(ctx: CtxDep, response: Response) -> HealthPublic:
    """HTTP 200 when the database answers and the collector is connected to the broker, else
    503 with the same body, whose ``problems`` say what is down. A collector in a process of
    its own (``parkguard api``) is judged by its last report in the database: none, or one
    older than three report intervals, is a problem."""
    status = ctx.ingest_status()
    database, by_reason = check_database(ctx.engine)
    broker = BrokerHealthPublic(
        connected=status.broker_connected, url=without_password(status.broker)
    )
    problems = []
    if not database.ok:
        problems.append(f"database: {database.error}")
    if status.problem is not None:
        problems.append(f"collector: {status.problem}")
    if not broker.connected:
        problems.append(f"broker: the collector is not connected to {broker.url}")
    response.status_code = 503 if problems else 200
    readings = {k: v for k, v in ctx.readings.status().items() if k in READINGS_FIELDS}
    if status.spool_backlog:  # a collector apart spools; this process only reads
        readings["spooling"] = True
    return HealthPublic(
        status="unhealthy" if problems else "ok",
        problems=problems,
        broker=broker,
        database=database,
        queue=QueueHealthPublic(depth=status.queue_depth, max=status.queue_max),
        readings=ReadingsHealthPublic.model_validate(readings),
        ingest=IngestCountsPublic(
            messages_in=status.messages_in, stored=status.stored, duplicates=status.duplicates
        ),
        dead_letters=DeadLetterCountsPublic(
            total=None if by_reason is None else sum(by_reason.values()),
            by_reason=by_reason,
            since_start=dict(status.dead_letters),
        ),
        collector=CollectorHealthPublic(
            source="live" if status.reported_ms is None and status.problem is None else "report",
            reported_at=_iso(status.reported_ms),
            last_message_at=_iso(status.last_message_ms),
        ),
    )


def _iso(ms: int | None) -> str | None:
    return to_rfc3339(ms) if ms is not None else None


def check_database(engine: Engine) -> tuple[DatabaseHealthPublic, dict[str, int] | None]:
    """``SELECT 1`` and the dead-letter count per reason, or why the database cannot answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            rows = connection.execute(
                select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason)
            )
            by_reason = {reason: int(count) for reason, count in rows}
    except SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        first_line = (str(cause).strip().splitlines() or [""])[0][:300]
        error = f"{type(cause).__name__}: {first_line}"
        return DatabaseHealthPublic(ok=False, error=error), None
    return DatabaseHealthPublic(ok=True, error=None), dict(sorted(by_reason.items()))


def without_password(url: str) -> str:
    """The URL with any password taken out (``mqtt://user@host:1883``)."""
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "…@" + url.rsplit("@", 1)[1]
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username}@{host}" if parts.username else host
    return parts._replace(netloc=netloc).geturl()
