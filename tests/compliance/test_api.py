"""``/api/v1/intactness``: the figure now, over a period and for one device, taking devices out
of service and back; every bad input is a 422 (or 404, 409) saying why, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from api.app import ROUTERS
from api.auth import Principal
from api.context import AppContext
from api.routers.intactness import router
from api.timefmt import to_rfc3339
from core.contract import now_ms
from tests.api.builders import FakeCollector, build_context
from tests.compliance import builders as b
from tests.compliance.builders import DAY, HOUR, MIN

NOW = now_ms()
USER = {"X-ParkGuard-User": "wang.wei"}


@pytest.fixture
def ctx(db_url: str) -> Iterator[AppContext]:
    context = build_context(db_url, FakeCollector())
    yield context
    context.engine.dispose()


def assemble(ctx: AppContext) -> FastAPI:
    """The router as the app serves it, without the app's sign-in (tested in tests/auth)."""
    app = FastAPI()
    app.state.ctx = ctx
    app.include_router(router)
    return app


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(assemble(ctx)) as test_client:
        yield test_client


def test_the_app_serves_the_router() -> None:
    assert router in ROUTERS


def test_a_signed_in_caller_is_the_acting_user(ctx: AppContext, park: Engine) -> None:
    app = assemble(ctx)

    @app.middleware("http")
    async def signed_in(request: Request, call_next: Any) -> Any:
        request.state.user = Principal(
            id=1, username="li.na", role="maintenance", display_name="", via="token"
        )
        return await call_next(request)

    with TestClient(app) as client:
        response = client.post(
            "/api/v1/intactness/devices/sd1/out-of-service",
            json={"reason": "relocated"},
            headers={"X-ParkGuard-User": "someone.else"},
        )
    assert response.status_code == 201, response.text
    assert response.json()["taken_by"] == "li.na"


@pytest.fixture
def park(ctx: AppContext) -> Engine:
    """Building B1 zone z1: two smoke detectors (sd2 offline for the last hour) and an
    extinguisher; outdoor zone lane: a fire-lane monitor; and a device of an unknown type."""
    engine = ctx.engine
    start = NOW - 10 * DAY
    b.make_park(
        engine,
        {"sd1": "smoke_detector", "sd2": "smoke_detector", "ext1": "extinguisher"},
        online_from=start,
        attributes={"ext1": {"agent": "co2", "manufacture_date": "2024-03-01"}},
    )
    b.make_park(engine, {"lane1": "fire_lane"}, zone="lane", building=None, online_from=start)
    b.make_park(engine, {"odd1": "sprinkler_head"}, zone="lane", building=None, online_from=start)
    b.outage(engine, "sd2", NOW - HOUR, None)
    return engine


def test_the_figure_now(client: TestClient, park: Engine) -> None:
    body = client.get("/api/v1/intactness").json()
    assert body["target_percent"] == 100
    assert "in_service_date" in body["definition"] and "offline" in body["definition"]
    assert body["overall"] == {
        "in_scope": 4,
        "intact": 3,
        "not_intact": 1,
        "ratio": 0.75,
        "percent": 75.0,
        "meets_target": False,
    }
    assert body["overall_percent"] == 75.0
    by_category = {c["category"]: (c["in_scope"], c["intact"]) for c in body["by_category"]}
    assert by_category == {"extinguisher": (1, 1), "fire_detection": (2, 1), "fire_lane": (1, 1)}
    detection = next(c for c in body["by_category"] if c["category"] == "fire_detection")
    assert (detection["name_en"], detection["percent"]) == ("Fire detection and alarm", 50.0)
    assert [(x["building_id"], x["in_scope"], x["intact"]) for x in body["by_building"]] == [
        (None, 1, 1),
        ("B1", 3, 2),
    ]
    assert [(x["zone_id"], x["building_id"], x["percent"]) for x in body["by_zone"]] == [
        ("lane", None, 100.0),
        ("z1", "B1", pytest.approx(66.6667)),
    ]
    [item] = body["non_intact"]
    assert (item["device_id"], item["category"], item["since_ms"]) == (
        "sd2",
        "fire_detection",
        NOW - HOUR,
    )
    assert item["reasons"] == [
        {
            "code": "offline",
            "since": to_rfc3339(NOW - HOUR),
            "since_ms": NOW - HOUR,
            "source": "presence",
            "detail": {"presence": "offline", "cause": "silence"},
        }
    ]
    assert body["non_intact_total"] == 1
    assert body["not_classified"] == ["odd1"]
    assert body["out_of_service"] == [] and body["not_yet_in_service"] == []


