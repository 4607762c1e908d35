"""The maintenance API as the crew and the safety manager use it, over SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.context import AppContext
from core.catalogue import load_catalogue
from core.db import session_factory
from core.ingest import IngestStatus
from core.models_maintenance import InspectionTask, WorkOrder
from core.readings import SqlReadingsStore
from core.settings import Settings
from maintenance.schedule import generate_tasks
from maintenance.scheduler import MaintenanceConfig, MaintenanceService
from tests.maintenance.builders import (
    GIF,
    at,
    engine_for,
    plans,
    run_in_session,
    small_park,
    tiny_png,
)

NOW = at(2026, 11, 27, 10)
ALL_PASS = {"in_place": "pass", "gauge_green": "pass", "seal_intact": "pass"}
WANG = {"X-ParkGuard-User": "wang"}


def status() -> IngestStatus:
    return IngestStatus(True, "mqtt://127.0.0.1:1883", 0, 100, 0, 0, 0, {})


def make_app(engine: Engine, url: str, photo_dir: Path | None = None) -> FastAPI:
    sessions = session_factory(engine)
    ctx = AppContext(
        settings=Settings(database_url=url),
        engine=engine,
        sessions=sessions,
        readings=SqlReadingsStore(engine),
        catalogue=load_catalogue(),
        ingest_status=status,
        registry=CollectorRegistry(),
    )
    ctx.extras["maintenance"] = MaintenanceService(
        engine=engine,
        sessions=sessions,
        plans=plans(),
        config=MaintenanceConfig(photo_dir=photo_dir, photo_max_bytes=64 * 1024),
        clock=lambda: NOW,
    )
    app = create_app(ctx)
    return app


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = engine_for(db_url)
    small_park(engine)
    run_in_session(engine, generate_tasks, plans(), at(2026, 11, 27, 8))
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: Engine, db_url: str) -> Iterator[TestClient]:
    with TestClient(make_app(engine, db_url)) as test_client:
        yield test_client


def task_id(engine: Engine, subject: str) -> int:
    with Session(engine) as session:
        found = session.scalar(select(InspectionTask.id).where(InspectionTask.subject == subject))
        assert found is not None
        return found


def stored(engine: Engine) -> tuple[object, ...]:
    with Session(engine) as session:
        return (
            tuple(session.execute(select(InspectionTask.state, InspectionTask.note)).all()),
            session.scalar(select(func.count()).select_from(WorkOrder)),
        )


def test_plans_are_listed(client: TestClient) -> None:
    body = client.get("/api/v1/inspection-plans").json()
    assert body["timezone"] == "Asia/Shanghai"
    ext = body["plans"][0]
    assert ext["id"] == "ext" and ext["frequency"] == "monthly"
    assert ext["stricter"] == [{"zone_kinds": ["hazmat", "warehouse"], "frequency": "half_monthly"}]
    assert ext["checklist"][1] == {
        "id": "gauge_green",
        "zh": "压力表在绿区",
        "en": "Gauge in the green band",
        "device_types": None,
    }
    assert body["extinguisher_service"]["lead_days"] == 30


def test_the_crews_morning_view(client: TestClient) -> None:
    mine = client.get(
        "/api/v1/inspections?assignee=me&due=today", headers={"X-ParkGuard-User": "li"}
    )
    assert mine.status_code == 200
    body = mine.json()
    assert body["total"] == 1
    (lane,) = body["items"]
    assert (lane["plan_id"], lane["state"], lane["due_date"]) == ("lane", "open", "2026-11-27")
    assert lane["due_at"] == "2026-11-27T10:00:00.000Z"  # 18:00 in the park
    assert lane["period_start"] == "2026-11-26T16:00:00.000Z"  # midnight in the park
    wang = client.get("/api/v1/inspections?assignee=me", headers=WANG).json()
    assert {t["subject"] for t in wang["items"]} == {"ext-1", "ext-2", "ext-h"}
    assert (
        client.get("/api/v1/inspections?assignee=me&due=today", headers=WANG).json()["total"] == 0
    )
    month_end = client.get("/api/v1/inspections?due=2026-11-30").json()
    assert {t["plan_id"] for t in month_end["items"]} == {"ext", "inspection"}


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    [
        ("assignee=me", {"X-ParkGuard-User": "wang wei"}, "must be 1-64 letters"),
        ("due_from=2026-12-01&due_to=2026-11-01", {}, "the due range is empty"),
        ("due=yesterday", {}, None),
        ("due=2026-02-30", {}, "is not a date"),
        ("state=closed", {}, None),
        ("type=fire_engine", {}, "unknown device type 'fire_engine'"),
        ("zone=<script>", {}, None),
        ("limit=0", {}, None),
        ("assignee=" + "a" * 65, {}, None),
    ],
)
def test_bad_filters_are_422(
    client: TestClient, query: str, headers: dict[str, str], message: str | None
) -> None:
    response = client.get(f"/api/v1/inspections?{query}", headers=headers)
    assert response.status_code == 422, response.text
    if message:
        assert message in response.json()["detail"]


def test_filters_by_state_zone_type_and_pages(client: TestClient) -> None:
    assert client.get("/api/v1/inspections?zone=store").json()["total"] == 1
    assert client.get("/api/v1/inspections?type=extinguisher").json()["total"] == 3
    page = client.get("/api/v1/inspections?limit=2&offset=2").json()
    assert (page["total"], len(page["items"]), page["offset"]) == (5, 2, 2)
    assert client.get("/api/v1/inspections?state=done").json()["total"] == 0
    assert client.get("/api/v1/inspections?state=open,overdue").json()["total"] == 5


def test_complete_pass_then_conflict(client: TestClient, engine: Engine) -> None:
    tid = task_id(engine, "ext-1")
    done = client.post(
        f"/api/v1/inspections/{tid}/complete",
        json={"answers": ALL_PASS, "note": "<b>ok</b>"},
        headers=WANG,
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["work_order"] is None
    task = body["inspection"]
    assert (task["state"], task["result"], task["completed_by"]) == ("done", "pass", "wang")
    assert task["note"] == "<b>ok</b>"  # data is data: escaped where shown, not here
    again = client.post(f"/api/v1/inspections/{tid}/complete", json={"answers": ALL_PASS})
    assert again.status_code == 409
    assert "already completed" in again.json()["detail"]
    assert client.get(f"/api/v1/inspections/{tid}").json()["note"] == "<b>ok</b>"


def test_failed_check_returns_its_work_order_which_closes_with_the_fix(
    client: TestClient, engine: Engine
) -> None:
    tid = task_id(engine, "ext-h")
    answers = {**ALL_PASS, "gauge_green": "fail"}
    body = client.post(
        f"/api/v1/inspections/{tid}/complete", json={"answers": answers}, headers=WANG
    ).json()
    order = body["work_order"]
    assert (order["source"], order["source_ref"], order["device_id"]) == (
        "inspection",
        str(tid),
        "ext-h",
    )
    listed = client.get("/api/v1/work-orders?state=open&device=ext-h").json()
    assert [o["id"] for o in listed["items"]] == [order["id"]]
    no_fix = client.post(f"/api/v1/work-orders/{order['id']}/close", json={"fix": " "})
    assert no_fix.status_code == 422 and "fix is required" in no_fix.json()["detail"]
    closed = client.post(
        f"/api/v1/work-orders/{order['id']}/close", json={"fix": "充装 recharged"}, headers=WANG
    )
    assert closed.status_code == 200
    assert (closed.json()["state"], closed.json()["closed_by"]) == ("closed", "wang")
    assert (
        client.post(f"/api/v1/work-orders/{order['id']}/close", json={"fix": "x"}).status_code
        == 409
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"answers": {"in_place": "pass"}}, 422, "not answered: gauge_green, seal_intact"),
        ({"answers": ALL_PASS, "result": "maybe"}, 422, "result"),
        ({"answers": ALL_PASS, "extra": 1}, 422, "extra"),
        ({"answers": "all good"}, 422, "answers"),
        ({"answers": {**ALL_PASS, "in_place": "fail"}, "result": "pass"}, 422, "contradicts"),
        ({"answers": ALL_PASS, "note": "nul\u0000byte"}, 422, "note must not contain"),
    ],
)
def test_bad_completions_store_nothing(
    client: TestClient, engine: Engine, body: dict[str, object], status: int, message: str
) -> None:
    tid = task_id(engine, "ext-1")
    before = stored(engine)
    response = client.post(f"/api/v1/inspections/{tid}/complete", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert stored(engine) == before


def test_unknown_task_and_wrong_content_type(client: TestClient, engine: Engine) -> None:
    missing = client.post("/api/v1/inspections/987654/complete", json={"answers": ALL_PASS})
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no inspection task with id 987654"
    assert client.get("/api/v1/inspections/987654").status_code == 404
    assert client.get("/api/v1/inspections/abc").status_code == 422
    tid = task_id(engine, "ext-1")
    text = client.post(
        f"/api/v1/inspections/{tid}/complete",
        content=b"answers",
        headers={"content-type": "text/plain"},
    )
    assert text.status_code == 415
    broken = client.post(
        f"/api/v1/inspections/{tid}/complete",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422


def test_complete_with_a_photo_as_a_form(client: TestClient, engine: Engine) -> None:
    tid = task_id(engine, "ext-2")
    png = tiny_png()
    response = client.post(
        f"/api/v1/inspections/{tid}/complete",
        data={"answers": json.dumps(ALL_PASS), "note": "照片 photo"},
        files={"photo": ("gauge.jpg", png, "image/jpeg")},  # the name lies; the bytes decide
        headers=WANG,
    )
    assert response.status_code == 200, response.text
    url = response.json()["inspection"]["photo_url"]
    photo = client.get(url)
    assert photo.status_code == 200
    assert photo.headers["content-type"] == "image/png"
    assert photo.content == png
    assert client.get(f"/api/v1/inspections/{task_id(engine, 'ext-1')}/photo").status_code == 404


@pytest.mark.parametrize(
    ("photo", "status", "message"),
    [
        (GIF, 415, "JPEG, PNG or WebP"),
        (b"\xff\xd8\xff" + b"\x00" * (64 * 1024), 413, "larger than 65536 bytes"),
        (b"\xff\xd8\xff" + b"\x00" * (200 * 1024), 413, "a photo may be at most 65536 bytes"),
    ],
)
def test_photos_refused_store_nothing(
    client: TestClient, engine: Engine, photo: bytes, status: int, message: str
) -> None:
    tid = task_id(engine, "ext-2")
    before = stored(engine)
    response = client.post(
        f"/api/v1/inspections/{tid}/complete",
        data={"answers": json.dumps(ALL_PASS)},
        files={"photo": ("p.jpg", photo, "image/jpeg")},
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert stored(engine) == before


def test_form_with_bad_answers(client: TestClient, engine: Engine) -> None:
    tid = task_id(engine, "ext-2")
    response = client.post(f"/api/v1/inspections/{tid}/complete", data={"answers": "{oops"})
    assert response.status_code == 422
    assert "answers must be a JSON object" in response.json()["detail"]


def test_manual_work_orders(client: TestClient) -> None:
    created = client.post(
        "/api/v1/work-orders",
        json={"title": "喷头漏水 Nozzle leaking", "device_id": "ext-1", "assignee": "wang"},
        headers={"X-ParkGuard-User": "zhao"},
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert (order["opened_by"], order["zone_id"], order["source"]) == ("zhao", "office", "manual")
    assert (
        client.get(f"/api/v1/work-orders/{order['id']}").json()["title"]
        == "喷头漏水 Nozzle leaking"
    )
    mine = client.get("/api/v1/work-orders?assignee=me", headers=WANG).json()
    assert mine["total"] == 1
    for bad, message in (
        ({"title": ""}, "title is required"),
        ({"title": "x", "device_id": "ghost"}, "no device with id 'ghost'"),
        ({"title": "x", "device_id": "../etc"}, None),
        ({"title": "x", "surprise": True}, None),
    ):
        response = client.post("/api/v1/work-orders", json=bad)
        assert response.status_code == 422, response.text
        if message:
            assert message in response.json()["detail"]
    assert client.get("/api/v1/work-orders").json()["total"] == 1
    assert client.get("/api/v1/work-orders/424242").status_code == 404
    assert client.post("/api/v1/work-orders/424242/close", json={"fix": "x"}).status_code == 404


def test_calendar_feed_parses_back(client: TestClient) -> None:
    response = client.get("/api/v1/inspections.ics?assignee=wang")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(response.content)
    summaries = {str(e["summary"]) for e in calendar.walk("VEVENT")}
    assert summaries == {
        "灭火器检查 / Extinguisher check: extinguisher ext-h",
        "灭火器检查 / Extinguisher check ×2 — 区office / Zone office",
    }
    single = Calendar.from_ical(client.get("/api/v1/inspections.ics?group=false").content)
    assert len(list(single.walk("VEVENT"))) == 5
    assert client.get("/api/v1/inspections.ics?state=done").status_code == 200
    mine = client.get("/api/v1/inspections.ics?assignee=me", headers={"X-ParkGuard-User": "wang"})
    assert mine.content == response.content  # me: the signed-in caller


def test_photos_in_a_folder_through_the_api(engine: Engine, db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    with TestClient(make_app(engine, db_url, photo_dir=folder)) as client:
        tid = task_id(engine, "ext-1")
        response = client.post(
            f"/api/v1/inspections/{tid}/complete",
            data={"answers": json.dumps(ALL_PASS)},
            files={"photo": ("p.png", tiny_png(), "image/png")},
        )
        assert response.status_code == 200
        assert [p.suffix for p in folder.iterdir()] == [".png"]
        assert client.get(response.json()["inspection"]["photo_url"]).content == tiny_png()


def test_openapi_describes_every_field_and_parameter(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ours = {n for n in spec["components"]["schemas"] if n.startswith(("Inspection", "WorkOrder"))}
    assert {
        "InspectionPublic",
        "WorkOrderPublic",
        "WorkOrderCreate",
        "InspectionPlansPublic",
    } <= ours
    undescribed = [
        f"{name}.{field}"
        for name in ours
        for field, prop in spec["components"]["schemas"][name].get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
    for path, operations in spec["paths"].items():
        if "inspection" in path or "work-orders" in path:
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    assert parameter.get("description"), (path, parameter["name"])


texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=texts, b=texts, c=texts, d=texts, body=json_values)
def test_no_input_makes_a_500(
    client: TestClient, engine: Engine, a: str, b: str, c: str, d: str, body: object
) -> None:
    params = {"state": a, "due": b, "zone": c, "assignee": d, "type": a, "due_from": b}
    for path in ("/api/v1/inspections", "/api/v1/inspections.ics", "/api/v1/work-orders"):
        response = client.get(
            path, params=params, headers={b"X-ParkGuard-User": d.encode()[:64] or b"x"}
        )
        assert response.status_code < 500, response.text
    tid = task_id(engine, "ext-1")
    for target in (quote(a, safe=""), str(tid)):
        response = client.post(f"/api/v1/inspections/{target}/complete", json=body)
        assert response.status_code < 500, response.text
        response = client.post(
            f"/api/v1/inspections/{target}/complete",
            data={"answers": b, "result": c, "note": d},
        )
        assert response.status_code < 500, response.text
        response = client.post(f"/api/v1/work-orders/{target}/close", json=body)
        assert response.status_code < 500, response.text
    response = client.post("/api/v1/work-orders", json=body)
    assert response.status_code < 500, response.text
    response = client.post("/api/v1/work-orders", json={"title": a, "description": b, "kind": c})
    assert response.status_code < 500, response.text
