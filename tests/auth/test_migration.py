"""The 0007_auth migration creates exactly the tables the models describe, and goes down."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from core.db import alembic_config, make_engine, upgrade
from core.models import Base

AUTH_TABLES = {"users", "auth_sessions", "auth_secrets", "audit_log"}


def test_migration_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    ours = MetaData(naming_convention=Base.metadata.naming_convention)
    for name in AUTH_TABLES:
        Base.metadata.tables[name].to_metadata(ours)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = [
                change
                for change in compare_metadata(context, ours)
                if _table_of(change) in AUTH_TABLES
            ]
    finally:
        engine.dispose()
    assert diff == []


def test_the_branch_goes_down_and_up_again(db_url: str) -> None:
    command.downgrade(alembic_config(db_url), "auth@0001_foundation")
    engine = make_engine(db_url)
    try:
        assert not AUTH_TABLES & set(inspect(engine).get_table_names())
        upgrade(db_url)
        assert set(inspect(engine).get_table_names()) >= AUTH_TABLES
    finally:
        engine.dispose()


def _table_of(change: object) -> str | None:
    if isinstance(change, list):  # modify_* changes come grouped
        change = change[0]
    assert isinstance(change, tuple)
    for part in change[1:]:
        name = getattr(part, "name", None) if not isinstance(part, str) else part
        table = getattr(part, "table", None)
        if table is not None:
            return str(table.name)
        if name in AUTH_TABLES:
            return str(name)
    return None
