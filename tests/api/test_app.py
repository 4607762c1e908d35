"""The app as a whole: routers served, OpenAPI described, errors as JSON, never a 500."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.context import AppContext
from tests.api.builders import add_device, add_site, add_zone

FASTAPI_OWN = {"HTTPValidationError", "ValidationError"}


def test_context_is_on_app_state(ctx: AppContext) -> None:
    assert create_app(ctx).state.ctx is ctx


def test_every_response_field_and_parameter_is_described(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    undescribed = [
        f"{name}.{field}"
        for name, schema in spec["components"]["schemas"].items()
        if name not in FASTAPI_OWN
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []
    paths = {path for path in spec["paths"]}
    assert {
        "/api/v1/health",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}",
        "/api/v1/devices/{device_id}/readings",
        "/api/v1/dead-letters",
        "/api/v1/alerts",
        "/metrics",
    } <= paths
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                assert parameter.get("description"), (path, parameter["name"])


def test_unknown_paths_and_methods_answer_json(client: TestClient) -> None:
    assert client.get("/api/v1/nothing").json() == {"detail": "Not Found"}
    response = client.post("/api/v1/devices")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@pytest.fixture
def seeded(ctx: AppContext) -> None:
    with ctx.sessions.begin() as session:
        add_site(session)
        add_device(session, "ext-001", "extinguisher", add_zone(session, "park1", "z"))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(device_id=texts, metric=texts, start=texts, end=texts, every=texts, limit=texts)
def test_no_input_makes_a_500(
    client: TestClient,
    seeded: None,
    device_id: str,
    metric: str,
    start: str,
    end: str,
    every: str,
    limit: str,
) -> None:
    params = {"metric": metric, "start": start, "end": end, "every": every, "limit": limit}
    for target in (quote(device_id, safe=""), "ext-001"):
        response = client.get(f"/api/v1/devices/{target}/readings", params=params)
        assert response.status_code < 500, response.text
        response = client.get(f"/api/v1/devices/{target}")
        assert response.status_code < 500, response.text
    for path in ("/api/v1/devices", "/api/v1/dead-letters"):
        response = client.get(path, params={"type": device_id, "reason": metric, "limit": limit})
        assert response.status_code < 500, response.text
