"""``PARKGUARD_METRICS_TOKEN``: Prometheus reads ``/metrics`` with a bearer token of its own,
which opens that route and nothing else; without it, ``/metrics`` still needs a signed-in user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import METRICS_TOKEN_ENV, Auth, AuthError
from parkguard.users import bootstrap_admin
from tests.api.builders import FakeCollector, build_context
from tests.auth.helpers import token_for

TOKEN = "prometheus-scrape-token-of-forty-chars-x"


def client_with(db_url: str, metrics_token: str | None) -> Iterator[TestClient]:
    context = build_context(db_url, FakeCollector())
    context.extras["auth"] = Auth(context.sessions, metrics_token=metrics_token)
    with TestClient(create_app(context)) as client:
        yield client
    context.engine.dispose()


@pytest.fixture
def scraped(db_url: str) -> Iterator[TestClient]:
    yield from client_with(db_url, TOKEN)


@pytest.fixture
def unscraped(db_url: str) -> Iterator[TestClient]:
    yield from client_with(db_url, None)


def test_the_metrics_token_reads_metrics(scraped: TestClient) -> None:
    answer = scraped.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "header",
    [
        None,
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        "Bearer ",
        f"Bearer {TOKEN.upper()}",
    ],
)
def test_anything_else_is_refused(scraped: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    assert scraped.get("/metrics", headers=headers).status_code == 401


def test_the_metrics_token_opens_no_other_route(scraped: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/api/v1/devices", "/api/v1/alerts", "/api/v1/users", "/api/v1/audit"):
        assert scraped.get(path, headers=bearer).status_code == 401, path
    assert scraped.post("/api/v1/work-orders", headers=bearer, json={}).status_code == 401


def test_without_the_setting_a_signed_in_user_still_reads_metrics(unscraped: TestClient) -> None:
    assert unscraped.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    auth = unscraped.app.state.ctx.extras["auth"]  # type: ignore[attr-defined]
    assert unscraped.get("/metrics", headers=token_for(auth, "li", "auditor")).status_code == 200


def test_a_short_metrics_token_stops_start_up_and_opens_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = build_context(db_url, FakeCollector())
    try:
        monkeypatch.setenv(METRICS_TOKEN_ENV, "short")
        with pytest.raises(AuthError, match=f"{METRICS_TOKEN_ENV} must be at least 32"):
            bootstrap_admin(context.engine, demo=False, url="http://x/")
        context.extras["auth"] = Auth(context.sessions, metrics_token="short")
        with TestClient(create_app(context)) as client:
            assert (
                client.get("/metrics", headers={"Authorization": "Bearer short"}).status_code == 401
            )
    finally:
        context.engine.dispose()
