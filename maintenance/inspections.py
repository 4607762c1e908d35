"""Completing inspection tasks, finding them, and what the record says about a device.

The crew completes a task once, answering every checklist item pass / fail / na, with an overall
result, a note and optionally a photo. Any failed item (or a result of fail) opens a work order
in the same transaction. Everything is checked before anything is written: a refused completion
leaves the task exactly as it was.

``inspection_standing`` is what the intactness figure asks: did the device's last inspection pass
(or was the fix of its failure recorded), and is none of its tasks overdue?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from core.models_maintenance import InspectionTask, WorkOrder
from maintenance.errors import Conflict, InvalidInput, NotFound
from maintenance.photos import PhotoStore
from maintenance.text import check_person, clean_text
from maintenance.work_orders import open_from_inspection

Answer = Literal["pass", "fail", "na"]
ANSWERS: tuple[str, ...] = ("pass", "fail", "na")
NOTE_MAX = 2000
EffectiveState = Literal["open", "overdue", "done"]


@dataclass(frozen=True, slots=True)
class Completion:
    """What the inspector hands in for one task."""

    answers: dict[str, str]
    result: str | None = None
    """``pass`` or ``fail``; derived from the answers when not given."""
    note: str | None = None
    photo: bytes | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    task: InspectionTask
    work_order: WorkOrder | None


def complete_task(
    session: Session,
    task_id: int,
    completion: Completion,
    *,
    now: datetime,
    photos: PhotoStore | None = None,
) -> Completed:
    """Record the result of a task; the caller commits. Raises NotFound, Conflict, InvalidInput."""
    task = session.get(InspectionTask, task_id)
    if task is None:
        raise NotFound(f"no inspection task with id {task_id}")
    if task.state == "done":
        raise Conflict(_already_done(task))
    answers, failed = _check_answers(task, completion.answers)
    result = completion.result
    if result is not None and result not in ("pass", "fail"):
        raise InvalidInput(f"result {str(result)[:20]!r} must be pass or fail")
    note = clean_text(completion.note, "note", max_length=NOTE_MAX)
    user = check_person(completion.user)
    if failed and result == "pass":
        raise InvalidInput(
            "result pass contradicts the failed items: " + ", ".join(i["id"] for i in failed)
        )
    if result == "fail" and not failed and note is None:
        raise InvalidInput("a fail with every item passed needs a note saying what failed")
    result = result or ("fail" if failed else "pass")
    photo_id = None
    if completion.photo is not None:
        photo_id = (photos or PhotoStore()).save(session, completion.photo, now).id
    changed = session.execute(
        update(InspectionTask)
        .where(InspectionTask.id == task_id, InspectionTask.state != "done")
        .values(
            state="done",
            result=result,
            answers=answers,
            note=note,
            completed_at=now,
            completed_by=user,
            photo_id=photo_id,
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(task)
    if not getattr(changed, "rowcount", 0):  # someone completed it a moment ago
        raise Conflict(_already_done(task))
    order = None
    if result == "fail":
        order = open_from_inspection(session, task, failed, now)
    return Completed(task, order)


def _check_answers(
    task: InspectionTask, given: dict[str, str]
) -> tuple[dict[str, str], list[dict[str, str]]]:
    if not isinstance(given, dict):
        raise InvalidInput("answers must map each checklist item id to pass, fail or na")
    items = {item["id"]: item for item in task.checklist}
    unknown = sorted(str(k)[:48] for k in given if k not in items)
    if unknown:
        raise InvalidInput(
            f"answers name items not on task {task.id}'s checklist: {', '.join(unknown[:5])}"
        )
    missing = [item_id for item_id in items if item_id not in given]
    if missing:
        raise InvalidInput(f"checklist items not answered: {', '.join(missing)}")
    bad = [k for k, v in given.items() if v not in ANSWERS]
    if bad:
        raise InvalidInput(f"answer to {bad[0]!r} must be pass, fail or na")
    failed = [items[k] for k in items if given[k] == "fail"]
    return {k: given[k] for k in items}, failed


def _already_done(task: InspectionTask) -> str:
    when = task.completed_at.isoformat() if task.completed_at else "an unknown time"
    return (
        f"inspection task {task.id} was already completed at {when} "
        f"by {task.completed_by or 'someone unnamed'}; a completion is never overwritten"
    )


def get_task(session: Session, task_id: int) -> InspectionTask:
    task = session.get(InspectionTask, task_id)
    if task is None:
        raise NotFound(f"no inspection task with id {task_id}")
    return task


# ---- finding tasks ----------------------------------------------------------------------------


def effective_state(task: InspectionTask, now: datetime) -> EffectiveState:
    """``overdue`` as soon as the due time has come, even before the sweep marked it."""
    if task.state == "done":
        return "done"
    return "overdue" if task.due_at <= now else "open"


def _state_condition(state: str, now: datetime) -> ColumnElement[bool]:
    if state == "done":
        return InspectionTask.state == "done"
    if state == "overdue":
        return and_(InspectionTask.state != "done", InspectionTask.due_at <= now)
    return and_(InspectionTask.state != "done", InspectionTask.due_at > now)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    states: tuple[str, ...] = ()
    due_after: datetime | None = None
    """Due strictly after this instant."""
    due_until: datetime | None = None
    """Due at or before this instant."""
    zone_id: str | None = None
    device_type: str | None = None
    device_id: str | None = None
    assignee: str | None = None
    role: str | None = None
    plan_id: str | None = None
    kind: str | None = None
    limit: int = 100
    offset: int = 0


def task_conditions(flt: TaskFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.states:
        conditions.append(or_(*(_state_condition(s, now) for s in flt.states)))
    if flt.due_after is not None:
        conditions.append(InspectionTask.due_at > flt.due_after)
    if flt.due_until is not None:
        conditions.append(InspectionTask.due_at <= flt.due_until)
    for column, value in (
        (InspectionTask.zone_id, flt.zone_id),
        (InspectionTask.device_type, flt.device_type),
        (InspectionTask.device_id, flt.device_id),
        (InspectionTask.assignee, flt.assignee),
        (InspectionTask.assignee_role, flt.role),
        (InspectionTask.plan_id, flt.plan_id),
        (InspectionTask.kind, flt.kind),
    ):
        if value is not None:
            conditions.append(column == value)
    return conditions


def list_tasks(
    session: Session, flt: TaskFilter, now: datetime
) -> tuple[int, list[InspectionTask]]:
    """Matching tasks, soonest due first; with the total over all pages."""
    conditions = task_conditions(flt, now)
    total = session.scalar(select(func.count()).select_from(InspectionTask).where(*conditions))
    rows = session.scalars(
        select(InspectionTask)
        .where(*conditions)
        .order_by(InspectionTask.due_at, InspectionTask.id)
        .limit(flt.limit)
        .offset(flt.offset)
    )
    return int(total or 0), list(rows)


# ---- what the record says about a device ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InspectionStanding:
    """A device's inspection record at ``now``: proven only when every reason is absent.

    reasons: ``overdue`` (a task's due time passed undone), ``last_failed`` (the last inspection
    failed and the fix is not recorded), ``open_work_order``, ``never_inspected`` (tasks exist
    but none is completed yet), ``no_tasks`` (no plan has produced a task for it).
    """

    device_id: str
    last_passed: bool | None
    """The last completed inspection passed, or failed and its work order was closed."""
    last_completed_at: datetime | None
    overdue: bool
    next_due_at: datetime | None
    open_work_orders: int
    reasons: tuple[str, ...] = field(default=())

    @property
    def proven(self) -> bool:
        return not self.reasons


def inspection_standing(session: Session, device_id: str, now: datetime) -> InspectionStanding:
    return inspection_standings(session, now, [device_id])[device_id]


def inspection_standings(
    session: Session, now: datetime, device_ids: list[str] | None = None
) -> dict[str, InspectionStanding]:
    """The standing of many devices in a handful of queries (for the intactness figure)."""
    scope = [InspectionTask.device_id.is_not(None)]
    if device_ids is not None:
        scope.append(InspectionTask.device_id.in_(device_ids))
    undone = InspectionTask.state != "done"
    summary = session.execute(
        select(
            InspectionTask.device_id,
            func.count(),
            func.sum(case((and_(undone, InspectionTask.due_at <= now), 1), else_=0)),
            func.min(case((undone, InspectionTask.due_at), else_=None)),
        )
        .where(*scope)
        .group_by(InspectionTask.device_id)
    ).all()
    ranked = (
        select(
            InspectionTask.device_id,
            InspectionTask.id,
            InspectionTask.result,
            InspectionTask.completed_at,
            func.row_number()
            .over(
                partition_by=InspectionTask.device_id,
                order_by=(InspectionTask.completed_at.desc(), InspectionTask.id.desc()),
            )
            .label("position"),
        )
        .where(*scope, InspectionTask.kind == "inspection", InspectionTask.state == "done")
        .subquery()
    )
    last = {
        row.device_id: row
        for row in session.execute(
            select(ranked.c.device_id, ranked.c.id, ranked.c.result, ranked.c.completed_at).where(
                ranked.c.position == 1
            )
        )
    }
    failed_refs = [str(row.id) for row in last.values() if row.result == "fail"]
    fixed = set(
        session.scalars(
            select(WorkOrder.source_ref).where(
                WorkOrder.source == "inspection",
                WorkOrder.source_ref.in_(failed_refs),
                WorkOrder.state == "closed",
            )
        )
    )
    wo_scope = [WorkOrder.state == "open", WorkOrder.device_id.is_not(None)]
    if device_ids is not None:
        wo_scope.append(WorkOrder.device_id.in_(device_ids))
    open_orders: dict[str, int] = {
        str(device): int(count)
        for device, count in session.execute(
            select(WorkOrder.device_id, func.count()).where(*wo_scope).group_by(WorkOrder.device_id)
        )
    }
    summaries = {str(row[0]): row for row in summary}
    standings: dict[str, InspectionStanding] = {}
    for device_id in device_ids if device_ids is not None else sorted(summaries):
        row = summaries.get(device_id)
        latest = last.get(device_id)
        last_passed: bool | None = None
        if latest is not None:
            last_passed = latest.result == "pass" or str(latest.id) in fixed
        overdue = bool(row and row[2])
        next_due = _aware(row[3]) if row is not None else None
        orders = open_orders.get(device_id, 0)
        reasons: list[str] = []
        if row is None:
            reasons.append("no_tasks")
        elif latest is None:
            reasons.append("never_inspected")
        if overdue:
            reasons.append("overdue")
        if last_passed is False:
            reasons.append("last_failed")
        if orders:
            reasons.append("open_work_order")
        standings[device_id] = InspectionStanding(
            device_id=device_id,
            last_passed=last_passed,
            last_completed_at=_aware(latest.completed_at) if latest is not None else None,
            overdue=overdue,
            next_due_at=next_due,
            open_work_orders=orders,
            reasons=tuple(reasons),
        )
    return standings


def _aware(value: datetime | str | None) -> datetime | None:
    """Aggregates (min over a CASE) may bypass the column type: normalise to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
