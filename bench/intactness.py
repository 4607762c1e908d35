"""Intactness benchmark: build a park of N devices with a year of records, then time the
current figure and a month's time-weighted figure.

    python bench/intactness.py                       # 20,000 devices, fresh SQLite file
    python bench/intactness.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

The park, around the current time (the month measured is the last whole calendar month): the
demo's mix of device types over 40 zones in 8 buildings; everyone online from a month before,
5 % with one to three outages, one broker loss that makes every device unknown for two minutes,
1,500 condition events (faults, tampering, removals, obstructions, disablements) among 40,000
ordinary ones, low batteries and pressures for 1 %, 200 shelved alerts, a year of monthly
inspection tasks (some late, some never done), 600 work orders and 50 devices out of service.
The figures are timed as functions and through the API (in-process HTTP, JSON included).
Targets: the current figure under 200 ms, the month's figure under 2 s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.routers.intactness import register_scrap_date  # noqa: E402
from compliance.conditions import ValueReading, catch_up_events, record_values  # noqa: E402
from compliance.history import period_figure  # noqa: E402
from compliance.intactness import current_figure, refresh  # noqa: E402
from compliance.timeline import to_dt  # noqa: E402
from core.catalogue import load_catalogue  # noqa: E402
from core.contract import now_ms  # noqa: E402
from core.db import make_engine, session_factory, upgrade  # noqa: E402
from core.models import (  # noqa: E402
    Building,
    Device,
    DeviceEvent,
    DeviceState,
    PresenceChange,
    Site,
    Zone,
)
from core.models_alerts import Alert, AlertJournal  # noqa: E402
from core.models_compliance import OutOfService  # noqa: E402
from core.models_maintenance import InspectionTask, WorkOrder  # noqa: E402

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
_TODAY = datetime.now(UTC)
_THIS_MONTH = datetime(_TODAY.year, _TODAY.month, 1, tzinfo=UTC)
_LAST_MONTH = (_THIS_MONTH - timedelta(days=1)).replace(day=1)
MAY = int(_LAST_MONTH.timestamp() * 1000)
"""The month measured: the last whole calendar month (UTC)."""
JUNE = int(_THIS_MONTH.timestamp() * 1000)
NOW = now_ms()
MIX = {
    "smoke_detector": 0.42,
    "heat_detector": 0.08,
    "manual_call_point": 0.08,
    "fire_alarm_panel": 0.01,
    "extinguisher": 0.25,
    "hydrant_pressure": 0.05,
    "fire_lane": 0.02,
    "warehouse_env": 0.05,
    "hazmat_store": 0.02,
    "power_monitor": 0.02,
}
NORMAL_VALUES: dict[str, dict[str, Any]] = {
    "smoke_detector": {"obscuration_db_m": 0.02, "battery_pct": 88.0, "fault": False},
    "heat_detector": {"temperature_c": 24.0, "battery_pct": 90.0, "fault": False},
    "manual_call_point": {"activated": False, "fault": False},
    "fire_alarm_panel": {
        "mains_ok": True,
        "battery_ok": True,
        "loop_fault": False,
        "disabled_points": 0.0,
        "fault": False,
    },
    "extinguisher": {
        "pressure_mpa": 1.2,
        "present": True,
        "front_blocked": False,
        "battery_pct": 80.0,
        "fault": False,
    },
    "hydrant_pressure": {"pressure_mpa": 0.5, "battery_pct": 85.0, "fault": False},
    "fire_lane": {"obstructed": False, "occupancy_pct": 3.0, "fault": False},
    "warehouse_env": {
        "temperature_c": 22.0,
        "humidity_pct": 55.0,
        "gas_lel_pct": 0.0,
        "smoke": False,
        "battery_pct": 77.0,
        "fault": False,
    },
    "hazmat_store": {
        "door_open": False,
        "gas_lel_pct": 1.0,
        "vapour_ppm": 3.0,
        "temperature_c": 20.0,
        "fault": False,
    },
    "power_monitor": {
        "mains_ok": True,
        "on_battery": False,
        "battery_pct": 99.0,
        "voltage_v": 221.0,
        "fault": False,
    },
}


def build(engine: Engine, n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    catalogue = load_catalogue()
    counts: dict[str, int] = {}
    types = list(MIX)
    weights = [MIX[t] for t in types]
    devices = [(f"d{i:06d}", rng.choices(types, weights)[0]) for i in range(n)]
    zones = [(f"z{z:02d}", f"B{z % 8}") for z in range(40)]
    with engine.begin() as c:
        c.execute(insert(Site), [{"id": "bench", "name_zh": "基准园区", "name_en": "Bench park"}])
        c.execute(
            insert(Building),
            [
                {"id": f"B{b}", "site_id": "bench", "name_zh": f"{b}栋", "name_en": f"B{b}"}
                for b in range(8)
            ],
        )
        c.execute(
            insert(Zone),
            [
                {
                    "id": z,
                    "site_id": "bench",
                    "building_id": bld,
                    "floor_id": None,
                    "kind": "warehouse",
                    "name_zh": z,
                    "name_en": z,
                    "polygon": [],
                }
                for z, bld in zones
            ],
        )
        rows = []
        for i, (d, t) in enumerate(devices):
            attributes: dict[str, Any] = {}
            if t == "extinguisher":
                year = 2017 + i % 9  # a few reach their 10-year scrap age in the month
                attributes = {
                    "agent": "dry_powder",
                    "manufacture_date": f"{year}-05-{1 + i % 28:02d}",
                }
            rows.append(
                {
                    "id": d,
                    "site_id": "bench",
                    "type": t,
                    "zone_id": zones[i % len(zones)][0],
                    "label": f"{t} {d}",
                    "in_service_date": date(2020, 1, 1),
                    "attributes": attributes,
                }
            )
        c.execute(insert(Device), rows)
        c.execute(
            insert(DeviceState),
            [
                {
                    "device_id": d,
                    "presence": "online",
                    "presence_since_ms": NOW - HOUR,
                    "last_seen_ms": seen,
                    "last_values": {m: {"v": v, "ts": seen} for m, v in NORMAL_VALUES[t].items()},
                }
                for d, t, seen in (
                    (d, t, NOW - rng.randint(0, 1000 * catalogue.device_types[t].heartbeat_s))
                    for d, t in devices
                )
            ],
        )
        # presence: online a month before, outages, one broker loss for everyone
        changes = [
            {"device_id": d, "ts_ms": MAY - 30 * DAY, "presence": "online", "cause": "message"}
            for d, _t in devices
        ]
        loss = MAY + 17 * DAY + 3 * HOUR
        for d, _t in devices:
            changes.append(
                {"device_id": d, "ts_ms": loss, "presence": "unknown", "cause": "broker_lost"}
            )
            back = loss + rng.randint(30_000, 120_000)
            changes.append(
                {"device_id": d, "ts_ms": back, "presence": "online", "cause": "message"}
            )
        for d, _t in rng.sample(devices, n // 20):
            for _ in range(rng.randint(1, 3)):
                start = MAY + rng.randint(0, 30 * DAY)
                end = start + rng.randint(5 * MIN, 2 * DAY)
                changes.append(
                    {"device_id": d, "ts_ms": start, "presence": "offline", "cause": "silence"}
                )
                changes.append(
                    {"device_id": d, "ts_ms": end, "presence": "online", "cause": "message"}
                )
        c.execute(insert(PresenceChange), changes)
        counts["presence changes"] = len(changes)
        # events: condition pairs among ordinary ones
        events = []
        seq = 0
        pairs = {
            "extinguisher": [
                ("removed", "returned"),
                ("blocked", "unblocked"),
                ("tamper", "tamper_cleared"),
            ],
            "fire_lane": [("obstruction_start", "obstruction_end")],
            "fire_alarm_panel": [("disablement", "disablement_cleared")],
        }
        for d, t in rng.sample(devices, 750):
            start_name, clear_name = rng.choice(pairs.get(t, [("fault", "fault_cleared")]))
            start = MAY - 5 * DAY + rng.randint(0, 40 * DAY)
            for name, ts in ((start_name, start), (clear_name, start + rng.randint(MIN, 3 * DAY))):
                seq += 1
                events.append(_event(d, ts, seq, name))
        for d, _t in rng.choices(devices, k=40_000):
            seq += 1
            events.append(_event(d, MAY - 5 * DAY + rng.randint(0, 40 * DAY), seq, "test"))
        events.sort(key=lambda e: e["received_ms"])
        c.execute(insert(DeviceEvent), events)
        counts["device events"] = len(events)
        # alerts, shelved
        alert_rows: list[dict[str, Any]] = []
        for k, (d, _t) in enumerate(rng.sample(devices, 200)):
            raised = MAY + rng.randint(0, 30 * DAY)
            alert_rows.append(
                {
                    "id": k + 1,
                    "open_key": None,
                    "rule_id": "device-fault",
                    "kind": "event",
                    "subject": d,
                    "site_id": "bench",
                    "device_id": d,
                    "zone_id": None,
                    "severity": "minor",
                    "state": "resolved",
                    "title_zh": "故障",
                    "title_en": "Fault",
                    "count": 1,
                    "first_seen_ms": raised,
                    "last_seen_ms": raised,
                    "condition_active": False,
                    "resolved_ms": raised + 2 * DAY,
                    "detail": {},
                    "updated_ms": raised,
                    "escalation_level": 0,
                    "flapping": False,
                }
            )
        c.execute(insert(Alert), alert_rows)
        journal = []
        for a in alert_rows:
            raised = a["first_seen_ms"]
            journal += [
                _journal(a["id"], raised, "raised", None),
                _journal(a["id"], raised + HOUR, "shelved", {"until_ms": raised + DAY}),
                _journal(a["id"], raised + DAY, "unshelved", None),
                _journal(a["id"], raised + 2 * DAY, "resolved", None),
            ]
        c.execute(insert(AlertJournal), journal)
        counts["alerts"] = len(alert_rows)
        # a year of monthly inspections
        tasks: list[dict[str, Any]] = []
        for month in range(12):
            begins = to_dt(NOW) - timedelta(days=31 * (11 - month) + 15)
            due = begins + timedelta(days=30)
            for d, t in devices:
                late = rng.random()
                if due > to_dt(NOW):
                    done = None
                elif late < 0.01:
                    done = None  # never done: overdue from its due date
                elif late < 0.05:
                    done = due + timedelta(hours=rng.randint(1, 120))
                else:
                    done = due - timedelta(hours=rng.randint(1, 200))
                tasks.append(
                    {
                        "kind": "inspection",
                        "plan_id": "monthly",
                        "site_id": "bench",
                        "subject": d,
                        "device_id": d,
                        "device_type": t,
                        "zone_id": None,
                        "subject_label": d,
                        "title_zh": "月检",
                        "title_en": "Monthly check",
                        "frequency": "monthly",
                        "period_start": begins,
                        "due_at": due,
                        "created_at": begins,
                        "state": "done" if done else "open",
                        "checklist": [],
                        "detail": {},
                        "completed_at": done,
                        "result": "pass" if done else None,
                    }
                )
        for i in range(0, len(tasks), 20_000):
            c.execute(insert(InspectionTask), tasks[i : i + 20_000])
        counts["inspection tasks"] = len(tasks)
        orders: list[dict[str, Any]] = []
        for k, (d, _t) in enumerate(rng.sample(devices, 600)):
            opened = MAY + rng.randint(-10 * DAY, 30 * DAY)
            closed = opened + rng.randint(HOUR, 5 * DAY) if k % 4 else None
            orders.append(
                {
                    "source": "manual",
                    "source_ref": f"wo-{k}",
                    "kind": "fault",
                    "site_id": "bench",
                    "device_id": d,
                    "zone_id": None,
                    "title": "Fix",
                    "description": "",
                    "state": "closed" if closed else "open",
                    "opened_at": to_dt(opened),
                    "related": [],
                    "closed_at": to_dt(closed) if closed else None,
                }
            )
        c.execute(insert(WorkOrder), orders)
        counts["work orders"] = len(orders)
        c.execute(
            insert(OutOfService),
            [
                {
                    "open_key": d if k % 2 else None,
                    "device_id": d,
                    "since_ms": MAY + k * HOUR,
                    "taken_by": "ops",
                    "reason": "renovation",
                    "until_ms": None if k % 2 else MAY + 10 * DAY + k * HOUR,
                }
                for k, (d, _t) in enumerate(rng.sample(devices, 50))
            ],
        )
    sessions = session_factory(engine)
    started = time.perf_counter()
    with sessions() as s:
        while catch_up_events(s, NOW) > 0:
            pass
    counts["catch-up of all events (ms)"] = round((time.perf_counter() - started) * 1000)
    readings = []
    for d, t in rng.sample(devices, n // 100):
        metric = "pressure_mpa" if t in ("extinguisher", "hydrant_pressure") else "fault"
        bad: Any = 0.05 if metric == "pressure_mpa" else True
        good = NORMAL_VALUES[t][metric]
        start = MAY + rng.randint(0, 30 * DAY)
        readings += [
            ValueReading(d, start, {metric: bad}),
            ValueReading(d, start + rng.randint(MIN, 2 * DAY), {metric: good}),
        ]
    with sessions() as s:
        record_values(s, catalogue, readings, NOW)
    with engine.connect() as c:
        counts["condition spans"] = int(
            c.execute(text("SELECT count(*) FROM condition_spans")).scalar_one()
        )
    return counts


def _event(device_id: str, ts: int, seq: int, name: str) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "ts_ms": ts,
        "seq": seq,
        "event": name,
        "detail": None,
        "received_ms": ts + 150,
    }


def _journal(alert_id: int, at: int, action: str, detail: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "at_ms": at,
        "actor": "ops",
        "action": action,
        "from_state": None,
        "to_state": "shelved" if action == "shelved" else "active",
        "note": "planned works" if action == "shelved" else None,
        "detail": detail,
    }


def timed(label: str, repeat: int, work: Any) -> Any:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    print(f"  {label:<52} median {times[len(times) // 2]:8.1f} ms   best {times[0]:8.1f} ms")
    return result


def _client(engine: Engine, url: str, catalogue: Any) -> Any:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from api.context import AppContext
    from api.routers.intactness import router
    from core.ingest import IngestStatus
    from core.readings import SqlReadingsStore
    from core.settings import Settings

    status = IngestStatus(True, "bench", 0, 1, 0, 0, 0, {})
    ctx = AppContext(
        settings=Settings(database_url=url),
        engine=engine,
        sessions=session_factory(engine),
        readings=SqlReadingsStore(engine),
        catalogue=catalogue,
        ingest_status=lambda: status,
        registry=CollectorRegistry(),
    )
    app = FastAPI()  # the router as the app serves it, without signing in
    app.state.ctx = ctx
    app.include_router(router)
    return TestClient(app)


def _ok(response: Any) -> Any:
    if response.status_code != 200:
        raise SystemExit(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--database-url", help="an empty database (default: a new SQLite file)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='pg-intactness-')}/bench.db"
    upgrade(url)
    engine = make_engine(url)
    print(f"building a park of {args.devices} devices in {engine.dialect.name} ...")
    started = time.perf_counter()
    counts = build(engine, args.devices, args.seed)
    print(
        f"  built in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:
            c.execute(text("ANALYZE"))
    catalogue = load_catalogue()
    sessions = session_factory(engine)
    print("timings:")
    with sessions() as s:
        refresh(s, catalogue, NOW)

    def current(record_first: bool) -> Any:
        with sessions() as s:
            return current_figure(
                s, catalogue, NOW, scrap_date=register_scrap_date, record_first=record_first
            )

    figure = timed("current figure (condition log up to date)", args.repeat, lambda: current(True))
    timed("current figure (without looking at the log)", args.repeat, lambda: current(False))

    def month() -> Any:
        with sessions() as s:
            return period_figure(s, catalogue, MAY, JUNE, NOW, HOUR, scrap_date=register_scrap_date)

    history = timed("last month's time-weighted figure, hourly series", args.repeat, month)
    client = _client(engine, url, catalogue)
    timed(
        "GET /api/v1/intactness?limit=100",
        args.repeat,
        lambda: _ok(client.get("/api/v1/intactness", params={"limit": 100})),
    )
    timed(
        "GET /api/v1/intactness/history (the month, 1h)",
        args.repeat,
        lambda: _ok(
            client.get(
                "/api/v1/intactness/history",
                params={"start": str(MAY), "end": str(JUNE), "step": "1h"},
            )
        ),
    )
    client.close()
    print("figures:")
    print(
        f"  now: {figure.overall.intact}/{figure.overall.in_scope} intact "
        f"= {figure.overall.percent} %, {len(figure.out_of_service)} out of service"
    )
    print(
        f"  last month: {history.overall.percent} % time-weighted, "
        f"online rate {history.online.percent} %, {history.restored} outages restored (mean "
        f"{(history.mean_time_to_restore_ms or 0) / MIN:.1f} min), {history.not_restored} not"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
