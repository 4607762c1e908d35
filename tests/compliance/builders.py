"""Plain builders for compliance tests: a park, and its record (presence, events, values,
alerts, tasks, work orders) written straight into the database as the other parts leave it."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from compliance.timeline import to_dt
from core.models import (
    Building,
    Device,
    DeviceEvent,
    DeviceState,
    PresenceChange,
    Site,
    Zone,
)
from core.models_alerts import Alert, AlertJournal
from core.models_maintenance import InspectionTask, WorkOrder

MAY = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000)
JUNE = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
_seq = itertools.count(1)


def make_park(
    engine: Engine,
    devices: dict[str, str],
    *,
    zone: str = "z1",
    building: str | None = "B1",
    site: str = "park",
    online_from: int | None = MAY - HOUR,
    attributes: dict[str, dict[str, Any]] | None = None,
    in_service: dict[str, date] | None = None,
    timezone: str = "UTC",
) -> None:
    """A site with one zone (in one building) holding ``devices`` (id → type); each device is
    online from ``online_from`` (None: never heard from)."""
    with engine.begin() as c:
        if not c.execute(Site.__table__.select().where(Site.id == site)).first():
            c.execute(
                insert(Site),
                [{"id": site, "name_zh": "测试园区", "name_en": "Test park", "timezone": timezone}],
            )
        if (
            building is not None
            and not c.execute(Building.__table__.select().where(Building.id == building)).first()
        ):
            c.execute(
                insert(Building),
                [{"id": building, "site_id": site, "name_zh": "一栋", "name_en": "Building 1"}],
            )
        if not c.execute(Zone.__table__.select().where(Zone.id == zone)).first():
            c.execute(
                insert(Zone),
                [
                    {
                        "id": zone,
                        "site_id": site,
                        "building_id": building,
                        "floor_id": None,
                        "kind": "warehouse",
                        "name_zh": "一区",
                        "name_en": "Zone 1",
                        "polygon": [],
                    }
                ],
            )
        c.execute(
            insert(Device),
            [
                {
                    "id": d,
                    "site_id": site,
                    "type": t,
                    "zone_id": zone,
                    "label": f"{t} {d}",
                    "attributes": (attributes or {}).get(d, {}),
                    "in_service_date": (in_service or {}).get(d),
                }
                for d, t in devices.items()
            ],
        )
        c.execute(
            insert(DeviceState),
            [
                {
                    "device_id": d,
                    "presence": "online" if online_from is not None else "unknown",
                    "presence_since_ms": online_from,
                    "last_seen_ms": online_from,
                    "last_values": {},
                }
                for d in devices
            ],
        )
        if online_from is not None:
            c.execute(
                insert(PresenceChange),
                [
                    {"device_id": d, "ts_ms": online_from, "presence": "online", "cause": "message"}
                    for d in devices
                ],
            )


def presence(engine: Engine, device_id: str, changes: Iterable[tuple[int, str, str]]) -> None:
    """Presence changes (ts, presence, cause), as the collector writes them: each a row, and the
    device's state says the latest."""
    rows = [
        {"device_id": device_id, "ts_ms": ts, "presence": p, "cause": cause}
        for ts, p, cause in changes
    ]
    with engine.begin() as c:
        c.execute(insert(PresenceChange), rows)
        latest = c.execute(
            select(PresenceChange.presence, PresenceChange.ts_ms)
            .where(PresenceChange.device_id == device_id)
            .order_by(PresenceChange.ts_ms.desc(), PresenceChange.id.desc())
            .limit(1)
        ).one()
        c.execute(
            update(DeviceState)
            .where(DeviceState.device_id == device_id)
            .values(presence=latest.presence, presence_since_ms=latest.ts_ms)
        )


def outage(engine: Engine, device_id: str, start: int, end: int | None) -> None:
    """Offline by silence from ``start``, back online at ``end``."""
    changes = [(start, "offline", "silence")]
    if end is not None:
        changes.append((end, "online", "message"))
    presence(engine, device_id, changes)


