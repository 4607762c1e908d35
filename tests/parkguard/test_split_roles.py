"""The collector role and the API role apart, on one database (SQLite file and PostgreSQL) and a
broker of the test's own, wired as ``parkguard collect`` and ``parkguard api`` wire them: what
the rules process does reaches the API's SSE streams, and what people do in the API reaches
the rules engine and the MQTT alerts topic, each once and in seq order."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.contract import encode_event, encode_telemetry, now_ms, topic_for
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import unique
from tests.live import read_events
from tests.parkguard.split import (
    DETECTORS,
    LANE,
    SITE_ID,
    AlertsTopic,
    Split,
    quick_site,
    split_roles,
)

WANG = {"X-ParkGuard-User": "wang", "X-ParkGuard-Role": "operator"}


@pytest.fixture
def split(db_url: str, private_broker: tuple[str, int], tmp_path: Path) -> Iterator[Split]:
    with split_roles(db_url, private_broker, quick_site(tmp_path)) as roles:
        yield roles


@pytest.fixture
def topic(private_broker: tuple[str, int]) -> Iterator[AlertsTopic]:
    watcher = AlertsTopic(private_broker)
    yield watcher
    watcher.stop()


def fire(broker: tuple[str, int], *devices: str) -> None:
    at = now_ms()
    publish_all(
        broker,
        [(topic_for(SITE_ID, d, "event"), encode_event(at, at, "fire_alarm")) for d in devices],
    )


def lane(broker: tuple[str, int], obstructed: bool) -> None:
    at = now_ms()
    payload = encode_telemetry(at, at, {"obstructed": obstructed})
    publish_all(broker, [(topic_for(SITE_ID, LANE, "telemetry"), payload)])


def open_alerts(split: Split, rule: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{split.url}/api/v1/alerts",
        params={"rule": rule, "state": "open"},
        headers=WANG,
        timeout=10,
    )
    answer.raise_for_status()
    return list(answer.json()["items"])


def act(split: Split, path: str, body: dict[str, Any]) -> None:
    """A person's action in the API role, as wang of the security room."""
    answer = httpx.post(f"{split.url}{path}", json=body, headers=WANG, timeout=10)
    assert answer.status_code == 200, answer.text


def subscribed(split: Split, extra: str) -> int:
    """Subscribers of the API's bus for ``extra`` ("alerts" store or "incidents" desk)."""
    ctx = split.server.server.config.app.state.ctx
    store = ctx.extras[extra] if extra == "alerts" else ctx.extras[extra].store
    return int(store.bus.subscriber_count)


def test_a_fire_alarm_handled_by_the_collector_role_reaches_the_api_roles_streams(
    split: Split, private_broker: tuple[str, int]
) -> None:
    base = split.url
    with (
        httpx.stream("GET", f"{base}/api/v1/alerts/stream", headers=WANG, timeout=30) as alerts,
        httpx.stream(
            "GET", f"{base}/api/v1/incidents/stream", headers=WANG, timeout=30
        ) as incidents,
    ):
        wait_for(lambda: subscribed(split, "alerts") > 0, timeout=10, what="alerts subscriber")
        wait_for(lambda: subscribed(split, "incidents") > 0, timeout=10, what="incidents one")
        fire(private_broker, *DETECTORS)
        alert_events = read_events(alerts, 3)
        incident_events = read_events(incidents, 1)
    changes = [json.loads(e["data"]) for e in alert_events]
    assert sorted((c["action"], c["alert"]["rule"], c["alert"]["device"]) for c in changes) == [
        ("raised", "fire-confirmed", None),
        ("raised", "fire-prealarm", DETECTORS[0]),
        ("raised", "fire-prealarm", DETECTORS[1]),
    ]
    seqs = [int(e["id"]) for e in alert_events]
    assert seqs == sorted(set(seqs))
    activated = json.loads(incident_events[0]["data"])
    assert activated["action"] == "activated" and activated["incident"]["plan"] == "fire"
    assert activated["actor"] == "system"

    # a console that lost its connection resumes after the first event it saw: the rest is
    # replayed from the journal, and what the collector role does next follows live, once
    with httpx.stream(
        "GET",
        f"{base}/api/v1/alerts/stream",
        headers=WANG | {"Last-Event-ID": str(seqs[0])},
        timeout=30,
    ) as resumed:
        before = subscribed(split, "alerts")
        lane_thread = threading.Thread(target=lane, args=(private_broker, True))
        wait_for(lambda: subscribed(split, "alerts") >= before, timeout=10, what="resumed")
        lane_thread.start()
        later = read_events(resumed, 3)
        lane_thread.join()
    assert [int(e["id"]) for e in later[:2]] == seqs[1:]
    live = json.loads(later[2]["data"])
    assert (live["action"], live["alert"]["rule"]) == ("raised", "fire-lane-obstructed")
    assert int(later[2]["id"]) > seqs[-1]


