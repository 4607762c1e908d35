"""A whole past month of a small park, written with plain builder functions (a past month cannot
be played through the live pipeline: the collector and the alert store stamp arrival and
journal times with the clock). Condition spans come from the real code (device events turned
into spans by compliance.conditions.catch_up_events).

The month is May 2026 in Asia/Shanghai. ``MONTH`` below lists what was written, so that the tests
can work out the expected figures by plain arithmetic, independently of the report code.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert

from compliance.conditions import catch_up_events
from core.db import SessionFactory
from core.models import Reading
from core.models_alerts import Alert, AlertJournal
from core.models_incidents import Incident, IncidentAlert, IncidentStep
from core.models_training import TrainingSession
from tests.compliance import builders as b

TZ = ZoneInfo("Asia/Shanghai")
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
_ids = itertools.count(1)


def local(day: int, hour: int = 0, minute: int = 0, month: int = 5, year: int = 2026) -> int:
    """Epoch ms of a local (Asia/Shanghai) time in May 2026 (or the month given)."""
    moment = datetime(year, month, day, hour, minute, tzinfo=TZ)
    return int(moment.astimezone(UTC).timestamp() * 1000)


START = local(1)
END = local(1, month=6)
SMOKE = {f"sd{i:02d}": "smoke_detector" for i in range(1, 21)}
EXTINGUISHERS = {f"ext{i}": "extinguisher" for i in range(1, 5)}
LANES = {"fl1": "fire_lane", "fl2": "fire_lane"}
HAZMAT = {"haz1": "hazmat_store", "tag1": "asset_tag"}


def park(engine: Engine) -> None:
    """28 devices in 3 zones: a warehouse in building B1 (smoke detectors, extinguishers), an
    outdoor fire lane, a hazmat store in building B2; all online from before the month."""
    before = START - HOUR
    b.make_park(
        engine,
        {**SMOKE, **EXTINGUISHERS},
        zone="wh1",
        building="B1",
        online_from=before,
        timezone="Asia/Shanghai",
        attributes={
            e: {"agent": "dry_powder", "manufacture_date": "2022-03-01"} for e in EXTINGUISHERS
        },
    )
    b.make_park(engine, LANES, zone="lane-e", building=None, online_from=before)
    b.make_park(engine, HAZMAT, zone="hz1", building="B2", online_from=before)


def alert(
    session: Any,
    rule: str,
    device: str | None,
    *,
    seen: int,
    severity: str = "major",
    acked: int | None = None,
    resolved: int | None = None,
    resolved_by: str = "system",
    note: str | None = None,
    escalated: int | None = None,
    value: Any = None,
    drill: bool = False,
    zone: str | None = None,
) -> int:
    """An alert as the alert store leaves it, with its journal."""
    n = next(_ids)
    detail: dict[str, Any] = {}
    if value is not None:
        detail["value"] = value
    if drill:
        detail["drill"] = True
    row = Alert(
        open_key=None if resolved is not None else f"{rule}|{device}|{n}",
        rule_id=rule,
        kind="event",
        subject=f"{device}-{n}",
        site_id="park",
        device_id=device,
        zone_id=zone,
        severity=severity,
        state="resolved" if resolved is not None else ("acknowledged" if acked else "active"),
        title_zh=f"{rule} 报警",
        title_en=f"{rule} alert",
        count=1,
        first_seen_ms=seen,
        last_seen_ms=seen,
        condition_active=resolved is None,
        acked_ms=acked,
        acked_by="op" if acked else None,
        resolved_ms=resolved,
        resolved_by=resolved_by if resolved else None,
        resolve_note=note,
        detail=detail,
        updated_ms=seen,
    )
    session.add(row)
    session.flush()
    entries = [(seen, "raised", "system", None)]
    if escalated is not None:
        entries.append((escalated, "escalated", "system", "not acknowledged: escalation level 1"))
    if acked is not None:
        entries.append((acked, "acknowledged", "op", None))
    if resolved is not None:
        entries.append((resolved, "resolved", resolved_by, note or "condition cleared"))
    for at, action, actor, text in entries:
        session.add(
            AlertJournal(
                alert_id=row.id,
                at_ms=at,
                actor=actor,
                action=action,
                from_state=None,
                to_state="resolved" if action == "resolved" else "active",
                note=text,
                detail=None,
            )
        )
    session.flush()
    return int(row.id)


def incident(
    session: Any,
    plan: str,
    plan_type: str,
    level: str,
    *,
    at: int,
    drill: bool,
    steps: list[tuple[int, int | None, str]] = (),  # type: ignore[assignment]
    closed: int | None = None,
    alerts: list[int] = (),  # type: ignore[assignment]
) -> int:
    """An incident; each step (deadline after activation, acted after activation or None,
    state)."""
    row = Incident(
        open_key=None if closed is not None else f"{plan}|site|{next(_ids)}",
        plan_id=plan,
        plan_type=plan_type,
        plan_level=level,
        title_zh=f"{plan} 预案",
        title_en=f"{plan} plan",
        severity="critical",
        site_id="park",
        zone_id="wh1",
        zone_name_zh="一区",
        zone_name_en="Zone 1",
        drill=drill,
        state="closed" if closed is not None else "open",
        trigger="manual" if drill else "alert",
        reason="drill" if drill else None,
        activated_by="op",
        activated_ms=at,
        closed_by="op" if closed is not None else None,
        closed_ms=closed,
        summary="已处置完毕" if closed is not None else None,
        updated_ms=at,
    )
    session.add(row)
    session.flush()
    for i, (deadline, acted, state) in enumerate(steps):
        session.add(
            IncidentStep(
                incident_id=row.id,
                position=i,
                step_id=f"s{i}",
                role="patrol",
                text_zh="步骤",
                text_en="step",
                requires="none",
                deadline_ms=deadline,
                due_ms=at + deadline,
                state=state,
                actor="op" if acted is not None else None,
                acted_ms=at + acted if acted is not None else None,
            )
        )
    for alert_id in alerts:
        session.add(
            IncidentAlert(
                incident_id=row.id,
                alert_id=alert_id,
                rule_id="fire-confirmed",
                severity="critical",
                title_zh="火警",
                title_en="Fire",
                device_id=None,
                first_seen_ms=at,
                attached_ms=at,
            )
        )
    session.flush()
    return int(row.id)


def training(session: Any, day: date, count: int, names: list[str] | None = None) -> int:
    row = TrainingSession(
        site_id="park",
        held_on=day,
        topic="灭火器使用",
        trainer="张队长",
        attendees=names or [],
        attendee_count=count,
        hours=2.0,
        note=None,
        recorded_by="op",
        recorded_ms=START,
    )
    session.add(row)
    session.flush()
    return int(row.id)


def heartbeats(engine: Engine, devices: list[str], start: int, end: int, every: int) -> None:
    """Readings every ``every`` ms from each device in [start, end)."""
    rows = [
        {"device_id": d, "metric": "battery_pct", "ts_ms": ts, "seq": ts // 1000, "value": 90.0}
        for d in devices
        for ts in range(start, end, every)
    ]
    with engine.begin() as c:
        for i in range(0, len(rows), 5000):
            c.execute(insert(Reading), rows[i : i + 5000])


@dataclass
class Month:
    """What was written, for the tests' own arithmetic."""

    alerts: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    training: dict[str, int] = field(default_factory=dict)
    gap_start: int = 0
    gap_back: int = 0
    silence: tuple[int, int] = (0, 0)