def test_taking_a_device_out_of_service_and_back(client: TestClient, park: Engine) -> None:
    out = client.post(
        "/api/v1/intactness/devices/sd2/out-of-service",
        json={"reason": "  detector head replaced  ", "expected_back": str(NOW + DAY)},
        headers=USER,
    )
    assert out.status_code == 201, out.text
    record = out.json()
    assert (record["device_id"], record["taken_by"], record["reason"]) == (
        "sd2",
        "wang.wei",
        "detector head replaced",
    )
    assert record["until"] is None and record["expected_back"] == to_rfc3339(NOW + DAY)
    again = client.post("/api/v1/intactness/devices/sd2/out-of-service", json={"reason": "again"})
    assert again.status_code == 409
    assert "out of service since" in again.json()["detail"]

    body = client.get("/api/v1/intactness").json()
    assert (body["overall"]["in_scope"], body["overall"]["intact"]) == (3, 3)
    assert body["overall"]["meets_target"] is True
    [listed] = body["out_of_service"]
    assert (listed["device_id"], listed["taken_by"], listed["reason"], listed["label"]) == (
        "sd2",
        "wang.wei",
        "detector head replaced",
        "smoke_detector sd2",
    )
    device = client.get("/api/v1/intactness/devices/sd2").json()
    assert device["status"] == "out_of_service"
    assert [r["code"] for r in device["reasons"]] == ["offline"]  # still shown, not counted
    assert device["out_of_service"]["taken_by"] == "wang.wei"

    back = client.post("/api/v1/intactness/devices/sd2/back-in-service", json={"note": "tested"})
    assert back.status_code == 200, back.text
    assert (back.json()["returned_by"], back.json()["return_note"]) == ("operator", "tested")
    assert back.json()["until_ms"] >= record["since_ms"]
    assert client.post("/api/v1/intactness/devices/sd2/back-in-service", json={}).status_code == 409
    records = client.get("/api/v1/intactness/devices/sd2").json()["out_of_service_records"]
    assert [(r["taken_by"], r["returned_by"]) for r in records] == [("wang.wei", "operator")]


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ({"reason": ""}, {}, 422, "reason"),
        ({"reason": "   "}, {}, 422, "reason"),
        ({}, {}, 422, "reason"),
        ({"reason": "x" * 2001}, {}, 422, "reason"),
        ({"reason": "bad\x00byte"}, {}, 422, "control characters"),
        ({"reason": "ok", "extra": 1}, {}, 422, "extra"),
        ({"reason": "ok", "expected_back": "tomorrow"}, {}, 422, "expected_back"),
        ({"reason": "ok", "expected_back": "2020-01-01T00:00:00Z"}, {}, 422, "future"),
        ({"reason": "ok"}, {"X-ParkGuard-User": "robert'); DROP TABLE devices;--"}, 422, "User"),
        ({"reason": "ok"}, {"X-ParkGuard-User": "x" * 65}, 422, "User"),
    ],
)
def test_bad_requests_to_take_out_change_nothing(
    client: TestClient,
    park: Engine,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    response = client.post(
        "/api/v1/intactness/devices/sd1/out-of-service", json=body, headers=headers
    )
    assert response.status_code == status, response.text
    assert says in response.text
    assert client.get("/api/v1/intactness").json()["out_of_service"] == []


def test_unknown_and_hostile_devices(client: TestClient, park: Engine) -> None:
    for method, path in (
        ("get", "/api/v1/intactness/devices/{}"),
        ("post", "/api/v1/intactness/devices/{}/out-of-service"),
        ("post", "/api/v1/intactness/devices/{}/back-in-service"),
    ):
        missing = client.request(method, path.format("nope"), json={"reason": "x"})
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no device with id 'nope'"}
        for hostile in ("a'; --", "x" * 65, "../etc/passwd", "é"):
            response = client.request(method, path.format(quote(hostile, safe="")), json={})
            assert response.status_code in (404, 422), (hostile, response.text)


def test_one_device_over_a_window(client: TestClient, park: Engine) -> None:
    start, end = NOW - 2 * DAY, NOW
    b.event(park, "ext1", NOW - DAY, "blocked")
    b.event(park, "ext1", NOW - DAY + 30 * MIN, "unblocked")
    body = client.get(
        "/api/v1/intactness/devices/ext1", params={"start": str(start), "end": str(end)}
    ).json()
    assert (body["status"], body["category"], body["reasons"]) == ("intact", "extinguisher", [])
    assert body["not_intact"] == [
        {
            "start": to_rfc3339(NOW - DAY),
            "start_ms": NOW - DAY,
            "end": to_rfc3339(NOW - DAY + 30 * MIN),
            "end_ms": NOW - DAY + 30 * MIN,
        }
    ]
    assert [(s["reason"], s["source"], s["detail"]["event"]) for s in body["stretches"]] == [
        ("blocked", "event", "blocked")
    ]
    assert body["window"]["not_intact_minutes"] == 30.0
    assert body["window"]["percent"] == round(100 * (2 * 24 * 60 - 30) / (2 * 24 * 60), 4)
    odd = client.get("/api/v1/intactness/devices/odd1").json()
    assert (odd["status"], odd["category"], odd["window"]) == ("not_classified", None, None)


def test_history_reproduces_itself_with_as_of(client: TestClient, park: Engine) -> None:
    period = {"start": to_rfc3339(NOW - 3 * DAY), "end": to_rfc3339(NOW - DAY), "step": "6h"}
    as_of = {**period, "as_of": str(NOW - DAY + HOUR)}
    first = client.get("/api/v1/intactness/history", params=as_of)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["overall"]["scope_minutes"] == body["overall"]["intact_minutes"] == 4 * 2 * 1440
    assert len(body["series"]) == 8 and body["step_ms"] == 6 * HOUR
    assert (body["as_of_ms"], body["end_ms"]) == (NOW - DAY + HOUR, NOW - DAY)
    # delivered a minute ago: the lane has been obstructed since two days ago
    b.event(park, "lane1", NOW - 2 * DAY, "obstruction_start", received=NOW - MIN)
    client.get("/api/v1/intactness")  # brings the condition log up to date
    assert client.get("/api/v1/intactness/history", params=as_of).json() == body
    now = client.get("/api/v1/intactness/history", params=period).json()
    assert now["overall"]["intact_minutes"] == body["overall"]["intact_minutes"] - 1440
    [outage] = now["longest_outages"]
    assert (outage["device_id"], outage["start_ms"], outage["reasons"]) == (
        "lane1",
        NOW - 2 * DAY,
        ["blocked"],
    )


def test_history_cuts_the_end_to_as_of_and_picks_a_step(client: TestClient, park: Engine) -> None:
    body = client.get(
        "/api/v1/intactness/history", params={"start": str(NOW - 7 * DAY), "end": str(NOW + DAY)}
    ).json()
    assert body["end_ms"] == body["as_of_ms"] <= now_ms()
    assert body["step_ms"] == 15 * MIN  # the shortest step giving at most 1000 samples
    assert body["target_percent"] == 100
    assert body["online_rate"]["percent"] < 100  # sd2 has been offline for the last hour
    [outage] = body["longest_outages"]
    assert (outage["device_id"], outage["end"], outage["reasons"]) == ("sd2", None, ["offline"])
    assert body["not_restored_outages"] == 1 and body["mean_time_to_restore_minutes"] is None


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"start": "yesterday"}, "neither epoch milliseconds nor an RFC 3339"),
        ({"start": "2026-05-01T00:00:00"}, "no UTC offset"),
        ({"start": "2026-13-01T00:00:00Z"}, "RFC 3339"),
        ({"start": str(NOW), "end": str(NOW - DAY)}, "must be before end"),
        ({"start": str(NOW - DAY), "end": str(NOW - DAY)}, "must be before end"),
        ({"start": "0", "end": str(NOW)}, "at most 400 days"),
        ({"start": str(NOW - DAY), "step": "0"}, "at least 1m"),
        ({"start": str(NOW - DAY), "step": "30s"}, "at least 1m"),
        ({"start": str(NOW - DAY), "step": "-5m"}, "not a duration"),
        ({"start": str(NOW - DAY), "step": "2d"}, "not be longer than the period"),
        ({"start": str(NOW - 300 * DAY), "step": "1m"}, "more than 10000 samples"),
        ({"start": str(NOW - DAY), "step": "99999999999999w"}, "not a duration"),
        ({"as_of": str(NOW + DAY)}, "must not be in the future"),
        ({"start": "1' OR '1'='1"}, "RFC 3339"),
        ({"start": "\x00\x01"}, "RFC 3339"),
        ({"start": "9" * 40}, "beyond the year 9999"),
        ({"longest": "-1"}, "greater than or equal"),
        ({"start": "x" * 65}, "at most 64 characters"),
    ],
)
def test_bad_history_requests(
    client: TestClient, park: Engine, params: dict[str, str], says: str
) -> None:
    response = client.get("/api/v1/intactness/history", params=params)
    assert response.status_code == 422, response.text
    assert says in response.text
    assert len(response.text) < 2000


