"""incidents: emergency-plan incidents, their steps, triggering alerts, journal, watermark

Revision ID: 0006_incidents
Revises: 0001_foundation
Create Date: 2026-11-28 12:00:00

Its own branch off 0001_foundation (see core.db.upgrade, which goes to every head). The
journal is append-only: triggers refuse UPDATE and DELETE on it, on SQLite and PostgreSQL.
``incident_alerts.alert_id`` has no foreign key: the alerts table is on another branch.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_incidents"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("incidents",)
depends_on: str | Sequence[str] | None = None

AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "incident_marks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_incident_marks")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("open_key", sa.String(length=200), nullable=True),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("plan_type", sa.String(length=32), nullable=False),
        sa.Column("plan_level", sa.String(length=16), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("zone_id", sa.String(length=64), nullable=True),
        sa.Column("zone_name_zh", sa.String(length=200), nullable=True),
        sa.Column("zone_name_en", sa.String(length=200), nullable=True),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("trigger", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("activated_by", sa.String(length=64), nullable=False),
        sa.Column("activated_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("closed_ms", sa.BigInteger(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("open_key", name=op.f("uq_incidents_open_key")),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incidents_activated_ms"), ["activated_ms"], unique=False
        )
        batch_op.create_index("ix_incidents_state_plan", ["state", "plan_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_zone_id"), ["zone_id"], unique=False)

    op.create_table(
        "incident_alerts",
        sa.Column("incident_id", AUTO_ID, nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("title_zh", sa.String(length=200), nullable=False),
        sa.Column("title_en", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("attached_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_alerts_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("incident_id", "alert_id", name=op.f("pk_incident_alerts")),
    )
    with op.batch_alter_table("incident_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_alerts_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "incident_journal",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("incident_id", AUTO_ID, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_journal_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_journal")),
    )
    with op.batch_alter_table("incident_journal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_journal_at_ms"), ["at_ms"], unique=False)
        batch_op.create_index("ix_incident_journal_incident", ["incident_id", "id"], unique=False)

    op.create_table(
        "incident_steps",
        sa.Column("id", AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("incident_id", AUTO_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("text_zh", sa.Text(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("requires", sa.String(length=8), nullable=False),
        sa.Column("deadline_ms", sa.BigInteger(), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("overdue_ms", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("acted_ms", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_steps_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_steps")),
        sa.UniqueConstraint("incident_id", "step_id", name="uq_incident_steps_step"),
    )
    with op.batch_alter_table("incident_steps", schema=None) as batch_op:
        batch_op.create_index("ix_incident_steps_state_due", ["state", "due_ms"], unique=False)

    _append_only_journal()


def _append_only_journal() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION incident_journal_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'incident_journal is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER incident_journal_append_only BEFORE UPDATE OR DELETE "
            "ON incident_journal FOR EACH ROW EXECUTE FUNCTION incident_journal_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER incident_journal_no_{verb.lower()} BEFORE {verb} "
            "ON incident_journal BEGIN SELECT RAISE(ABORT, 'incident_journal is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS incident_journal_append_only ON incident_journal")
        op.execute("DROP FUNCTION IF EXISTS incident_journal_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS incident_journal_no_update")
        op.execute("DROP TRIGGER IF EXISTS incident_journal_no_delete")
    with op.batch_alter_table("incident_steps", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_steps_state_due")
    op.drop_table("incident_steps")
    with op.batch_alter_table("incident_journal", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_journal_incident")
        batch_op.drop_index(batch_op.f("ix_incident_journal_at_ms"))
    op.drop_table("incident_journal")
    with op.batch_alter_table("incident_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_alerts_alert_id"))
    op.drop_table("incident_alerts")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_zone_id"))
        batch_op.drop_index("ix_incidents_state_plan")
        batch_op.drop_index(batch_op.f("ix_incidents_activated_ms"))
    op.drop_table("incidents")
    op.drop_table("incident_marks")
