"""An AppContext over a real, migrated database (SQLite and PostgreSQL) and a TestClient on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.context import AppContext
from tests.api.builders import FakeCollector, build_context


@pytest.fixture
def collector() -> FakeCollector:
    return FakeCollector()


@pytest.fixture
def ctx(db_url: str, collector: FakeCollector) -> Iterator[AppContext]:
    context = build_context(db_url, collector)
    yield context
    context.engine.dispose()


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as test_client:
        yield test_client