def test_a_detector_alarming_again_shows_in_the_api_roles_stream_on_postgresql(
    pg_url: str, private_broker: tuple[str, int], tmp_path: Path
) -> None:
    """A repeat (count up, last seen) has no journal row: on PostgreSQL the collector role's
    notification names it and the API role reads it back, so a console's count follows a
    detector that keeps alarming. (On SQLite repeats stay in the process that made them.)"""
    with (
        split_roles(pg_url, private_broker, quick_site(tmp_path)) as split,
        httpx.stream(
            "GET", f"{split.url}/api/v1/alerts/stream", headers=WANG, timeout=30
        ) as alerts,
    ):
        wait_for(lambda: subscribed(split, "alerts") > 0, timeout=10, what="alerts subscriber")
        fire(private_broker, DETECTORS[0])
        listed = f"{split.url}/api/v1/alerts?device={DETECTORS[0]}"
        wait_for(lambda: httpx.get(listed, headers=WANG).json()["total"] == 1, what="the alert")
        time.sleep(0.01)  # a later message: its own timestamp and seq
        fire(private_broker, DETECTORS[0])
        events = read_events(alerts, 2)
    raised, repeated = (json.loads(e["data"]) for e in events)
    assert (raised["action"], raised["alert"]["count"]) == ("raised", 1)
    assert (repeated["action"], repeated["alert"]["count"]) == ("repeated", 2)
    assert repeated["alert"]["id"] == raised["alert"]["id"]
    assert repeated["alert"]["last_seen_ms"] > raised["alert"]["last_seen_ms"]
    assert "id" not in events[1]  # not journaled: nothing to resume from


def test_a_persons_resolve_in_the_api_role_makes_the_rules_role_forget_and_goes_out_on_mqtt(
    split: Split, private_broker: tuple[str, int], topic: AlertsTopic
) -> None:
    lane(private_broker, True)
    wait_for(lambda: bool(open_alerts(split, "fire-lane-obstructed")), what="the lane alert")
    first = open_alerts(split, "fire-lane-obstructed")[0]

    act(split, f"/api/v1/alerts/{first['id']}/resolve", {"note": "the truck has gone"})

    # the rules role carries the person's resolve on MQTT...
    wait_for(lambda: bool(topic.of(action="resolved")), what="the resolve on MQTT")
    # ...and forgot the alert: the lane is still blocked, so after its `for` a new one
    wait_for(
        lambda: any(a["id"] != first["id"] for a in open_alerts(split, "fire-lane-obstructed")),
        what="a fresh alert",
    )
    second = open_alerts(split, "fire-lane-obstructed")[0]
    wait_for(lambda: len(topic.of(rule="fire-lane-obstructed")) >= 3, what="the new raise")
    carried = [
        (m["action"], m["actor"], m["alert"]["id"]) for m in topic.of(rule="fire-lane-obstructed")
    ]
    assert carried == [
        ("raised", "system", first["id"]),
        ("resolved", "wang", first["id"]),
        ("raised", "system", second["id"]),
    ]
    seqs = [m["seq"] for m in topic.of(rule="fire-lane-obstructed")]
    assert seqs == sorted(set(seqs))


