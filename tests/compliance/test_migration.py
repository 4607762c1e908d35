"""The 0004_compliance migration seeds the condition mark (tests/core/test_migrations.py checks
the tables of every branch against the models)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, select

from core.db import alembic_config, upgrade
from core.models_compliance import ComplianceMark


def test_the_condition_mark_starts_at_zero(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(select(ComplianceMark.value)).all() == [(0,)]


def test_the_mark_is_seeded_again_when_the_branch_comes_back(db_url: str, engine: Engine) -> None:
    command.downgrade(alembic_config(db_url), "compliance@0001_foundation")
    upgrade(db_url)
    with engine.connect() as connection:
        assert connection.execute(select(ComplianceMark.value)).all() == [(0,)]
