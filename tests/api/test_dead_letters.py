"""GET /api/v1/dead-letters: rejected messages, newest first, with their payload to inspect."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from api.context import AppContext
from tests.api.builders import add_dead_letter

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_newest_first_with_payload_as_text_and_base64(client: TestClient, ctx: AppContext) -> None:
    payload = b'{"ts": 1, "metrics": {"temp\xff\xfe": 3}'
    with ctx.sessions.begin() as session:
        older = add_dead_letter(session, T0, "not_json")
        newer = add_dead_letter(
            session,
            T0 + 1_500,
            "not_utf8",
            payload=payload,
            payload_size=70_000,
            topic="parkguard/park1/wh-env-3/telemetry",
            device_id="wh-env-3",
            detail="payload is not UTF-8: invalid start byte",
        )

    response = client.get("/api/v1/dead-letters")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    assert [item["id"] for item in body["items"]] == [newer.id, older.id]
    assert body["items"][0] == {
        "id": newer.id,
        "received": "2026-01-01T00:00:01.500Z",
        "received_ms": T0 + 1_500,
        "topic": "parkguard/park1/wh-env-3/telemetry",
        "reason": "not_utf8",
        "detail": "payload is not UTF-8: invalid start byte",
        "device_id": "wh-env-3",
        "payload_size": 70_000,
        "payload_stored": len(payload),
        "payload_text": '{"ts": 1, "metrics": {"temp\ufffd\ufffd": 3}',
        "payload_base64": base64.b64encode(payload).decode(),
    }
    assert base64.b64decode(body["items"][0]["payload_base64"]) == payload


def test_same_time_is_ordered_by_id_descending(client: TestClient, ctx: AppContext) -> None:
    with ctx.sessions.begin() as session:
        ids = [add_dead_letter(session, T0).id for _ in range(3)]
    items = client.get("/api/v1/dead-letters").json()["items"]
    assert [item["id"] for item in items] == sorted(ids, reverse=True)


def test_paginated_and_filtered(client: TestClient, ctx: AppContext) -> None:
    with ctx.sessions.begin() as session:
        for i in range(7):
            add_dead_letter(session, T0 + i, "bad_topic" if i % 2 else "not_json", device_id=None)
        add_dead_letter(session, T0 + 100, "unknown_metric", device_id="ext-001")

    def received(**params: object) -> tuple[int, list[int]]:
        body = client.get("/api/v1/dead-letters", params=params).json()
        return body["total"], [item["received_ms"] - T0 for item in body["items"]]

    assert received(limit=3) == (8, [100, 6, 5])
    assert received(limit=3, offset=3) == (8, [4, 3, 2])
    assert received(limit=3, offset=6) == (8, [1, 0])
    assert received(offset=8) == (8, [])
    assert received(reason="bad_topic") == (3, [5, 3, 1])
    assert received(reason="not_json", limit=1, offset=1) == (4, [4])
    assert received(device="ext-001") == (1, [100])
    assert received(reason="too_large") == (0, [])


def test_bad_parameters_are_422(client: TestClient) -> None:
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"reason": "NOT_JSON"},
        {"reason": "' OR 1=1 --"},
        {"reason": "x" * 10_000},
        {"reason": "原因"},
        {"device": "../../etc/passwd"},
        {"device": "ext\x00001"},
    ):
        response = client.get("/api/v1/dead-letters", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"]
