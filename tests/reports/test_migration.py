"""The 0008_training migration creates exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData

from core.models import Base

TABLES = {"training_sessions", "stored_reports", "report_runs"}


def test_migration_matches_the_models(engine: Engine) -> None:
    ours = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in TABLES:
        Base.metadata.tables[name].to_metadata(ours)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = [
            change
            for change in compare_metadata(context, ours)
            if not (isinstance(change, tuple) and change[0] == "remove_table")
            and _table_of(change) in TABLES
        ]
    assert diff == []


def _table_of(change: object) -> str | None:
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