def test_a_step_done_in_the_api_role_goes_out_on_mqtt_from_the_rules_role_once(
    split: Split, private_broker: tuple[str, int], topic: AlertsTopic
) -> None:
    base = split.url
    fire(private_broker, *DETECTORS)

    def incident() -> dict[str, Any] | None:
        items = httpx.get(
            f"{base}/api/v1/incidents", params={"state": "open"}, headers=WANG, timeout=10
        ).json()["items"]
        return items[0] if items else None

    wait_for(lambda: incident() is not None, what="the fire incident")
    found = incident()
    assert found is not None
    with httpx.stream("GET", f"{base}/api/v1/incidents/stream", headers=WANG, timeout=30) as stream:
        wait_for(lambda: subscribed(split, "incidents") > 0, timeout=10, what="subscriber")
        path = f"/api/v1/incidents/{found['id']}/steps/on-site-confirm/complete"
        act(split, path, {"note": "smoke seen at rack 12"})
        events = read_events(stream, 1)
    step = json.loads(events[0]["data"])
    assert (step["action"], step["actor"], step["step"]["id"]) == (
        "step_done",
        "wang",
        "on-site-confirm",
    )

    wait_for(lambda: bool(topic.of(type="incident", action="step_done")), what="step on MQTT")
    activated = topic.of(type="incident", action="activated")
    assert len(activated) == 1 and activated[0]["incident"]["id"] == found["id"]
    steps = topic.of(type="incident", action="step_done")
    assert [(m["seq"], m["actor"]) for m in steps] == [(step["seq"], "wang")]


def test_the_api_roles_health_reads_the_collectors_report(
    split: Split, private_broker: tuple[str, int]
) -> None:
    lane(private_broker, False)

    def health() -> httpx.Response:
        return httpx.get(f"{split.url}/api/v1/health", timeout=10)

    wait_for(lambda: health().json()["ingest"]["messages_in"] >= 1, what="a report")
    fresh = health()
    assert fresh.status_code == 200, fresh.text
    body = fresh.json()
    assert body["collector"]["source"] == "report"
    assert body["collector"]["last_message_at"] is not None
    assert body["broker"]["connected"] is True

    metrics = httpx.get(f"{split.url}/metrics", headers=WANG, timeout=10).text
    assert "parkguard_collector_up 1.0" in metrics
    assert "parkguard_messages_in_total" in metrics

    split.collector.stop()  # its last report says it stopped
    down = health()
    assert down.status_code == 503
    problems = down.json()["problems"]
    assert any(p.startswith("collector: the collector split") and "stopped" in p for p in problems)
    metrics = httpx.get(f"{split.url}/metrics", headers=WANG, timeout=10).text
    assert "parkguard_collector_up 0.0" in metrics


READS = [
    "/api/v1/health",
    "/api/v1/devices",
    f"/api/v1/devices/{LANE}",
    f"/api/v1/devices/{LANE}/readings?metric=obstructed",
    "/api/v1/dead-letters",
    "/api/v1/alerts",
    "/api/v1/inspection-plans",
    "/api/v1/inspections",
    "/api/v1/inspections.ics",
    "/api/v1/work-orders",
    "/api/v1/intactness",
    "/api/v1/intactness/history?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z",
    f"/api/v1/intactness/devices/{LANE}",
    "/api/v1/plans",
    "/api/v1/plans/fire",
    "/api/v1/incidents",
    "/api/v1/incidents/figures",
    "/api/v1/demo/scenarios",
    "/metrics",
    "/api/v1/reports/compliance?period=2026-01&format=csv",
    "/api/v1/reports/stored",
    "/api/v1/reports/runs",
    "/api/v1/training",
    "/api/v1/users",
    "/api/v1/audit",
    "/api/v1/console/layout",
    "/api/v1/console/states",
    "/",
]


def test_every_read_route_answers_in_the_api_role_as_it_does_under_serve(
    db_url: str, private_broker: tuple[str, int], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from core.settings import Settings
    from parkguard.runtime import Runtime

    settings = Settings(
        database_url=db_url,
        mqtt_url=f"mqtt://{private_broker[0]}:{private_broker[1]}",
        mqtt_client_id=unique("serve"),
        site=quick_site(tmp_path),
    )
    serve, api = Runtime(settings), Runtime(settings)
    try:
        served, alone = TestClient(serve.start()), TestClient(api.start_api())
        # the collector reports every 5 s: its first report may predate its connection
        wait_for(lambda: alone.get("/api/v1/health").status_code == 200, what="a report")
        admin = {"X-ParkGuard-User": "zhao", "X-ParkGuard-Role": "admin"}
        answers = {}
        for path in READS:
            answers[path] = (
                served.get(path, headers=admin).status_code,
                alone.get(path, headers=admin).status_code,
            )
    finally:
        api.stop()
        serve.stop()
    assert {p: a for p, a in answers.items() if a[0] != a[1]} == {}
    assert {p: a for p, a in answers.items() if a[0] != 200} == {
        "/api/v1/demo/scenarios": (503, 503)  # only `parkguard demo` runs a fleet
    }
