"""Every route of the app against every role: anonymous callers are refused (401), each role is
allowed exactly what api.policy says (else 403), and every state-changing route is listed there
— a router added later is covered without touching this file."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api import policy
from api.app import create_app
from api.auth import Auth
from api.context import AppContext
from core.models_auth import ROLES
from tests.api.builders import FakeCollector, build_context
from tests.auth.helpers import token_for

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
SAMPLE = {"name": "app.js", "username": "nobody"}
"""Path parameter values that match the routes' patterns; any other parameter gets ``1``."""


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every API route the app serves, schema or not."""
    found: list[tuple[set[str] | None, str | None]]
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI with lazy included routers
    except ImportError:  # older FastAPI: included routes are flat in app.routes
        found = [(r.methods, r.path_format) for r in app.routes if isinstance(r, APIRoute)]
    else:
        found = [
            (rc.methods, rc.path_format)
            for rc in iter_route_contexts(app.routes)
            if isinstance(rc.original_route, APIRoute)
        ]
    return sorted({(m, str(p)) for methods, p in found for m in methods or () if m != "HEAD"})


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: SAMPLE.get(m.group(1), "1"), template)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    from core.db import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('policy') / 'parkguard.db'}"
    upgrade(url)
    ctx: AppContext = build_context(url, FakeCollector())
    auth = Auth(ctx.sessions)
    ctx.extras["auth"] = auth
    tokens = {role: token_for(auth, f"user-{role}", role) for role in ROLES}
    with TestClient(create_app(ctx)) as client:
        yield client, tokens
    ctx.engine.dispose()


@pytest.fixture(scope="module")
def routes(setup: tuple[TestClient, dict[str, dict[str, str]]]) -> list[tuple[str, str]]:
    client, _ = setup
    found = app_routes(client.app)  # type: ignore[arg-type]
    assert len(found) > 30
    return found


def test_every_state_changing_route_is_in_the_policy(routes: list[tuple[str, str]]) -> None:
    unlisted = [
        (m, p)
        for m, p in routes
        if m in STATE_CHANGING and (m, p) not in policy.RULES and not policy.is_public(m, p)
    ]
    assert unlisted == [], "add these to api/policy.py RULES"


def test_the_policy_names_only_routes_that_exist(routes: list[tuple[str, str]]) -> None:
    served = set(routes)
    assert [key for key in policy.RULES if key not in served] == []
    assert [key for key in policy.PUBLIC if key not in served] == []


def test_nothing_but_health_sign_in_and_the_console_files_is_public(
    routes: list[tuple[str, str]],
) -> None:
    public = [(m, p) for m, p in routes if policy.is_public(m, p)]
    assert {p for _, p in public if p.startswith("/api/")} == {
        "/api/v1/health",
        "/api/v1/auth/token",
        "/api/v1/auth/login",
    }
    assert all(p.startswith(("/api/", "/console")) or p == "/" for _, p in public)


def test_anonymous_callers_are_refused_everywhere_else(
    setup: tuple[TestClient, dict[str, dict[str, str]]], routes: list[tuple[str, str]]
) -> None:
    client, _ = setup
    for method, template in routes:
        if policy.is_public(method, template):
            continue
        answer = client.request(method, concrete(template), json={})
        assert answer.status_code == 401, (method, template, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"


def test_each_role_may_change_only_what_the_policy_allows(
    setup: tuple[TestClient, dict[str, dict[str, str]]], routes: list[tuple[str, str]]
) -> None:
    client, tokens = setup
    checked = 0
    for method, template in routes:
        if method not in STATE_CHANGING or policy.is_public(method, template):
            continue
        allowed = policy.allowed_roles(method, template)
        for role in ROLES:
            answer = client.request(method, concrete(template), json={}, headers=tokens[role])
            if role in allowed:
                assert answer.status_code not in (401, 403), (role, method, template, answer.text)
            else:
                assert answer.status_code == 403, (role, method, template, answer.text)
                assert role in answer.json()["detail"]
            checked += 1
    assert checked >= 5 * 15


def test_the_auditor_changes_nothing_and_the_admin_everything() -> None:
    own = {"/api/v1/auth/logout", "/api/v1/auth/password"}  # one's own session and password
    for (method, template), roles in policy.RULES.items():
        if method in STATE_CHANGING:
            assert "admin" in roles
            assert "auditor" not in roles or template in own


def test_every_role_reads_and_only_oversight_reads_the_audit_log(
    setup: tuple[TestClient, dict[str, dict[str, str]]], routes: list[tuple[str, str]]
) -> None:
    client, tokens = setup
    for method, template in routes:
        if method != "GET" or policy.is_public(method, template) or template.endswith("/stream"):
            continue
        allowed = policy.allowed_roles(method, template)
        for role in ROLES:
            answer = client.get(concrete(template), headers=tokens[role])
            if role in allowed:
                assert answer.status_code not in (401, 403), (role, template, answer.text)
            else:
                assert answer.status_code == 403, (role, template)
    assert policy.allowed_roles("GET", "/api/v1/audit") == {"manager", "auditor", "admin"}
    assert policy.allowed_roles("GET", "/api/v1/devices") == set(ROLES)


def test_an_unlisted_state_changing_route_is_refused_to_everybody() -> None:
    assert policy.allowed_roles("POST", "/api/v1/something/new") == frozenset()
    assert policy.allowed_roles("DELETE", "/api/v1/alerts/{alert_id}") == frozenset()


def test_templates_are_found_for_paths_the_most_literal_first() -> None:
    assert policy.template_for("/api/v1/alerts/12/ack") == "/api/v1/alerts/{alert_id}/ack"
    assert policy.template_for("/api/v1/auth/login") == "/api/v1/auth/login"
    assert policy.template_for("/api/v1/nothing") is None
