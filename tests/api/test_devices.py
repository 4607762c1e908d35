"""GET /api/v1/devices and /api/v1/devices/{id}: the register, paginated, and one device's state."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient

from api.context import AppContext
from tests.api.builders import add_device, add_site, add_state, add_zone


def small_park(ctx: AppContext) -> list[str]:
    """Two sites; park1 has a warehouse and a hazmat zone. Returns the device ids, sorted."""
    with ctx.sessions.begin() as session:
        add_site(session, "park1")
        add_site(session, "park2")
        warehouse = add_zone(session, "park1", "wh-1", "warehouse")
        hazmat = add_zone(session, "park1", "hz-1", "hazmat")
        lane = add_zone(session, "park2", "lane-1", "fire_lane")
        for i in range(3):
            add_device(session, f"ext-{i:03d}", "extinguisher", warehouse)
        add_device(session, "smoke-001", "smoke_detector", warehouse)
        add_device(session, "hz-env-1", "hazmat_store", hazmat)
        add_device(session, "tag-1", "asset_tag", hazmat)
        add_device(session, "lane-cam-1", "fire_lane", lane)
        add_state(session, "ext-000", presence="online", last_seen_ms=1_767_225_600_000)
        add_state(session, "smoke-001", presence="offline", last_seen_ms=1_767_225_000_000)
    return sorted(["ext-000", "ext-001", "ext-002", "smoke-001", "hz-env-1", "tag-1", "lane-cam-1"])


def test_list_is_paginated_by_id_with_total(client: TestClient, ctx: AppContext) -> None:
    ids = small_park(ctx)

    pages = [client.get("/api/v1/devices", params={"limit": 3, "offset": o}) for o in (0, 3, 6)]

    assert [p.status_code for p in pages] == [200, 200, 200]
    assert [len(p.json()["items"]) for p in pages] == [3, 3, 1]
    assert [item["id"] for p in pages for item in p.json()["items"]] == ids
    assert {p.json()["total"] for p in pages} == {7}
    assert pages[1].json()["limit"] == 3
    assert pages[1].json()["offset"] == 3


def test_list_items_carry_presence(client: TestClient, ctx: AppContext) -> None:
    small_park(ctx)
    items = {i["id"]: i for i in client.get("/api/v1/devices").json()["items"]}
    assert items["ext-000"] == {
        "id": "ext-000",
        "site_id": "park1",
        "type": "extinguisher",
        "zone_id": "wh-1",
        "label": "extinguisher ext-000",
        "presence": "online",
        "last_seen": "2026-01-01T00:00:00.000Z",
    }
    assert items["smoke-001"]["presence"] == "offline"
    assert items["ext-001"]["presence"] == "unknown"
    assert items["ext-001"]["last_seen"] is None


def test_list_pagination_edges(client: TestClient, ctx: AppContext) -> None:
    small_park(ctx)
    past_end = client.get("/api/v1/devices", params={"offset": 7}).json()
    assert past_end["items"] == []
    assert past_end["total"] == 7
    far = client.get("/api/v1/devices", params={"offset": 10_000_000})
    assert far.status_code == 200
    assert far.json()["items"] == []
    assert len(client.get("/api/v1/devices", params={"limit": 500}).json()["items"]) == 7
    assert client.get("/api/v1/devices").json()["limit"] == 50
    for bad in (
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"offset": -1},
        {"offset": 10_000_001},
        {"limit": "ten"},
        {"limit": "9" * 400},
    ):
        response = client.get("/api/v1/devices", params=bad)
        assert response.status_code == 422, bad
        assert response.json()["detail"], bad


def test_list_filters(client: TestClient, ctx: AppContext) -> None:
    small_park(ctx)

    def ids(**params: str) -> list[str]:
        body = client.get("/api/v1/devices", params=params).json()
        assert body["total"] == len(body["items"])
        return [item["id"] for item in body["items"]]

    assert ids(type="extinguisher") == ["ext-000", "ext-001", "ext-002"]
    assert ids(zone="hz-1") == ["hz-env-1", "tag-1"]
    assert ids(site="park2") == ["lane-cam-1"]
    assert ids(site="park1", zone="wh-1", type="smoke_detector") == ["smoke-001"]
    assert ids(site="park2", type="extinguisher") == []
    assert ids(zone="no-such-zone") == []


def test_unknown_type_filter_names_the_known_types(client: TestClient) -> None:
    response = client.get("/api/v1/devices", params={"type": "sprinkler"})
    assert response.status_code == 422
    assert "unknown device type 'sprinkler'" in response.json()["detail"]
    assert "extinguisher" in response.json()["detail"]


HOSTILE = [
    "'; DROP TABLE devices; --",
    "ext-000' OR '1'='1",
    "x" * 10_000,
    "设备-001",
    "ext\x00000",
    "../../etc/passwd",
    "..",
    "%00",
    "ext 000",
    "",
]


def test_hostile_filters_are_refused_not_run(client: TestClient, ctx: AppContext) -> None:
    small_park(ctx)
    for value in HOSTILE:
        for name in ("type", "zone", "site"):
            response = client.get("/api/v1/devices", params={name: value})
            assert response.status_code == 422, (name, value[:40])
            assert response.json()["detail"]
    assert client.get("/api/v1/devices").json()["total"] == 7


def test_one_device_with_register_data_and_live_state(client: TestClient, ctx: AppContext) -> None:
    with ctx.sessions.begin() as session:
        add_site(session, "park1")
        zone = add_zone(session, "park1", "wh-1", "warehouse")
        add_device(
            session,
            "ext-001",
            "extinguisher",
            zone,
            label="B1 dock door",
            attributes={"agent": "ABC", "size_kg": 4, "next_maintenance": "2026-09-01"},
            in_service=date(2024, 3, 1),
        )
        add_state(
            session,
            "ext-001",
            presence="online",
            presence_since_ms=1_767_225_600_000,
            last_seen_ms=1_767_225_661_500,
            last_seq=42,
            last_values={
                "pressure_mpa": {"v": 1.25, "ts": 1_767_225_661_000},
                "present": {"v": True, "ts": 1_767_225_661_000},
                "front_blocked": {"v": False, "ts": 1_767_225_600_000},
            },
            battery_pct=88.0,
            fault=False,
        )

    response = client.get("/api/v1/devices/ext-001")

    assert response.status_code == 200
    assert response.json() == {
        "id": "ext-001",
        "site_id": "park1",
        "label": "B1 dock door",
        "type": {
            "name": "extinguisher",
            "zh": "灭火器",
            "en": "Fire extinguisher",
            "category": {"name": "extinguisher", "zh": "灭火器", "en": "Extinguishers"},
        },
        "zone": {
            "id": "wh-1",
            "kind": "warehouse",
            "name_zh": "wh-1 区",
            "name_en": "Zone wh-1",
            "building_id": None,
            "floor_id": None,
        },
        "in_service_date": "2024-03-01",
        "attributes": {"agent": "ABC", "size_kg": 4, "next_maintenance": "2026-09-01"},
        "x": 1.5,
        "y": 2.5,
        "state": {
            "presence": "online",
            "presence_since": "2026-01-01T00:00:00.000Z",
            "last_seen": "2026-01-01T00:01:01.500Z",
            "last_seq": 42,
            "values": {
                "front_blocked": {
                    "value": False,
                    "kind": "boolean",
                    "unit": None,
                    "ts": "2026-01-01T00:00:00.000Z",
                },
                "present": {
                    "value": True,
                    "kind": "boolean",
                    "unit": None,
                    "ts": "2026-01-01T00:01:01.000Z",
                },
                "pressure_mpa": {
                    "value": 1.25,
                    "kind": "number",
                    "unit": "MPa",
                    "ts": "2026-01-01T00:01:01.000Z",
                },
            },
            "battery_pct": 88.0,
            "fault": False,
        },
    }


def test_last_values_with_their_time_and_odd_ones_without(
    client: TestClient, ctx: AppContext
) -> None:
    with ctx.sessions.begin() as session:
        add_site(session)
        zone = add_zone(session, "park1", "hz-1", "hazmat")
        add_device(session, "tag-1", "asset_tag", zone)
        add_state(
            session,
            "tag-1",
            presence="offline",
            last_values={
                "zone": {"v": "hz-1", "ts": 1_767_225_600_123},
                "battery_pct": {"v": 55, "ts": 1_767_225_600_123},
                "retired_metric": 3,
            },
            battery_pct=55.0,
            fault=True,
        )

    state = client.get("/api/v1/devices/tag-1").json()["state"]

    assert state["presence"] == "offline"
    assert state["fault"] is True
    assert state["values"] == {
        "battery_pct": {
            "value": 55.0,
            "kind": "number",
            "unit": "%",
            "ts": "2026-01-01T00:00:00.123Z",
        },
        "retired_metric": {"value": 3.0, "kind": None, "unit": None, "ts": None},
        "zone": {"value": "hz-1", "kind": "string", "unit": None, "ts": "2026-01-01T00:00:00.123Z"},
    }


def test_device_never_heard_from_is_unknown(client: TestClient, ctx: AppContext) -> None:
    small_park(ctx)
    state = client.get("/api/v1/devices/ext-002").json()["state"]
    assert state == {
        "presence": "unknown",
        "presence_since": None,
        "last_seen": None,
        "last_seq": None,
        "values": {},
        "battery_pct": None,
        "fault": False,
    }


def test_device_of_a_type_missing_from_the_catalogue(client: TestClient, ctx: AppContext) -> None:
    with ctx.sessions.begin() as session:
        add_site(session)
        add_device(session, "old-1", "retired_type", add_zone(session, "park1", "z"))
    body = client.get("/api/v1/devices/old-1").json()
    assert body["type"] == {"name": "retired_type", "zh": None, "en": None, "category": None}


def test_unknown_device_is_404_naming_it(client: TestClient, ctx: AppContext) -> None:
    small_park(ctx)
    response = client.get("/api/v1/devices/ext-999")
    assert response.status_code == 404
    assert response.json() == {"detail": "no device with id 'ext-999'"}


@pytest.mark.parametrize("suffix", ["", "/readings?metric=pressure_mpa"])
def test_hostile_ids_are_422_or_404_never_500(
    client: TestClient, ctx: AppContext, suffix: str
) -> None:
    small_park(ctx)
    raw = [
        "'%3B%20DROP%20TABLE%20devices%3B--",
        "ext-000'%20OR%20'1'%3D'1",
        "x" * 10_000,
        "%E8%AE%BE%E5%A4%87",
        "ext%00000",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "ext-000%0Aext-001",
        "a" * 65,
    ]
    for device_id in raw:
        response = client.get(f"/api/v1/devices/{device_id}{suffix}")
        assert response.status_code in (404, 422), device_id[:40]
        assert response.json()["detail"], device_id[:40]
    assert client.get("/api/v1/devices").json()["total"] == 7
