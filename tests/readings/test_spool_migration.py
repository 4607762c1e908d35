"""The 0005_spool migration creates exactly the tables core.models_spool describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from core.db import make_engine
from core.models import Base

TABLES = {"readings_spool", "mqtt_credentials"}


def test_migration_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    ours = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in TABLES:
        Base.metadata.tables[name].to_metadata(ours)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = [c for c in compare_metadata(context, ours) if _table(c) in TABLES]
    finally:
        engine.dispose()
    assert diff == []


def _table(change: object) -> str | None:
    if isinstance(change, list):
        change = change[0]
    assert isinstance(change, tuple)
    for part in change[1:]:
        table = getattr(part, "table", None)
        if table is not None:
            return str(table.name)
        name = part if isinstance(part, str) else getattr(part, "name", None)
        if name in TABLES:
            return str(name)
    return None
