"""``/api/v1/alerts`` through FastAPI: TestClient on an app assembled here, and the SSE stream
through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.context import AppContext
from api.routers.alerts import router
from core.catalogue import load_catalogue
from core.contract import now_ms
from core.db import make_engine, session_factory
from core.ingest import IngestStatus
from core.readings import SqlReadingsStore
from core.settings import Settings
from rules.alerts import AlertFilter, AlertStore
from rules.engine import Clear, Raise
from tests.collector.helpers import wait_for
from tests.live import Server, read_events
from tests.rules.builders import rule, ruleset

SITE = "park1"


def rules() -> Any:
    return ruleset(
        rule(
            id="fire",
            kind="event",
            events=["fire_alarm"],
            severity="critical",
            title={"zh": "火警", "en": "Fire alarm"},
        ),
        rule(id="gas", kind="threshold", metric="gas_lel_pct", above=25),
    )


def fire(device: str = "smoke1", at: int | None = None) -> Raise:
    return Raise(
        "fire",
        f"device:{device}",
        "critical",
        at or now_ms(),
        SITE,
        device,
        "w1",
        {"event": "fire_alarm"},
    )


def context(url: str, store: AlertStore | None) -> AppContext:
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
        extras={"alerts": store} if store is not None else {},
    )


def assemble(ctx: AppContext) -> FastAPI:
    app = FastAPI()
    app.state.ctx = ctx
    app.include_router(router)
    return app


@pytest.fixture
def store(db_url: str) -> Iterator[AlertStore]:
    made = AlertStore(db_url, rules())
    made.open()
    yield made
    made.close()


@pytest.fixture
def client(db_url: str, store: AlertStore) -> Iterator[TestClient]:
    ctx = context(db_url, store)
    with TestClient(assemble(ctx)) as test_client:
        yield test_client
    ctx.engine.dispose()


def first_id(store: AlertStore) -> int:
    return int(store.query(AlertFilter())[0][0]["id"])


# ---- reading --------------------------------------------------------------------------------


def test_list_filters_and_pages(client: TestClient, store: AlertStore) -> None:
    t = now_ms()
    for i in range(3):
        store.apply([fire(f"d{i}", t + i)], t + i)
    store.apply([Raise("gas", "device:env1", "major", t + 10, SITE, "env1", "w2", {})], t + 10)
    page = client.get("/api/v1/alerts", params={"rule": "fire", "limit": 2, "offset": 1}).json()
    assert page["total"] == 3 and [a["device"] for a in page["items"]] == ["d1", "d0"]
    item = page["items"][0]
    assert item["state"] == "active" and item["title"] == {"zh": "火警", "en": "Fire alarm"}
    assert item["first_seen"].endswith("Z") and item["count"] == 1
    assert client.get("/api/v1/alerts", params={"severity": "major"}).json()["total"] == 1
    assert client.get("/api/v1/alerts", params={"zone": "w2"}).json()["total"] == 1
    assert client.get("/api/v1/alerts", params={"device": "d2"}).json()["total"] == 1
    assert client.get("/api/v1/alerts", params={"state": "open"}).json()["total"] == 4
    assert client.get("/api/v1/alerts", params={"until": str(t + 1)}).json()["total"] == 1
    assert (
        client.get("/api/v1/alerts", params={"since": "2020-01-01T08:00:00+08:00"}).json()["total"]
        == 4
    )


@pytest.mark.parametrize(
    "params",
    [
        {"state": "burning"},
        {"severity": "apocalyptic"},
        {"zone": "../../etc/passwd"},
        {"device": "a" * 65},
        {"rule": "DROP TABLE alerts;"},
        {"since": "yesterday"},
        {"since": "2026-05-01T08:00:00"},
        {"since": "2026-05-02T00:00:00Z", "until": "2026-05-01T00:00:00Z"},
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
    ],
)
def test_bad_filters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    answer = client.get("/api/v1/alerts", params=params)
    assert answer.status_code == 422, answer.text


def test_one_alert_with_its_journal(client: TestClient, store: AlertStore) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    client.post(f"/api/v1/alerts/{alert_id}/ack", headers={"X-ParkGuard-User": "wang.wei"})
    body = client.get(f"/api/v1/alerts/{alert_id}").json()
    assert body["id"] == alert_id and body["state"] == "acknowledged"
    assert [(e["action"], e["actor"], e["from"], e["to"]) for e in body["journal"]] == [
        ("raised", "system", None, "active"),
        ("acknowledged", "wang.wei", "active", "acknowledged"),
    ]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/999999", 404), ("/abc", 422), ("/0", 422), ("/99999999999999999999", 422)],
)
def test_unknown_or_malformed_alert_ids(client: TestClient, path: str, status: int) -> None:
    assert client.get("/api/v1/alerts" + path).status_code == status
    if status == 404:
        assert client.get("/api/v1/alerts" + path).json() == {"detail": "no alert with id 999999"}
        for action in ("ack", "unshelve"):
            assert client.post(f"/api/v1/alerts{path}/{action}").status_code == 404
        assert client.post(f"/api/v1/alerts{path}/resolve", json={"note": "x"}).status_code == 404
        shelf = {"reason": "x", "for": "1h"}
        assert client.post(f"/api/v1/alerts{path}/shelve", json=shelf).status_code == 404


# ---- acting -----------------------------------------------------------------------------------


def test_ack_defaults_to_operator_refuses_twice_and_bad_user_names(
    client: TestClient, store: AlertStore
) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    for bad in ("robert'); DROP TABLE--", "a" * 65, "<script>", "王伟"):
        answer = client.post(
            f"/api/v1/alerts/{alert_id}/ack",
            headers={"X-ParkGuard-User": bad.encode()},
        )
        assert answer.status_code == 422, bad
    acked = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "on my way"})
    assert acked.status_code == 200 and acked.json()["acknowledged"]["by"] == "operator"
    again = client.post(f"/api/v1/alerts/{alert_id}/ack")
    assert again.status_code == 409 and "not active" in again.json()["detail"]


def test_resolve_needs_a_note(client: TestClient, store: AlertStore) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    url = f"/api/v1/alerts/{alert_id}/resolve"
    assert client.post(url).status_code == 422
    assert client.post(url, json={}).status_code == 422
    assert client.post(url, json={"note": "   "}).status_code == 422
    done = client.post(url, json={"note": "detector cleaned"})
    assert done.status_code == 200 and done.json()["resolved"]["note"] == "detector cleaned"
    assert client.post(url, json={"note": "again"}).status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"for": "30m"},
        {"reason": "", "for": "30m"},
        {"reason": "test"},
        {"reason": "test", "for": "30m", "until": "2099-01-01T00:00:00Z"},
        {"reason": "test", "for": "forever"},
        {"reason": "test", "for": "30d"},
        {"reason": "test", "until": "2001-01-01T00:00:00Z"},
        {"reason": "test", "until": "tomorrow"},
        {"reason": "test", "for": "30m", "colour": "red"},
    ],
)
def test_shelve_refuses_without_reason_or_sane_expiry(
    client: TestClient, store: AlertStore, body: dict[str, Any]
) -> None:
    store.apply([fire()], now_ms())
    answer = client.post(f"/api/v1/alerts/{first_id(store)}/shelve", json=body)
    assert answer.status_code == 422, answer.text


def test_shelve_and_unshelve(client: TestClient, store: AlertStore) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    shelved = client.post(
        f"/api/v1/alerts/{alert_id}/shelve",
        json={"reason": "loop test by maintenance", "for": "30m"},
        headers={"X-ParkGuard-User": "tech1"},
    )
    assert shelved.status_code == 200
    body = shelved.json()
    assert body["state"] == "shelved" and body["lifecycle"] == "active"
    assert (
        body["shelved"]["by"] == "tech1" and body["shelved"]["reason"] == "loop test by maintenance"
    )
    assert client.get("/api/v1/alerts", params={"state": "shelved"}).json()["total"] == 1
    assert client.get("/api/v1/alerts", params={"state": "active"}).json()["total"] == 0
    back = client.post(f"/api/v1/alerts/{alert_id}/unshelve", json={"note": "test done"})
    assert back.status_code == 200 and back.json()["state"] == "active"
    assert client.post(f"/api/v1/alerts/{alert_id}/unshelve").status_code == 409


@pytest.mark.parametrize(
    "note",
    ["nul \x00 byte", "bell \x07", "x" * 2001],
)
def test_hostile_notes_are_refused(client: TestClient, store: AlertStore, note: str) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    for action, body in (
        ("ack", {"note": note}),
        ("resolve", {"note": note}),
        ("shelve", {"reason": note, "for": "1h"}),
    ):
        answer = client.post(f"/api/v1/alerts/{alert_id}/{action}", json=body)
        assert answer.status_code == 422, (action, answer.text)
    assert client.get(f"/api/v1/alerts/{alert_id}").json()["state"] == "active"


def test_markup_and_unicode_are_kept_verbatim_as_data(
    client: TestClient, store: AlertStore
) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    note = "<script>alert('x')</script> ' OR 1=1 -- 已到现场 🔥\nline two"
    assert client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"note": note}).status_code == 200
    journal = client.get(f"/api/v1/alerts/{alert_id}").json()["journal"]
    assert journal[-1]["note"] == note


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"note": 5}', b'"note"'])
def test_malformed_bodies(client: TestClient, store: AlertStore, content: bytes) -> None:
    store.apply([fire()], now_ms())
    answer = client.post(
        f"/api/v1/alerts/{first_id(store)}/resolve",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422


def test_without_the_alert_service_every_route_says_so(db_url: str) -> None:
    ctx = context(db_url, None)
    with TestClient(assemble(ctx)) as test_client:
        answer = test_client.get("/api/v1/alerts")
        assert answer.status_code == 503
        assert answer.json() == {"detail": "the alert service is not running"}
        assert test_client.post("/api/v1/alerts/1/ack").status_code == 503
    ctx.engine.dispose()


def test_the_app_serves_the_alerts_router(db_url: str, store: AlertStore) -> None:
    ctx = context(db_url, store)
    with TestClient(create_app(ctx)) as test_client:
        assert test_client.get("/api/v1/alerts").json()["total"] == 0
        paths = test_client.get("/openapi.json").json()["paths"]
        assert "/api/v1/alerts/{alert_id}/shelve" in paths and "/api/v1/alerts/stream" in paths
    ctx.engine.dispose()


# ---- the live stream ------------------------------------------------------------------------


def test_the_stream_carries_every_transition_in_commit_order(
    sqlite_url: str,
) -> None:
    store = AlertStore(sqlite_url, rules())
    store.open()
    ctx = context(sqlite_url, store)
    server = Server(assemble(ctx))
    try:
        before = store.bus.subscriber_count

        def act() -> None:
            wait_for(lambda: store.bus.subscriber_count > before, timeout=5, what="subscriber")
            store.apply([fire()], now_ms())
            store.apply([fire()], now_ms())  # a repeat: count 2, no journal id
            alert_id = first_id(store)
            store.acknowledge(alert_id, "op")
            store.apply([Clear("fire", "device:smoke1", now_ms(), "event alarm_cleared")], now_ms())

        actor = threading.Thread(target=act)
        with httpx.stream("GET", server.url + "/api/v1/alerts/stream", timeout=10) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            actor.start()
            events = read_events(response, 4)
        actor.join()
        data = [json.loads(e["data"]) for e in events]
        assert [
            (e["event"], d["action"], d["alert"]["count"])
            for e, d in zip(events, data, strict=True)
        ] == [
            ("alert", "raised", 1),
            ("alert", "repeated", 2),
            ("alert", "acknowledged", 2),
            ("alert", "resolved", 2),
        ]
        ids = [int(e["id"]) for e in events if "id" in e]
        assert len(ids) == 3 and ids == sorted(ids)
        assert [d["notify"] for d in data] == [True, False, True, True]

        # a client that lost the connection resumes after the last id it saw
        with httpx.stream(
            "GET",
            server.url + "/api/v1/alerts/stream",
            timeout=10,
            headers={"Last-Event-ID": str(ids[0])},
        ) as response:
            missed = [json.loads(e["data"])["action"] for e in read_events(response, 2)]
        assert missed == ["acknowledged", "resolved"]
        time.sleep(0.1)
    finally:
        server.stop()
        store.close()
        ctx.engine.dispose()


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    state=texts,
    zone=texts,
    since=texts,
    until=texts,
    limit=texts,
    note=texts,
    reason=texts,
    duration=texts,
    user=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
)
def test_no_input_makes_a_500(
    client: TestClient,
    store: AlertStore,
    state: str,
    zone: str,
    since: str,
    until: str,
    limit: str,
    note: str,
    reason: str,
    duration: str,
    user: str,
) -> None:
    store.apply([fire()], now_ms())
    alert_id = first_id(store)
    params = {"state": state, "zone": zone, "since": since, "until": until, "limit": limit}
    assert client.get("/api/v1/alerts", params=params).status_code < 500
    headers = {"X-ParkGuard-User": user}
    for action, body in (
        ("ack", {"note": note}),
        ("shelve", {"reason": reason, "for": duration}),
        ("shelve", {"reason": reason, "until": duration}),
        ("unshelve", {"note": note}),
        ("resolve", {"note": note}),
    ):
        answer = client.post(f"/api/v1/alerts/{alert_id}/{action}", json=body, headers=headers)
        assert answer.status_code < 500, (action, body, answer.text)
