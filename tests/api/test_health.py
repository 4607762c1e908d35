"""GET /api/v1/health: 200 when the database answers and the broker is connected, else 503."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.health import without_password
from collector.heartbeat import STALE_AFTER_S, Heartbeat, read_status
from core.contract import now_ms
from tests.api.builders import FakeCollector, add_dead_letter, build_context


def test_healthy_reports_broker_database_queue_and_dead_letters(
    client: TestClient, ctx, collector: FakeCollector
) -> None:
    with ctx.sessions.begin() as session:
        for i, reason in enumerate(["not_json", "not_json", "bad_topic", "unknown_device"]):
            add_dead_letter(session, 1_000 + i, reason)

    response = client.get("/api/v1/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert body["broker"] == {"connected": True, "url": "mqtt://collector@127.0.0.1:1883"}
    assert body["database"] == {"ok": True, "error": None}
    assert body["queue"] == {"depth": 7, "max": 50_000}
    assert body["readings"]["backend"] in ("sqlite", "postgresql")
    assert body["readings"]["spooling"] is False and body["readings"]["backlog"] == 0
    assert body["ingest"] == {"messages_in": 120, "stored": 100, "duplicates": 3}
    assert body["dead_letters"] == {
        "total": 4,
        "by_reason": {"bad_topic": 1, "not_json": 2, "unknown_device": 1},
        "since_start": {"not_json": 2},
    }
    assert "s3cret" not in response.text


def test_empty_database_counts_zero_dead_letters(client: TestClient) -> None:
    body = client.get("/api/v1/health").json()
    assert body["dead_letters"]["total"] == 0
    assert body["dead_letters"]["by_reason"] == {}


def test_broker_disconnected_is_503_naming_the_broker(
    client: TestClient, collector: FakeCollector
) -> None:
    collector.disconnect()

    response = client.get("/api/v1/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["broker"]["connected"] is False
    assert body["database"]["ok"] is True
    assert body["problems"] == [
        "broker: the collector is not connected to mqtt://collector@127.0.0.1:1883"
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def dead_client(
    request: pytest.FixtureRequest, collector: FakeCollector, tmp_path: Path
) -> Iterator[TestClient]:
    """A client whose database cannot be opened: a SQLite "file" that is a folder, or a
    PostgreSQL port nothing listens on."""
    url = (
        f"sqlite:///{tmp_path}"
        if request.param == "sqlite"
        else "postgresql+psycopg://postgres@127.0.0.1:1/parkguard?connect_timeout=2"
    )
    context = build_context(url, collector)
    with TestClient(create_app(context)) as test_client:
        yield test_client
    context.engine.dispose()


def test_dead_database_is_503_naming_the_database(dead_client: TestClient) -> None:
    response = dead_client.get("/api/v1/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"]["ok"] is False
    assert body["database"]["error"]
    assert body["problems"] == [f"database: {body['database']['error']}"]
    assert body["dead_letters"]["total"] is None
    assert body["dead_letters"]["by_reason"] is None
    assert body["broker"]["connected"] is True


def test_dead_database_makes_other_routes_503_not_500(dead_client: TestClient) -> None:
    for path in ("/api/v1/devices", "/api/v1/devices/ext-001", "/api/v1/dead-letters"):
        response = dead_client.get(path)
        assert response.status_code == 503, path
        assert response.json() == {"detail": "the database is unavailable; try again shortly"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mqtt://user:pass@broker:1883", "mqtt://user@broker:1883"),
        ("mqtts://:only-pass@broker:8883", "mqtts://broker:8883"),
        ("mqtt://user@broker:1883", "mqtt://user@broker:1883"),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("embedded 127.0.0.1:1883", "embedded 127.0.0.1:1883"),
        ("mqtt://u:p@[::1", "…@[::1"),
    ],
)
def test_broker_url_never_shows_a_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


# ---- the API role: the collector runs in another process and reports to the database --------


@pytest.fixture
def api_role_client(db_url: str) -> Iterator[TestClient]:
    """The health route as ``parkguard api`` serves it: the collector's report, not a live one."""
    context = build_context(db_url, FakeCollector())
    context.ingest_status = lambda: read_status(context.engine)
    with TestClient(create_app(context)) as test_client:
        yield test_client
    context.engine.dispose()


def test_the_api_role_without_a_collector_report_is_503_saying_so(
    api_role_client: TestClient,
) -> None:
    response = api_role_client.get("/api/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["problems"] == [
        "collector: no collector has reported to this database",
        "broker: the collector is not connected to unknown",
    ]
    assert body["collector"] == {"source": "report", "reported_at": None, "last_message_at": None}
    assert body["database"]["ok"] is True


def test_the_api_role_reports_a_fresh_collector_and_then_a_stale_one(
    api_role_client: TestClient,
) -> None:
    engine = api_role_client.app.state.ctx.engine  # type: ignore[attr-defined]
    collector = FakeCollector()
    collector.current = replace(collector.current, last_message_ms=now_ms() - 500)
    Heartbeat(engine, "c1", collector.status, lambda: 12).report()
    fresh = api_role_client.get("/api/v1/health")
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert body["collector"]["source"] == "report" and body["collector"]["reported_at"]
    assert body["collector"]["last_message_at"]
    assert body["ingest"] == {"messages_in": 120, "stored": 100, "duplicates": 3}
    assert body["readings"]["spooling"] is True  # the collector says 12 lines wait in its spool

    long_ago = now_ms() - round(STALE_AFTER_S * 1000) - 5000
    Heartbeat(engine, "c1", collector.status, clock=lambda: long_ago).report()
    stale = api_role_client.get("/api/v1/health")
    assert stale.status_code == 503
    problems = stale.json()["problems"]
    assert problems[0].startswith("collector: the collector c1 last reported 2")
    assert "it is down or cannot reach the database" in problems[0]
    assert (
        problems[1] == "broker: the collector is not connected to mqtt://collector@127.0.0.1:1883"
    )
    assert "s3cret" not in stale.text


def test_serve_reports_its_live_collector(client: TestClient) -> None:
    body = client.get("/api/v1/health").json()
    assert body["collector"] == {"source": "live", "reported_at": None, "last_message_at": None}
