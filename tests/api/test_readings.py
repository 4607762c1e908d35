"""GET /api/v1/devices/{id}/readings: stored points, or downsampled buckets with `every`."""

from __future__ import annotations

import random
from collections import defaultdict
from statistics import fmean
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.context import AppContext
from core.contract import now_ms
from tests.api.builders import add_device, add_readings, add_site, add_zone

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
URL = "/api/v1/devices/{}/readings"


@pytest.fixture
def devices(ctx: AppContext) -> None:
    with ctx.sessions.begin() as session:
        add_site(session)
        zone = add_zone(session, "park1", "hz-1", "hazmat")
        add_device(session, "ext-001", "extinguisher", zone)
        add_device(session, "tag-1", "asset_tag", zone)


def readings(client: TestClient, device: str = "ext-001", **params: object) -> Any:
    return client.get(URL.format(device), params=params)


def test_points_come_back_as_stored_oldest_first(
    client: TestClient, ctx: AppContext, devices: None
) -> None:
    add_readings(
        ctx.engine,
        "ext-001",
        "pressure_mpa",
        [
            (T0 + 2_000, 3, 1.21),
            (T0, 1, 1.25),
            (T0 + 1_000, 2, 1.5),
            (T0 + 1_000, 9, 1.0),
        ],
    )
    add_readings(ctx.engine, "ext-001", "present", [(T0 + 5, 4, True)])

    response = readings(client, metric="pressure_mpa", start=T0, end=T0 + MINUTE)

    assert response.status_code == 200
    assert response.json() == {
        "device_id": "ext-001",
        "metric": "pressure_mpa",
        "kind": "number",
        "unit": "MPa",
        "start": "2026-01-01T00:00:00.000Z",
        "end": "2026-01-01T00:01:00.000Z",
        "every_ms": None,
        "points": [
            {"ts": "2026-01-01T00:00:00.000Z", "ts_ms": T0, "seq": 1, "value": 1.25},
            {"ts": "2026-01-01T00:00:01.000Z", "ts_ms": T0 + 1_000, "seq": 2, "value": 1.5},
            {"ts": "2026-01-01T00:00:01.000Z", "ts_ms": T0 + 1_000, "seq": 9, "value": 1.0},
            {"ts": "2026-01-01T00:00:02.000Z", "ts_ms": T0 + 2_000, "seq": 3, "value": 1.21},
        ],
        "buckets": None,
        "truncated": False,
    }


def test_range_is_start_included_end_excluded(
    client: TestClient, ctx: AppContext, devices: None
) -> None:
    add_readings(ctx.engine, "ext-001", "pressure_mpa", [(T0 + i, i, 1.0) for i in range(5)])
    body = readings(client, metric="pressure_mpa", start=T0 + 1, end=T0 + 4).json()
    assert [p["ts_ms"] for p in body["points"]] == [T0 + 1, T0 + 2, T0 + 3]


def test_boolean_and_string_metrics_keep_their_kind(
    client: TestClient, ctx: AppContext, devices: None
) -> None:
    add_readings(ctx.engine, "ext-001", "present", [(T0, 1, True), (T0 + 1, 2, False)])
    add_readings(ctx.engine, "tag-1", "zone", [(T0, 1, "hz-1"), (T0 + 1, 2, "仓库-2")])

    present = readings(client, metric="present", start=T0, end=T0 + 10).json()
    zone = readings(client, "tag-1", metric="zone", start=T0, end=T0 + 10).json()

    assert present["kind"] == "boolean"
    assert [p["value"] for p in present["points"]] == [True, False]
    assert zone["kind"] == "string"
    assert [p["value"] for p in zone["points"]] == ["hz-1", "仓库-2"]


def test_default_range_is_the_last_24_hours(
    client: TestClient, ctx: AppContext, devices: None
) -> None:
    now = now_ms()
    add_readings(
        ctx.engine,
        "ext-001",
        "pressure_mpa",
        [
            (now - 25 * HOUR, 1, 1.0),
            (now - 23 * HOUR, 2, 1.1),
            (now - MINUTE, 3, 1.2),
        ],
    )
    body = readings(client, metric="pressure_mpa").json()
    assert [p["seq"] for p in body["points"]] == [2, 3]
    day_before = readings(client, metric="pressure_mpa", end=now - 24 * HOUR).json()
    assert [p["seq"] for p in day_before["points"]] == [1]


