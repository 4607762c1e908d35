"""``parkguard health ROLE``: the health checks of docker-compose.yml, one per role, each asking
whether that role does its work (exit 0) or saying in one sentence why not (exit 1).

- ``api``: the API answers ``GET /api/v1/health`` and its database is reachable. The
  collector's state is left to the collector's own check, so a collector outage does not
  make the API look broken (the health body still lists it).
- ``collector``: this collector (``PARKGUARD_MQTT_CLIENT_ID``) reported to the database within
  the last three report intervals, is running, and is connected to the broker.
- ``scheduler``: the maintenance scheduler's leader lease is held and not expired. It speaks
  for the scheduler role as a whole: with one instance (as in docker-compose.yml), for it.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from core.settings import load_settings

ROLES = ("api", "collector", "scheduler")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "health",
        help="exit 0 when a role does its work (compose health checks), else 1 with the reason",
    )
    parser.add_argument("role", choices=ROLES, help="api, collector or scheduler")
    parser.add_argument(
        "--url",
        default=None,
        help="the API's base URL (api; default http://127.0.0.1:PARKGUARD_API_PORT)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check = {"api": check_api, "collector": check_collector, "scheduler": check_scheduler}
    problem = check[args.role](args)
    if problem is not None:
        print(f"parkguard health {args.role}: {problem}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"parkguard health {args.role}: ok")  # noqa: T201
    return 0


def check_api(args: argparse.Namespace) -> str | None:
    base = args.url or f"http://127.0.0.1:{load_settings().api_port}"
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/api/v1/health", timeout=5) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:  # 503 still carries the body that says why
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return f"the API at {base} does not answer ({exc})"
    try:
        database = json.loads(body)["database"]
    except (ValueError, KeyError, TypeError):
        return f"the API at {base} answered something that is not ParkGuard's health"
    if not database.get("ok"):
        return f"the API's database is unavailable: {database.get('error')}"
    return None


def check_collector(_args: argparse.Namespace) -> str | None:
    from collector.heartbeat import read_status
    from core.db import make_engine

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        status = read_status(engine, client_id=settings.mqtt_client_id)
    finally:
        engine.dispose()
    if status.problem is not None:
        return status.problem
    if not status.broker_connected:
        return f"the collector is not connected to the broker {status.broker}"
    return None


def check_scheduler(_args: argparse.Namespace) -> str | None:
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from core.db import make_engine
    from core.models_maintenance import MaintenanceLease

    engine = make_engine(load_settings().database_url)
    try:
        with engine.connect() as connection:
            lease = connection.execute(
                select(MaintenanceLease.holder, MaintenanceLease.expires_at).where(
                    MaintenanceLease.name == "maintenance"
                )
            ).first()
    except SQLAlchemyError as exc:
        return f"the database is unavailable: {str(exc).splitlines()[0][:200]}"
    finally:
        engine.dispose()
    if lease is None:
        return "no scheduler holds the maintenance lease"
    holder, expires_at = lease
    if expires_at <= datetime.now(UTC):
        return f"the maintenance lease of {holder} expired at {expires_at.isoformat()}"
    return None
