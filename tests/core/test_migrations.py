"""The migrations create exactly the tables the models describe, and each domain branch goes
down (its tables gone, the others kept) and up again. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from core.db import alembic_config, make_engine, upgrade
from core.models import Base

BRANCHES = sorted(
    label
    for revision in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()
    for label in revision.branch_labels
)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_every_domain_has_its_branch() -> None:
    assert BRANCHES == [
        "alerts",
        "auth",
        "collector",
        "compliance",
        "incidents",
        "maintenance",
        "spool",
        "training",
    ]


def test_the_migrated_schema_is_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert tables(engine) == set(Base.metadata.tables)


@pytest.mark.parametrize("branch", BRANCHES)
def test_a_branch_goes_down_alone_and_up_again(db_url: str, engine: Engine, branch: str) -> None:
    everything = tables(engine)
    command.downgrade(alembic_config(db_url), f"{branch}@0001_foundation")
    gone = everything - tables(engine)
    assert gone, f"the {branch} branch owns no table"
    assert tables(engine) == everything - gone
    upgrade(db_url)
    assert tables(engine) == everything
