"""Persisted rule timers: the engine's Timer / CancelTimer decisions written in the same
transaction as the alerts they belong to, and read back on start-up (``restore``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models_alerts import RuleTimer
from rules.engine import CancelTimer, Key, Timer

TIMERS = RuleTimer.__table__


def save(session: Session | Connection, timers: Iterable[Timer], now_ms: int) -> None:
    """Insert or replace each (rule, subject)'s timer; the last one given for a key wins."""
    latest: dict[Key, Timer] = {(t.rule_id, t.subject): t for t in timers}
    if not latest:
        return
    bind = session.get_bind() if isinstance(session, Session) else session
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    rows = [
        {
            "rule_id": t.rule_id,
            "subject": t.subject,
            "kind": t.kind,
            "due_ms": t.due_ms,
            "data": t.data,
            "updated_ms": now_ms,
        }
        for t in latest.values()
    ]
    statement = dialect.insert(TIMERS)
    statement = statement.on_conflict_do_update(
        index_elements=[TIMERS.c.rule_id, TIMERS.c.subject],
        set_={
            "kind": statement.excluded.kind,
            "due_ms": statement.excluded.due_ms,
            "data": statement.excluded.data,
            "updated_ms": statement.excluded.updated_ms,
        },
    )
    session.execute(statement, rows)


def cancel(session: Session | Connection, keys: Iterable[Key]) -> None:
    wanted = list(set(keys))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        key = tuple_(RuleTimer.rule_id, RuleTimer.subject)
        session.execute(delete(RuleTimer).where(key.in_(chunk)))


def apply(
    session: Session | Connection, decisions: Iterable[Timer | CancelTimer], now_ms: int
) -> None:
    """Apply timer decisions in order: a later decision for the same key overrides."""
    final: dict[Key, Timer | CancelTimer] = {}
    for decision in decisions:
        final[(decision.rule_id, decision.subject)] = decision
    save(session, [d for d in final.values() if isinstance(d, Timer)], now_ms)
    cancel(session, [k for k, d in final.items() if isinstance(d, CancelTimer)])


def load(session: Session | Connection) -> list[Timer]:
    rows = session.execute(
        select(TIMERS.c.rule_id, TIMERS.c.subject, TIMERS.c.kind, TIMERS.c.due_ms, TIMERS.c.data)
    )
    return [
        Timer(rule_id, subject, kind, int(due_ms), dict(data or {}))
        for rule_id, subject, kind, due_ms, data in rows
    ]