def test_times_in_rfc3339_with_offsets_or_epoch_ms(
    client: TestClient, ctx: AppContext, devices: None
) -> None:
    add_readings(ctx.engine, "ext-001", "pressure_mpa", [(T0 + i * HOUR, i, 1.0) for i in range(4)])
    expected = [1, 2]
    for start, end in [
        (T0 + HOUR, T0 + 3 * HOUR),
        ("2026-01-01T01:00:00Z", "2026-01-01T03:00:00Z"),
        ("2026-01-01T09:00:00+08:00", "2026-01-01T11:00:00.000+08:00"),
        ("2025-12-31T20:00:00-05:00", "2026-01-01T03:00:00+00:00"),
    ]:
        body = readings(client, metric="pressure_mpa", start=start, end=end).json()
        assert [p["seq"] for p in body["points"]] == expected, (start, end)
        assert body["start"] == "2026-01-01T01:00:00.000Z"
    # an unencoded '+' in a query string arrives as a space; it still means the offset
    raw = URL.format("ext-001") + (
        "?metric=pressure_mpa&start=2026-01-01T09:00:00+08:00&end=2026-01-01T11:00:00+08:00"
    )
    assert [p["seq"] for p in client.get(raw).json()["points"]] == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start 'yesterday' is neither epoch milliseconds nor"),
        ({"start": "2026-01-01T00:00:00"}, "has no UTC offset"),
        ({"start": "2026-01-01"}, "has no UTC offset"),
        ({"end": "2026-13-01T00:00:00Z"}, "end '2026-13-01T00:00:00Z' is neither"),
        ({"start": "-5"}, "is neither epoch milliseconds"),
        ({"end": "9" * 20}, "is beyond the year 9999"),
        ({"start": "1969-12-31T23:59:59Z"}, "is before 1970"),
        ({"start": "x" * 10_000}, "start 'xxxxxxxx"),
        ({"start": T0, "end": T0}, "start (2026-01-01T00:00:00.000Z) must be before end"),
        ({"start": T0 + 1, "end": T0}, "must be before end"),
        ({"start": "2026-01-01T08:00:00+08:00", "end": "2026-01-01T00:00:00Z"}, "before end"),
    ],
)
def test_bad_times_are_422_saying_why(
    client: TestClient, devices: None, params: dict[str, object], message: str
) -> None:
    response = readings(client, metric="pressure_mpa", **params)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert len(response.json()["detail"]) < 300


def test_unknown_metric_is_422_naming_it_and_the_known_ones(
    client: TestClient, devices: None
) -> None:
    response = readings(client, metric="temperature_c")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "metric 'temperature_c' is not one of extinguisher's metrics: "
        "battery_pct, fault, front_blocked, present, pressure_mpa"
    }
    for metric in ["", "x" * 10_000, "' OR 1=1 --", "压力", "pressure_mpa\x00"]:
        response = readings(client, metric=metric)
        assert response.status_code == 422, metric[:40]
        assert len(response.json()["detail"]) < 300
    assert readings(client).status_code == 422  # metric is required


def test_limit_cuts_and_says_so(client: TestClient, ctx: AppContext, devices: None) -> None:
    add_readings(ctx.engine, "ext-001", "pressure_mpa", [(T0 + i, i, 1.0) for i in range(5)])
    cut = readings(client, metric="pressure_mpa", start=T0, end=T0 + 10, limit=2).json()
    assert [p["seq"] for p in cut["points"]] == [0, 1]
    assert cut["truncated"] is True
    exact = readings(client, metric="pressure_mpa", start=T0, end=T0 + 10, limit=5).json()
    assert len(exact["points"]) == 5
    assert exact["truncated"] is False
    for limit in (0, -1, 100_001, 10**30, "many"):
        assert readings(client, metric="pressure_mpa", limit=limit).status_code == 422, limit
    assert readings(client, metric="pressure_mpa", limit=100_000).status_code == 200


def test_default_limit_is_1000(client: TestClient, ctx: AppContext, devices: None) -> None:
    add_readings(ctx.engine, "ext-001", "pressure_mpa", [(T0 + i, i, 1.0) for i in range(1001)])
    body = readings(client, metric="pressure_mpa", start=T0, end=T0 + HOUR).json()
    assert len(body["points"]) == 1000
    assert body["truncated"] is True


def expected_buckets(
    points: list[tuple[int, int, float]], every_ms: int, start: int, end: int
) -> list[dict[str, object]]:
    groups: dict[int, list[float]] = defaultdict(list)
    for ts, _seq, value in points:
        if start <= ts < end:
            groups[ts - ts % every_ms].append(float(value))
    return [
        {"start_ms": b, "count": len(v), "min": min(v), "max": max(v), "mean": fmean(v)}
        for b, v in sorted(groups.items())
    ]


