"""The 0003_maintenance migration creates exactly the tables the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from core.db import make_engine
from core.models import Base

MAINTENANCE_TABLES = {
    "inspection_tasks",
    "inspection_photos",
    "work_orders",
    "maintenance_watermarks",
    "maintenance_leases",
    "maintenance_scheduler_jobs",
}


def test_migration_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    ours = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in MAINTENANCE_TABLES:
        Base.metadata.tables[name].to_metadata(ours)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = [
                change
                for change in compare_metadata(context, ours)
                if _table_of(change) in MAINTENANCE_TABLES
            ]
    finally:
        engine.dispose()
    assert diff == []


def _table_of(change: object) -> str | None:
    if isinstance(change, list):  # modify_* changes come grouped
        change = change[0]
    assert isinstance(change, tuple)
    for part in change[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else part
        table = getattr(part, "table", None)
        if table is not None:
            return str(table.name)
        if name in MAINTENANCE_TABLES:
            return str(name)
    return None