def busy_month(engine: Engine, sessions: SessionFactory) -> Month:
    """May 2026 with something for every clause; see the comments for each fact."""
    m = Month()
    park(engine)
    # presence: sd01 offline 90 min on the 3rd; sd02 a whole day from the 10th
    b.outage(engine, "sd01", local(3, 2), local(3, 3, 30))
    b.outage(engine, "sd02", local(10), local(11))
    # the collector restarts at 00:00 on the 25th after being down 3 hours: every device is
    # unknown from then until it is heard from again, 20 minutes later
    m.gap_start, m.gap_back = local(25), local(25, 0, 20)
    m.silence = (local(24, 21), local(25))
    everything = {**SMOKE, **EXTINGUISHERS, **LANES, **HAZMAT}
    for device in everything:
        b.presence(
            engine, device, [(m.gap_start, "unknown", "startup"), (m.gap_back, "online", "message")]
        )
    # readings every 10 minutes from two devices, none while the collector was down
    heartbeats(engine, ["sd05", "sd06"], START, m.silence[0], 10 * MIN)
    heartbeats(engine, ["sd05", "sd06"], m.silence[1], END, 10 * MIN)
    # fire lane fl1 obstructed 25 minutes on the 5th and 70 on the 12th (device events, turned
    # into condition spans by the real catch-up)
    for start, end in ((local(5, 8), local(5, 8, 25)), (local(12, 14), local(12, 15, 10))):
        b.event(engine, "fl1", start, "obstruction_start")
        b.event(engine, "fl1", end, "obstruction_end")
    with sessions() as s:
        while catch_up_events(s, END) > 0:
            pass
    with sessions() as s:
        a = m.alerts
        a["lane1"] = alert(
            s,
            "fire-lane-obstructed",
            "fl1",
            seen=local(5, 8, 1),
            acked=local(5, 8, 3),
            resolved=local(5, 8, 25),
        )
        a["lane2"] = alert(
            s,
            "fire-lane-obstructed",
            "fl1",
            seen=local(12, 14, 1),
            severity="critical",
            acked=local(12, 14, 30),
            resolved=local(12, 15, 10),
            escalated=local(12, 14, 2),
        )
        a["gas1"] = alert(
            s,
            "gas-25-lel",
            "haz1",
            seen=local(18, 10),
            value=27.5,
            acked=local(18, 10, 2),
            resolved=local(18, 10, 40),
        )
        a["gas2"] = alert(
            s,
            "gas-50-lel",
            "haz1",
            seen=local(18, 10, 5),
            severity="critical",
            value=55.0,
            acked=local(
                18,
                10,
                5,
            )
            + 30_000,
            resolved=local(18, 10, 40),
        )
        a["goods"] = alert(
            s,
            "hazardous-goods-out-of-zone",
            "tag1",
            seen=local(19, 9),
            acked=local(19, 9, 4),
            resolved=local(19, 9, 30),
            zone="wh1",
        )
        a["door"] = alert(
            s,
            "hazmat-door-open",
            "haz1",
            seen=local(21, 13),
            severity="minor",
            acked=local(21, 13, 10),
            resolved=local(21, 13, 50),
        )
        a["temp"] = alert(
            s,
            "hazmat-temperature",
            "haz1",
            seen=local(22, 15),
            acked=local(22, 15, 3),
            resolved=local(22, 17),
        )
        a["fault"] = alert(
            s,
            "device-fault",
            "sd03",
            seen=local(6, 9),
            severity="minor",
            acked=local(6, 9, 10),
            resolved=local(6, 11),
        )
        a["false"] = alert(
            s,
            "fire-prealarm",
            "sd07",
            seen=local(15, 11),
            acked=local(15, 11, 1),
            resolved=local(15, 11, 20),
            resolved_by="王伟",
            note="误报：厨房油烟",
        )
        a["fire"] = alert(
            s,
            "fire-confirmed",
            None,
            seen=local(15, 20),
            severity="critical",
            acked=local(15, 20, 3),
            resolved=local(15, 22),
            resolved_by="王伟",
            note="已扑灭",
            escalated=local(15, 20, 1),
            zone="wh1",
        )
        a["open"] = alert(s, "battery-low", "sd08", seen=local(30, 8), severity="warning")
        a["drill"] = alert(
            s,
            "fire-confirmed",
            None,
            seen=local(20, 10),
            severity="critical",
            drill=True,
            acked=local(20, 10, 1),
            resolved=local(20, 11),
        )
        # shelved on sd03 for two hours on the 6th (the builder's journal: raised, shelved)
        shelf = b.shelved_alert(
            s,
            "sd03",
            raised=local(6, 9, 30),
            shelved=local(6, 10),
            until=local(6, 12),
            resolved=local(6, 12),
        )
        a["shelved"] = shelf.id
        # inspections: ext4 on time; ext2 late (due the 14th, done the 15th 06:00); ext1 missed
        # (due the 20th); ext3 on time but failed, opening a work order closed a day later
        t = m.tasks
        t["ok"] = b.task(s, "ext4", due=local(8), completed=local(7, 10)).id
        t["late"] = b.task(s, "ext2", due=local(14), completed=local(15, 6)).id
        t["missed"] = b.task(s, "ext1", due=local(20)).id
        failed = b.task(s, "ext3", due=local(8), completed=local(7, 10), result="fail")
        t["failed"] = failed.id
        wo = b.work_order(
            s,
            "ext3",
            opened=local(7, 10),
            closed=local(8, 10),
            source="inspection",
            source_ref=str(failed.id),
        )
        wo.fix = "更换压力表"
        m.orders["inspection"] = wo.id
        manual = b.work_order(s, "sd04", opened=local(8, 9), closed=local(9, 9))
        manual.fix = "清洁探测器"
        m.orders["manual"] = manual.id
        # plans: a real fire on the 15th (3 steps: on time, late, skipped), a fire drill on the
        # 20th; the chemical-leak plan last drilled in September 2025 (overdue); the earthquake
        # plan drilled in February (within a year)
        m.incidents["real"] = incident(
            s,
            "fire",
            "fire",
            "on_site",
            at=local(15, 20),
            drill=False,
            closed=local(15, 22),
            steps=[
                (3 * MIN, 2 * MIN, "done"),
                (5 * MIN, 9 * MIN, "done"),
                (10 * MIN, None, "skipped"),
            ],
            alerts=[a["fire"]],
        )
        m.incidents["drill"] = incident(
            s, "fire", "fire", "on_site", at=local(20, 10), drill=True, closed=local(20, 11)
        )
        m.incidents["old_leak"] = incident(
            s,
            "chemical-leak",
            "chemical_leak",
            "on_site",
            at=local(10, 10, month=9, year=2025),
            drill=True,
            closed=local(10, 11, month=9, year=2025),
        )
        m.incidents["quake"] = incident(
            s,
            "earthquake",
            "earthquake",
            "special",
            at=local(10, 10, month=2),
            drill=True,
            closed=local(10, 11, month=2),
        )
        m.training["may1"] = training(s, date(2026, 5, 12), 12, ["李明", "王芳"])
        m.training["may2"] = training(s, date(2026, 5, 28), 30)
        m.training["march"] = training(s, date(2026, 3, 3), 8)
        s.commit()
    return m