@pytest.mark.parametrize(
    ("every", "every_ms"),
    [
        ("1m", MINUTE),
        ("15m", 15 * MINUTE),
        ("1h", HOUR),
        ("1d", 24 * HOUR),
        ("90", 90_000),
        ("30s", 30_000),
    ],
)
def test_buckets_hold_count_min_max_mean(
    client: TestClient, ctx: AppContext, devices: None, every: str, every_ms: int
) -> None:
    rng = random.Random(every)
    points = [
        (T0 - HOUR + rng.randrange(0, 30 * HOUR), seq, round(rng.uniform(0.0, 5.0), 3))
        for seq in range(600)
    ]
    add_readings(ctx.engine, "ext-001", "pressure_mpa", points)
    start, end = T0 + 7 * MINUTE + 123, T0 + 26 * HOUR

    body = readings(
        client, metric="pressure_mpa", start=start, end=end, every=every, limit=100_000
    ).json()

    assert body["every_ms"] == every_ms
    assert body["points"] is None
    got = body["buckets"]
    want = expected_buckets(points, every_ms, start, end)
    assert [(b["start_ms"], b["count"], b["min"], b["max"]) for b in got] == [
        (b["start_ms"], b["count"], b["min"], b["max"]) for b in want
    ]
    assert [b["mean"] for b in got] == pytest.approx([b["mean"] for b in want], rel=1e-9)
    assert sum(b["count"] for b in got) == sum(start <= ts < end for ts, _s, _v in points)
    assert got[0]["start"].endswith("Z")


def test_boolean_buckets_give_the_share_of_true_and_strings_only_count(
    client: TestClient, ctx: AppContext, devices: None
) -> None:
    add_readings(
        ctx.engine,
        "ext-001",
        "present",
        [
            (T0, 1, True),
            (T0 + 1, 2, False),
            (T0 + 2, 3, True),
            (T0 + 3, 4, True),
            (T0 + MINUTE, 5, False),
        ],
    )
    add_readings(ctx.engine, "tag-1", "zone", [(T0, 1, "a"), (T0 + 1, 2, "b")])

    present = readings(client, metric="present", start=T0, end=T0 + HOUR, every="1m").json()
    zone = readings(client, "tag-1", metric="zone", start=T0, end=T0 + HOUR, every="1m").json()

    assert [(b["count"], b["min"], b["max"], b["mean"]) for b in present["buckets"]] == [
        (4, 0.0, 1.0, 0.75),
        (1, 0.0, 0.0, 0.0),
    ]
    assert [(b["count"], b["min"], b["max"], b["mean"]) for b in zone["buckets"]] == [
        (2, None, None, None),
    ]


def test_bucket_limit_cuts_and_says_so(client: TestClient, ctx: AppContext, devices: None) -> None:
    add_readings(
        ctx.engine, "ext-001", "pressure_mpa", [(T0 + i * MINUTE, i, 1.0) for i in range(5)]
    )
    body = readings(
        client, metric="pressure_mpa", start=T0, end=T0 + HOUR, every="1m", limit=3
    ).json()
    assert [b["start_ms"] for b in body["buckets"]] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    assert body["truncated"] is True


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"every": "0"}, "every must be between 1s and 366d"),
        ({"every": "500ms"}, "every must be between 1s and 366d"),
        ({"every": "400d"}, "every must be between 1s and 366d"),
        ({"every": "9" * 12 + "w"}, "every must be between 1s and 366d"),
        ({"every": "9" * 40}, "is not a duration"),
        ({"every": "1 fortnight"}, "is not a duration"),
        ({"every": "-1m"}, "is not a duration"),
        ({"every": "1.5h"}, "is not a duration"),
        ({"every": ""}, "is not a duration"),
        ({"every": "1s", "start": 0, "end": T0}, "buckets, more than 100000"),
        ({"every": "1m", "start": T0, "end": T0 + 100_001 * MINUTE}, "make 100001 buckets"),
        # an unaligned start touches one bucket more than the range's length suggests
        (
            {"every": "1m", "start": T0 + 30_000, "end": T0 + 30_000 + 100_000 * MINUTE},
            "make 100001 buckets",
        ),
    ],
)
def test_bad_or_absurd_every_is_422(
    client: TestClient, devices: None, params: dict[str, object], message: str
) -> None:
    response = readings(client, metric="pressure_mpa", **params)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_every_at_the_bucket_bound_is_served(client: TestClient, devices: None) -> None:
    response = readings(
        client, metric="pressure_mpa", start=T0, end=T0 + 100_000 * MINUTE, every="1m"
    )
    assert response.status_code == 200
    assert response.json()["buckets"] == []


def test_readings_of_an_unknown_device_are_404(client: TestClient, devices: None) -> None:
    response = readings(client, "ext-404", metric="pressure_mpa")
    assert response.status_code == 404
    assert response.json() == {"detail": "no device with id 'ext-404'"}