def test_the_figure_now_pages_its_list(client: TestClient, park: Engine) -> None:
    b.outage(park, "sd1", NOW - 2 * HOUR, None)
    page = client.get("/api/v1/intactness", params={"limit": 1, "offset": 1}).json()
    assert page["non_intact_total"] == 2
    assert [x["device_id"] for x in page["non_intact"]] == ["sd2"]  # longest-standing first
    for bad in ({"limit": 0}, {"limit": 20_001}, {"offset": -1}, {"limit": "many"}):
        assert client.get("/api/v1/intactness", params=bad).status_code == 422


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=texts, end=texts, step=texts, as_of=texts, device=texts)
def test_no_input_makes_a_500(
    client: TestClient, park: Engine, start: str, end: str, step: str, as_of: str, device: str
) -> None:
    params = {"start": start, "end": end, "step": step, "as_of": as_of}
    assert client.get("/api/v1/intactness/history", params=params).status_code < 500
    target = quote(device, safe="") or "x"
    response = client.get(f"/api/v1/intactness/devices/{target}", params=params)
    assert response.status_code < 500, response.text
    response = client.post(
        f"/api/v1/intactness/devices/{target}/out-of-service",
        json={"reason": device, "expected_back": as_of},
        headers={"X-ParkGuard-User": step.encode("ascii", "ignore").decode()},
    )
    assert response.status_code < 500, response.text
