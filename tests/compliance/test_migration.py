"""The 0004_compliance migration creates exactly the tables the models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select

from core.db import alembic_config, upgrade
from core.models import Base
from core.models_compliance import ComplianceMark

TABLES = {"condition_spans", "out_of_service", "compliance_marks"}


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


def test_the_condition_mark_starts_at_zero(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(select(ComplianceMark.value)).all() == [(0,)]


def test_the_branch_goes_down_and_up_again(db_url: str, engine: Engine) -> None:
    command.downgrade(alembic_config(db_url), "compliance@0001_foundation")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(db_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        assert connection.execute(select(ComplianceMark.value)).all() == [(0,)]


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