def event(engine: Engine, device_id: str, ts: int, name: str, received: int | None = None) -> None:
    with engine.begin() as c:
        c.execute(
            insert(DeviceEvent),
            [
                {
                    "device_id": device_id,
                    "ts_ms": ts,
                    "seq": next(_seq),
                    "event": name,
                    "detail": None,
                    "received_ms": ts if received is None else received,
                }
            ],
        )


def last_values(engine: Engine, device_id: str, values: dict[str, tuple[Any, int]]) -> None:
    """Set the device's last values ``{metric: (value, ts)}`` as the collector keeps them (it
    was last heard from at the newest of them)."""
    with engine.begin() as c:
        c.execute(
            update(DeviceState)
            .where(DeviceState.device_id == device_id)
            .values(
                last_values={m: {"v": v, "ts": ts} for m, (v, ts) in values.items()},
                last_seen_ms=max(ts for _v, ts in values.values()),
            )
        )


def task(
    session: Session,
    device_id: str,
    *,
    due: int,
    created: int | None = None,
    completed: int | None = None,
    result: str | None = None,
    kind: str = "inspection",
) -> InspectionTask:
    n = next(_seq)
    row = InspectionTask(
        kind=kind,
        plan_id=f"plan-{kind}",
        site_id="park",
        subject=device_id,
        device_id=device_id,
        device_type=None,
        zone_id="z1",
        subject_label=device_id,
        title_zh="检查",
        title_en=f"{kind} {n}",
        frequency="monthly",
        period_start=to_dt(due - 30 * DAY) + timedelta(milliseconds=n),
        due_at=to_dt(due),
        created_at=to_dt(created if created is not None else due - 30 * DAY),
        state="done" if completed is not None else "open",
        checklist=[],
        detail={},
        completed_at=to_dt(completed) if completed is not None else None,
        completed_by="crew" if completed is not None else None,
        result=(result or "pass") if completed is not None else None,
    )
    session.add(row)
    session.flush()
    return row


def work_order(
    session: Session,
    device_id: str,
    *,
    opened: int,
    closed: int | None = None,
    source: str = "manual",
    source_ref: str | None = None,
) -> WorkOrder:
    row = WorkOrder(
        source=source,
        source_ref=source_ref or f"ref-{next(_seq)}",
        site_id="park",
        device_id=device_id,
        zone_id="z1",
        title="Fix it",
        description="",
        state="closed" if closed is not None else "open",
        opened_at=to_dt(opened),
        opened_by="crew",
        related=[],
        closed_at=to_dt(closed) if closed is not None else None,
        closed_by="crew" if closed is not None else None,
    )
    session.add(row)
    session.flush()
    return row


def shelved_alert(
    session: Session,
    device_id: str,
    *,
    raised: int,
    shelved: int,
    until: int,
    unshelved: int | None = None,
    resolved: int | None = None,
) -> Alert:
    """An alert on the device, shelved at ``shelved`` until ``until``; maybe unshelved or
    resolved early, with the journal rows the alert store writes."""
    n = next(_seq)
    alert = Alert(
        open_key=None if resolved is not None else f"rule|{device_id}|{n}",
        rule_id="device-fault",
        kind="event",
        subject=f"{device_id}-{n}",
        site_id="park",
        device_id=device_id,
        zone_id="z1",
        severity="minor",
        state="resolved" if resolved is not None else "active",
        title_zh="故障",
        title_en="Fault",
        count=1,
        first_seen_ms=raised,
        last_seen_ms=raised,
        condition_active=True,
        resolved_ms=resolved,
        shelved_until_ms=until if unshelved is None and resolved is None else None,
        detail={},
        updated_ms=raised,
    )
    session.add(alert)
    session.flush()
    rows = [
        (raised, "raised", "system", None, None),
        (shelved, "shelved", "ops", "maintenance window", {"until_ms": until}),
    ]
    if unshelved is not None:
        rows.append((unshelved, "unshelved", "ops", None, None))
    if resolved is not None:
        rows.append((resolved, "resolved", "ops", "fixed", None))
    for at, action, actor, note, detail in rows:
        session.add(
            AlertJournal(
                alert_id=alert.id,
                at_ms=at,
                actor=actor,
                action=action,
                from_state=None,
                to_state="shelved" if action == "shelved" else "active",
                note=note,
                detail=detail,
            )
        )
    session.flush()
    return alert
