"""``/api/v1/plans`` and ``/api/v1/incidents`` through FastAPI (TestClient on an app assembled
here around the router, as the app serves it) on SQLite and PostgreSQL with the demo park's
plans, bad and hostile inputs, and the SSE stream through a real uvicorn server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from api.context import AppContext
from api.routers.plans import router
from core.catalogue import load_catalogue
from core.db import make_engine, session_factory
from core.ingest import IngestStatus
from core.readings import SqlReadingsStore
from core.settings import Settings
from rules.incident_service import IncidentService
from rules.plans import PlanSet, load_site_plans
from rules.spec import load_site_rules
from tests.collector.helpers import wait_for
from tests.conftest import DEMO_SITE, unique
from tests.live import Server, read_events
from tests.rules.builders import add_park

ACTIVATE = "/api/v1/plans/{}/activate"
BOSS = {"X-ParkGuard-User": "manager.li"}


@pytest.fixture(scope="module")
def plans() -> PlanSet:
    return load_site_plans(DEMO_SITE, load_site_rules(DEMO_SITE).by_id)


def context(url: str, service: IncidentService | None) -> AppContext:
    engine = make_engine(url)
    status = IngestStatus(True, "mqtt://127.0.0.1:1883", 0, 1, 0, 0, 0, {})
    return AppContext(
        settings=Settings(database_url=url),
        engine=engine,
        sessions=session_factory(engine),
        readings=SqlReadingsStore(engine),
        catalogue=load_catalogue(),
        ingest_status=lambda: status,
        registry=CollectorRegistry(),
        extras={"incidents": service} if service is not None else {},
    )


def assemble(ctx: AppContext) -> FastAPI:
    app = FastAPI()
    app.state.ctx = ctx
    app.include_router(router)
    return app


@pytest.fixture
def park(db_url: str) -> tuple[str, str]:
    """(url, zone prefix) of a fresh small park, the only site of its database."""
    engine = make_engine(db_url)
    site = unique("s")
    add_park(engine, site, f"{site}-")
    engine.dispose()
    return db_url, f"{site}-"


@pytest.fixture
def service(park: tuple[str, str], plans: PlanSet) -> Iterator[IncidentService]:
    made = IncidentService(park[0], plans, tick_s=0.05)
    made.start()
    yield made
    made.stop()


@pytest.fixture
def client(park: tuple[str, str], service: IncidentService) -> Iterator[TestClient]:
    ctx = context(park[0], service)
    with TestClient(assemble(ctx)) as test_client:
        yield test_client
    ctx.engine.dispose()


def start(client: TestClient, zone: str | None, plan: str = "fire", **body: Any) -> dict[str, Any]:
    answer = client.post(
        ACTIVATE.format(plan), json={"reason": "演练", "zone": zone} | body, headers=BOSS
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


# ---- plans ----------------------------------------------------------------------------------


def test_the_plans(client: TestClient) -> None:
    listed = client.get("/api/v1/plans").json()
    assert [p["id"] for p in listed["items"]] == [
        "chemical-leak",
        "earthquake",
        "fire",
        "public-health",
        "riot",
        "typhoon-heavy-rain",
    ]
    assert listed["missing_types"] == []
    fire = client.get("/api/v1/plans/fire").json()
    assert fire["triggers"] == [
        {"rule": "fire-confirmed", "min_severity": None},
        {"rule": "manual-call-point", "min_severity": None},
    ]
    assert fire["steps"][3]["id"] == "call-119" and fire["steps"][3]["deadline_s"] == 240
    assert fire["steps"][3]["role_title"] == {"zh": "消防控制室值班员", "en": "Security room"}
    assert fire["drill_every_s"] == 182 * 86400 and fire["contacts"][0]["phone"] == "119"
    assert client.get("/api/v1/plans/nope").status_code == 404
    assert client.get("/api/v1/plans/" + quote("../etc", safe="")).status_code in (404, 422)
    assert client.get("/api/v1/plans/BAD%20ID").status_code == 422


def test_the_app_serves_the_router() -> None:
    from api.app import ROUTERS  # here: the other tests need only the router

    assert router in ROUTERS


def test_every_route_answers_503_without_the_service(park: tuple[str, str]) -> None:
    ctx = context(park[0], None)
    with TestClient(assemble(ctx)) as bare:
        assert bare.get("/api/v1/plans").status_code == 503
        assert bare.get("/api/v1/incidents").status_code == 503
        assert bare.post(ACTIVATE.format("fire"), json={"reason": "x"}).status_code == 503
    ctx.engine.dispose()


# ---- starting a plan ------------------------------------------------------------------------


def test_starting_a_plan_by_hand_and_as_a_drill(client: TestClient, park: tuple[str, str]) -> None:
    _, p = park
    real = start(client, p + "w1", reason="巡逻发现A区冒烟")
    assert (real["plan"], real["zone"], real["drill"], real["trigger"]) == (
        "fire",
        p + "w1",
        False,
        "manual",
    )
    assert real["activated"]["by"] == "manager.li" and real["reason"] == "巡逻发现A区冒烟"
    assert real["progress"] == {"total": 13, "pending": 13, "overdue": 0, "done": 0, "skipped": 0}
    assert real["timeline"][0]["action"] == "activated" and real["timeline"][0]["from"] is None
    again = client.post(ACTIVATE.format("fire"), json={"reason": "again", "zone": p + "w1"})
    assert again.status_code == 409 and f"incident {real['id']}" in again.json()["detail"]
    drill = start(client, p + "w1", drill=True)
    assert drill["drill"] is True and drill["id"] != real["id"]
    whole = start(client, None, plan="typhoon-heavy-rain", reason="暴雨橙色预警")
    assert whole["zone"] is None and whole["zone_name"] is None


@pytest.mark.parametrize(
    ("plan", "body", "status", "detail"),
    [
        ("nope", {"reason": "x"}, 404, "no plan with id 'nope'"),
        ("fire", {}, 422, None),
        ("fire", {"reason": "   "}, 422, None),
        ("fire", {"reason": "x", "zone": "mars"}, 422, "no zone 'mars' in the site register"),
        ("fire", {"reason": "x", "zone": "a/../b"}, 422, None),
        ("fire", {"reason": "x", "site": "nowhere"}, 422, "no site 'nowhere'"),
        ("fire", {"reason": "x\x00y"}, 422, None),
        ("fire", {"reason": "x" * 2001}, 422, None),
        ("fire", {"reason": "x", "drill": "maybe"}, 422, None),
        ("fire", {"reason": "x", "extra": 1}, 422, None),
        ("fire", {"reason": ["x"]}, 422, None),
    ],
)
def test_bad_activations(
    client: TestClient, plan: str, body: dict[str, Any], status: int, detail: str | None
) -> None:
    answer = client.post(ACTIVATE.format(plan), json=body)
    assert answer.status_code == status, answer.text
    if detail is not None:
        assert detail in answer.json()["detail"]


def test_a_bad_acting_user_is_refused(client: TestClient, park: tuple[str, str]) -> None:
    answer = client.post(
        ACTIVATE.format("fire"),
        json={"reason": "x", "zone": park[1] + "w1"},
        headers={"X-ParkGuard-User": "<script>"},
    )
    assert answer.status_code == 422


def test_hostile_strings_are_kept_verbatim_and_never_interpreted(
    client: TestClient, park: tuple[str, str]
) -> None:
    hostile = '\'; DROP TABLE incidents; -- <script>alert(1)</script> {zone} %s \\u0000 🔥 "q"'
    made = start(client, park[1] + "w1", reason=hostile)
    assert made["reason"] == hostile
    n = made["id"]
    done = client.post(
        f"/api/v1/incidents/{n}/steps/on-site-confirm/complete", json={"note": hostile}
    ).json()
    assert done["steps"][1]["note"] == hostile
    assert client.get(f"/api/v1/incidents/{n}").json()["timeline"][-1]["note"] == hostile
    assert client.get("/api/v1/incidents").json()["total"] == 1


# ---- incidents ------------------------------------------------------------------------------


def test_listing_with_filters(client: TestClient, park: tuple[str, str]) -> None:
    _, p = park
    fire = start(client, p + "w1")
    drill = start(client, p + "w2", drill=True)
    quake = start(client, p + "w1", plan="earthquake")
    client.post(
        f"/api/v1/incidents/{quake['id']}/close", json={"summary": "误报", "skip_pending": True}
    )

    def ids(**params: Any) -> list[int]:
        answer = client.get("/api/v1/incidents", params=params)
        assert answer.status_code == 200, answer.text
        return [i["id"] for i in answer.json()["items"]]

    assert ids() == [quake["id"], drill["id"], fire["id"]]
    assert ids(state="open") == [drill["id"], fire["id"]]
    assert ids(state="closed") == [quake["id"]]
    assert ids(plan="fire") == [drill["id"], fire["id"]]
    assert ids(zone=p + "w2") == [drill["id"]]
    assert ids(drill="true") == [drill["id"]]
    assert ids(drill="false") == [quake["id"], fire["id"]]
    assert ids(limit=1, offset=1) == [drill["id"]]
    assert ids(until="2000-01-01T00:00:00Z") == []
    assert ids(since="2000-01-01T00:00:00+08:00", plan="earthquake") == [quake["id"]]
    page = client.get("/api/v1/incidents", params={"limit": 2}).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["items"][0]["state"] == "closed"
    for params in (
        {"state": "burning"},
        {"drill": "perhaps"},
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"since": "yesterday"},
        {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"zone": "a b"},
        {"plan": "UPPER"},
    ):
        assert client.get("/api/v1/incidents", params=params).status_code == 422, params


def test_one_incident_and_unknown_ids(client: TestClient, park: tuple[str, str]) -> None:
    made = start(client, park[1] + "w1", plan="chemical-leak")
    detail = client.get(f"/api/v1/incidents/{made['id']}").json()
    assert [s["id"] for s in detail["steps"]][:3] == [
        "raise-alarm",
        "no-ignition",
        "control-source",
    ]
    assert detail["alerts"] == [] and detail["durations"]["punctuality"] is None
    assert detail["steps"][0]["text"]["en"].startswith("Confirm the level-2 gas alarm in w1")
    assert client.get("/api/v1/incidents/999999").status_code == 404
    for bad in ("0", "-1", "abc", "9" * 30):
        assert client.get(f"/api/v1/incidents/{bad}").status_code == 422, bad


def test_steps_and_closing(client: TestClient, park: tuple[str, str]) -> None:
    n = start(client, park[1] + "w1")["id"]
    base = f"/api/v1/incidents/{n}"
    done = client.post(f"{base}/steps/cctv-check/complete", headers={"X-ParkGuard-User": "duty"})
    assert done.status_code == 200
    step = done.json()["steps"][0]
    assert (step["state"], step["by"], step["late"]) == ("done", "duty", False)
    again = client.post(f"{base}/steps/cctv-check/complete")
    assert again.status_code == 409 and "already done" in again.json()["detail"]
    needs_note = client.post(f"{base}/steps/call-119/complete", json={})
    assert needs_note.status_code == 422 and "needs a note" in needs_note.json()["detail"]
    noted = client.post(f"{base}/steps/call-119/complete", json={"note": "14:03 已报119"})
    assert noted.status_code == 200 and noted.json()["steps"][3]["note"] == "14:03 已报119"
    evidence = client.post(f"{base}/steps/recovery/complete", json={"note": "ok"})
    assert evidence.status_code == 422 and "needs evidence" in evidence.json()["detail"]
    assert client.post(f"{base}/steps/nope/complete").status_code == 404
    assert client.post(f"{base}/steps/..%2Fx/complete").status_code in (404, 422)
    assert client.post("/api/v1/incidents/999999/steps/cctv-check/complete").status_code == 404
    assert client.post(f"{base}/steps/evacuate/skip").status_code == 422  # no body
    assert client.post(f"{base}/steps/evacuate/skip", json={"reason": ""}).status_code == 422
    assert client.post(f"{base}/steps/evacuate/skip", json={"why": "x"}).status_code == 422
    skipped = client.post(f"{base}/steps/evacuate/skip", json={"reason": "夜间无人"})
    assert skipped.status_code == 200 and skipped.json()["steps"][4]["state"] == "skipped"
    assert client.post(f"{base}/steps/evacuate/skip", json={"reason": "x"}).status_code == 409
    assert client.post(f"{base}/close", json={}).status_code == 422
    pending = client.post(f"{base}/close", json={"summary": "扑灭"})
    assert pending.status_code == 409 and "pending step" in pending.json()["detail"]
    closed = client.post(
        f"{base}/close", json={"summary": "初起火灾已扑灭", "skip_pending": True}, headers=BOSS
    )
    assert closed.status_code == 200
    record = closed.json()
    assert record["state"] == "closed" and record["closed"]["by"] == "manager.li"
    assert record["progress"]["pending"] == 0 and record["progress"]["done"] == 2
    twice = client.post(f"{base}/close", json={"summary": "again"})
    assert twice.status_code == 409 and "already closed" in twice.json()["detail"]
    late = client.post(f"{base}/steps/headcount/complete", json={"note": "x"})
    assert late.status_code == 409 and "read-only" in late.json()["detail"]
    timeline = client.get(base).json()["timeline"]
    assert timeline[0]["action"] == "activated" and timeline[-1]["action"] == "closed"
    assert timeline[-1]["note"] == "初起火灾已扑灭" and timeline[-1]["actor"] == "manager.li"


def test_figures_keep_drills_apart(client: TestClient, park: tuple[str, str]) -> None:
    _, p = park
    start(client, p + "w1", drill=True)
    start(client, p + "w2", drill=True, plan="riot")
    real = start(client, p + "w1", plan="earthquake", reason="有震感")
    report = client.get("/api/v1/incidents/figures").json()
    assert report["real"]["incidents"] == 1 and report["real"]["by_plan"] == {"earthquake": 1}
    assert report["drills"]["incidents"] == 2
    assert sorted(d["plan"] for d in report["drills"]["items"]) == ["fire", "riot"]
    record = {r["plan"]: r for r in report["drill_record"]}
    assert record["fire"]["overdue"] is False and record["earthquake"]["overdue"] is True
    assert real["id"] not in [d["id"] for d in report["drills"]["items"]]
    assert client.get("/api/v1/incidents/figures", params={"since": "x"}).status_code == 422
    older = client.get("/api/v1/incidents/figures", params={"until": "2001-01-01T00:00:00Z"})
    assert older.json()["real"]["incidents"] == 0 and older.json()["drills"]["incidents"] == 0


# ---- the live stream ------------------------------------------------------------------------


def test_the_stream_carries_incident_transitions_and_resumes(
    park: tuple[str, str], plans: PlanSet
) -> None:
    url, p = park
    service = IncidentService(url, plans)
    service.start()
    ctx = context(url, service)
    server = Server(assemble(ctx))
    try:
        before = service.bus.subscriber_count

        def act() -> None:
            wait_for(lambda: service.bus.subscriber_count > before, timeout=5, what="subscriber")
            n = service.store.activate("riot", "op", "门口聚集", zone=p + "w1", drill=True)["id"]
            service.store.complete_step(n, "call-110", "op", note="已报110")
            service.store.close_incident(n, "op", "散去", skip_pending=True)

        actor = threading.Thread(target=act)
        with httpx.stream("GET", server.url + "/api/v1/incidents/stream", timeout=10) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            actor.start()
            events = read_events(answer, 10)  # activated, done, 7 skipped, closed
        actor.join()
        data = [json.loads(e["data"]) for e in events]
        assert {e["event"] for e in events} == {"incident"}
        assert [d["action"] for d in data] == ["activated", "step_done"] + ["step_skipped"] * 7 + [
            "closed"
        ]
        assert all(d["drill"] is True for d in data)
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and ids == [d["seq"] for d in data]
        with httpx.stream(
            "GET",
            server.url + "/api/v1/incidents/stream",
            timeout=10,
            headers={"Last-Event-ID": str(ids[-2])},
        ) as answer:
            missed = [json.loads(e["data"])["action"] for e in read_events(answer, 1)]
        assert missed == ["closed"]
        time.sleep(0.1)
    finally:
        server.stop()
        service.stop()
        ctx.engine.dispose()


# ---- fuzz -----------------------------------------------------------------------------------

SURROGATES: Literal["Cs"] = "Cs"
texts = st.text(st.characters(exclude_categories=(SURROGATES,)), max_size=200)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=texts,
    step=texts,
    zone=texts,
    reason=texts,
    since=texts,
    limit=texts,
    user=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
)
def test_no_input_makes_a_500(
    client: TestClient,
    park: tuple[str, str],
    plan: str,
    step: str,
    zone: str,
    reason: str,
    since: str,
    limit: str,
    user: str,
) -> None:
    headers = {"X-ParkGuard-User": user}
    target = quote(plan, safe="") or "x"
    for body in ({"reason": reason, "zone": zone}, {"reason": reason, "drill": True}):
        answer = client.post(ACTIVATE.format(target), json=body, headers=headers)
        assert answer.status_code < 500, answer.text
    params = {"plan": plan, "zone": zone, "since": since, "limit": limit, "drill": reason}
    assert client.get("/api/v1/incidents", params=params).status_code < 500
    listed = client.get("/api/v1/incidents", params={"limit": 1}).json()["items"]
    n = listed[0]["id"] if listed else 1
    step_id = quote(step, safe="") or "x"
    for action, body in (
        ("complete", {"note": reason, "evidence": zone}),
        ("skip", {"reason": reason}),
    ):
        answer = client.post(
            f"/api/v1/incidents/{n}/steps/{step_id}/{action}", json=body, headers=headers
        )
        assert answer.status_code < 500, answer.text
    answer = client.post(f"/api/v1/incidents/{n}/close", json={"summary": reason})
    assert answer.status_code < 500, answer.text
