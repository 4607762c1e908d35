"""Work orders: something broken to fix, opened from a failed check, a fault alert, or by hand.

A work order is closed only with the fix recorded. The device counts as intact again only when
no work order of it is open and (the intactness figure's part) its live state is normal.

``open_from_alert`` is the narrow interface the rules engine is wired to: it opens (at most) one
work order per alert, and while a work order of the same kind is open for the device, a new
alert is added to that one instead of opening another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Device
from core.models_maintenance import InspectionTask, WorkOrder
from maintenance.errors import Conflict, InvalidInput, NotFound
from maintenance.text import check_person, clean_text

FAULT_KINDS = frozenset(
    {"fault", "offline", "pressure", "battery", "tamper", "blocked", "removed", "power", "leak"}
)
"""Alert kinds that are a maintenance matter (a fire alarm is not: it is a plan's matter)."""
FAULT_RULES: dict[str, str] = {
    "device-fault": "fault",
    "panel-loop-fault": "fault",
    "tamper": "tamper",
    "battery-low": "battery",
    "extinguisher-pressure-low": "pressure",
    "extinguisher-pressure-high": "pressure",
    "extinguisher-removed": "removed",
    "extinguisher-discharged": "removed",
    "hydrant-pressure-low": "pressure",
    "hydrant-leak": "leak",
    "fire-detection-offline": "offline",
    "device-offline": "offline",
    "mains-lost": "power",
    "panel-mains-lost": "power",
}
"""Rule ids of the demo park's fault-type rules (examples/demo-park/rules.yaml) → work-order
kind. Fire, gas, hazmat and fire-lane rules are emergencies for the plans, not repairs."""
TITLE_MAX = 200
TEXT_MAX = 4000


def open_work_order(
    session: Session,
    *,
    title: str,
    now: datetime,
    device_id: str | None = None,
    zone_id: str | None = None,
    description: str | None = None,
    opened_by: str | None = None,
    assignee: str | None = None,
    kind: str = "fault",
    source: str = "manual",
    source_ref: str | None = None,
) -> WorkOrder:
    """Open a work order by hand (or for a caller below); InvalidInput names a bad field."""
    clean_title = clean_text(title, "title", max_length=TITLE_MAX, required=True, multiline=False)
    assert clean_title is not None
    site_id = None
    if device_id is not None:
        device = session.get(Device, device_id)
        if device is None:
            raise InvalidInput(f"no device with id {device_id[:64]!r}")
        site_id = device.site_id
        zone_id = zone_id or device.zone_id
    order = WorkOrder(
        source=source,
        source_ref=source_ref,
        kind=kind,
        site_id=site_id,
        device_id=device_id,
        zone_id=zone_id,
        title=clean_title,
        description=clean_text(description, "description", max_length=TEXT_MAX) or "",
        state="open",
        opened_at=now,
        opened_by=check_person(opened_by, "opened_by"),
        assignee=check_person(assignee, "assignee"),
        related=[],
    )
    session.add(order)
    session.flush()
    return order


def open_from_inspection(
    session: Session, task: InspectionTask, failed: list[dict[str, Any]], now: datetime
) -> WorkOrder:
    """The work order of a failed check: which items failed, the inspector's note."""
    lines = [f"- {item['zh']} / {item['en']}" for item in failed]
    if task.note:
        lines.append(f"Note: {task.note}")
    title = f"{task.title_zh} 不合格 / {task.title_en} failed: {task.subject_label}"
    return open_work_order(
        session,
        title=title[:TITLE_MAX],
        now=now,
        device_id=task.device_id if _device_exists(session, task.device_id) else None,
        zone_id=task.zone_id,
        description="\n".join(lines)[:TEXT_MAX],
        opened_by=task.completed_by,
        kind="inspection",
        source="inspection",
        source_ref=str(task.id),
    )


def open_from_alert(
    session: Session,
    *,
    alert_id: str,
    kind: str,
    title: str,
    now: datetime,
    device_id: str | None = None,
    detail: str | None = None,
) -> WorkOrder | None:
    """A work order for a fault-type alert; None for kinds that are not a maintenance matter.

    Idempotent: the same alert id always gives the same work order, also when two callers race.
    """
    if kind not in FAULT_KINDS:
        return None
    ref = str(alert_id)[:128]
    existing = _by_source(session, "alert", ref)
    if existing is not None:
        return existing
    if device_id is not None:
        open_same = session.scalar(
            select(WorkOrder)
            .where(
                WorkOrder.device_id == device_id,
                WorkOrder.kind == kind,
                WorkOrder.state == "open",
            )
            .order_by(WorkOrder.id)
            .limit(1)
        )
        if open_same is not None:
            related = [r for r in open_same.related if r.get("alert_id") != ref]
            related.append({"alert_id": ref, "at": now.isoformat()})
            open_same.related = related
            session.flush()
            return open_same
        if not _device_exists(session, device_id):
            device_id = None
    try:
        with session.begin_nested():
            return open_work_order(
                session,
                title=clean_text(title, "title", max_length=TITLE_MAX, multiline=False)
                or f"{kind} alert {ref}",
                now=now,
                device_id=device_id,
                description=detail,
                kind=kind,
                source="alert",
                source_ref=ref,
            )
    except IntegrityError:
        raced = _by_source(session, "alert", ref)
        if raced is None:  # pragma: no cover - the conflicting row must exist
            raise
        return raced


def open_from_alert_record(
    session: Session,
    alert: Mapping[str, Any],
    *,
    now: datetime,
    fault_rules: Mapping[str, str] = FAULT_RULES,
) -> WorkOrder | None:
    """``open_from_alert`` for an alert as the rules package publishes it (``rules.alerts.public``:
    keys ``id``, ``rule``, ``device``, ``title`` {zh, en}); None unless its rule is a fault rule.
    """
    kind = fault_rules.get(str(alert.get("rule", "")))
    if kind is None or alert.get("id") is None:
        return None
    title = alert.get("title") or {}
    text = (
        f"{title.get('zh', '')} / {title.get('en', '')}".strip(" /")
        if isinstance(title, Mapping)
        else str(title)
    )
    device = alert.get("device")
    return open_from_alert(
        session,
        alert_id=str(alert["id"]),
        kind=kind,
        title=text[:TITLE_MAX] or f"{kind} alert {alert['id']}",
        device_id=str(device) if device else None,
        detail=f"alert {alert['id']} of rule {alert.get('rule')}",
        now=now,
    )


def close_work_order(
    session: Session, order_id: int, *, fix: str, now: datetime, closed_by: str | None = None
) -> WorkOrder:
    """Close with the fix recorded; Conflict if already closed, InvalidInput if no fix given."""
    clean_fix = clean_text(fix, "fix", max_length=TEXT_MAX, required=True)
    person = check_person(closed_by, "closed_by")
    order = session.get(WorkOrder, order_id)
    if order is None:
        raise NotFound(f"no work order with id {order_id}")
    changed = session.execute(
        update(WorkOrder)
        .where(WorkOrder.id == order_id, WorkOrder.state == "open")
        .values(state="closed", fix=clean_fix, closed_at=now, closed_by=person)
        .execution_options(synchronize_session=False)
    )
    if not getattr(changed, "rowcount", 0):
        session.refresh(order)
        raise Conflict(
            f"work order {order_id} was already closed at {_iso(order.closed_at)}"
            f" by {order.closed_by or 'someone unnamed'}"
        )
    session.refresh(order)
    return order


@dataclass(frozen=True, slots=True)
class WorkOrderFilter:
    state: str | None = None
    device_id: str | None = None
    zone_id: str | None = None
    source: str | None = None
    assignee: str | None = None
    limit: int = 50
    offset: int = 0


def list_work_orders(session: Session, flt: WorkOrderFilter) -> tuple[int, list[WorkOrder]]:
    conditions = [
        column == value
        for column, value in (
            (WorkOrder.state, flt.state),
            (WorkOrder.device_id, flt.device_id),
            (WorkOrder.zone_id, flt.zone_id),
            (WorkOrder.source, flt.source),
            (WorkOrder.assignee, flt.assignee),
        )
        if value is not None
    ]
    total = session.scalar(select(func.count()).select_from(WorkOrder).where(*conditions)) or 0
    rows = session.scalars(
        select(WorkOrder)
        .where(*conditions)
        .order_by(WorkOrder.opened_at.desc(), WorkOrder.id.desc())
        .limit(flt.limit)
        .offset(flt.offset)
    )
    return int(total), list(rows)


def get_work_order(session: Session, order_id: int) -> WorkOrder:
    order = session.get(WorkOrder, order_id)
    if order is None:
        raise NotFound(f"no work order with id {order_id}")
    return order


def _by_source(session: Session, source: str, ref: str) -> WorkOrder | None:
    return session.scalar(
        select(WorkOrder).where(WorkOrder.source == source, WorkOrder.source_ref == ref)
    )


def _device_exists(session: Session, device_id: str | None) -> bool:
    return device_id is not None and session.get(Device, device_id) is not None


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "an unknown time"
