"""Work orders from failed checks, fault alerts and by hand; closing records the fix; standing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.models_maintenance import InspectionTask, WorkOrder
from maintenance.errors import Conflict, InvalidInput, NotFound
from maintenance.inspections import (
    Completion,
    complete_task,
    inspection_standing,
    inspection_standings,
)
from maintenance.schedule import generate_tasks
from maintenance.work_orders import (
    WorkOrderFilter,
    close_work_order,
    list_work_orders,
    open_from_alert,
    open_from_alert_record,
    open_work_order,
)
from tests.maintenance.builders import at, engine_for, plans, run_in_session, small_park

NOW = at(2026, 11, 27, 10)
ALL_PASS = {"in_place": "pass", "gauge_green": "pass", "seal_intact": "pass"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = engine_for(db_url)
    small_park(engine)
    yield engine
    engine.dispose()


def orders(engine: Engine) -> list[WorkOrder]:
    with Session(engine) as session:
        return list(session.scalars(select(WorkOrder).order_by(WorkOrder.id)))


def test_manual_work_order_open_and_close(engine: Engine) -> None:
    order = run_in_session(
        engine,
        open_work_order,
        title="灭火器箱门损坏 Cabinet door broken",
        device_id="ext-1",
        description="门铰链断裂",
        opened_by="zhao",
        assignee="wang",
        now=NOW,
    )
    assert (order.site_id, order.zone_id, order.source, order.state) == (
        "park",
        "office",
        "manual",
        "open",
    )
    with pytest.raises(InvalidInput, match="fix is required"):
        run_in_session(engine, close_work_order, order.id, fix="  ", now=NOW)
    closed = run_in_session(
        engine, close_work_order, order.id, fix="更换铰链 hinge replaced", closed_by="wang", now=NOW
    )
    assert (closed.state, closed.fix, closed.closed_by) == (
        "closed",
        "更换铰链 hinge replaced",
        "wang",
    )
    with pytest.raises(Conflict, match=r"already closed .* by wang"):
        run_in_session(engine, close_work_order, order.id, fix="again", now=NOW)
    assert orders(engine)[0].fix == "更换铰链 hinge replaced"  # nothing overwritten


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": ""}, "title is required"),
        ({"title": "a\nb"}, "title must not contain line breaks"),
        ({"title": "x" * 201}, "at most 200"),
        ({"title": "ok", "device_id": "nope"}, "no device with id 'nope'"),
        ({"title": "ok", "assignee": "'; DROP"}, "assignee .* must be"),
        ({"title": "ok", "description": "\x00"}, "description must not contain control"),
    ],
)
def test_bad_manual_work_orders(engine: Engine, fields: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        run_in_session(engine, open_work_order, now=NOW, **fields)
    assert orders(engine) == []


def test_close_unknown_work_order(engine: Engine) -> None:
    with pytest.raises(NotFound, match="no work order with id 4242"):
        run_in_session(engine, close_work_order, 4242, fix="x", now=NOW)


def test_open_from_alert_is_idempotent_and_dedupes_per_device_and_kind(engine: Engine) -> None:
    first = run_in_session(
        engine,
        open_from_alert,
        alert_id="a-1",
        kind="pressure",
        title="压力低 low pressure",
        device_id="ext-1",
        detail="0.6 MPa",
        now=NOW,
    )
    again = run_in_session(
        engine,
        open_from_alert,
        alert_id="a-1",
        kind="pressure",
        title="x",
        device_id="ext-1",
        now=NOW,
    )
    assert again.id == first.id
    second_alert = run_in_session(
        engine,
        open_from_alert,
        alert_id="a-2",
        kind="pressure",
        title="x",
        device_id="ext-1",
        now=NOW,
    )
    assert second_alert.id == first.id
    assert [r["alert_id"] for r in orders(engine)[0].related] == ["a-2"]
    offline = run_in_session(
        engine,
        open_from_alert,
        alert_id="a-3",
        kind="offline",
        title="离线 offline",
        device_id="ext-1",
        now=NOW,
    )
    assert offline.id != first.id
    fire = run_in_session(
        engine,
        open_from_alert,
        alert_id="a-4",
        kind="fire_alarm",
        title="火警",
        device_id="ext-1",
        now=NOW,
    )
    assert fire is None  # a fire alarm is an emergency plan's matter, not a work order
    assert [(o.source, o.source_ref, o.kind) for o in orders(engine)] == [
        ("alert", "a-1", "pressure"),
        ("alert", "a-3", "offline"),
    ]


def test_open_from_alert_for_unknown_device_still_opens(engine: Engine) -> None:
    order = run_in_session(
        engine,
        open_from_alert,
        alert_id="a-9",
        kind="fault",
        title="gateway fault",
        device_id="not-registered",
        now=NOW,
    )
    assert order is not None and order.device_id is None


def test_list_work_orders_filters(engine: Engine) -> None:
    run_in_session(engine, open_work_order, title="a", device_id="ext-1", now=NOW)
    b = run_in_session(engine, open_work_order, title="b", device_id="ext-2", now=NOW)
    run_in_session(engine, close_work_order, b.id, fix="done", now=NOW)
    with Session(engine) as session:
        total, rows = list_work_orders(session, WorkOrderFilter(state="open"))
        assert total == 1 and rows[0].title == "a"
        total, rows = list_work_orders(session, WorkOrderFilter(device_id="ext-2"))
        assert total == 1 and rows[0].state == "closed"


def test_standing_follows_inspections_work_orders_and_due_dates(engine: Engine) -> None:
    with Session(engine) as session:
        assert inspection_standing(session, "ext-1", NOW).reasons == ("no_tasks",)
    run_in_session(engine, generate_tasks, plans(), at(2026, 11, 27, 8))
    with Session(engine) as session:
        fresh = inspection_standing(session, "ext-1", NOW)
        assert fresh.reasons == ("never_inspected",) and not fresh.proven
        assert fresh.next_due_at == at(2026, 12, 1)
        tid = session.scalar(select(InspectionTask.id).where(InspectionTask.subject == "ext-1"))
        hid = session.scalar(select(InspectionTask.id).where(InspectionTask.subject == "ext-h"))
    assert tid is not None and hid is not None
    run_in_session(engine, complete_task, tid, Completion(answers=ALL_PASS), now=NOW)
    failed = run_in_session(
        engine, complete_task, hid, Completion(answers={**ALL_PASS, "seal_intact": "fail"}), now=NOW
    )
    with Session(engine) as session:
        ok = inspection_standing(session, "ext-1", NOW)
        assert ok.proven and ok.last_passed is True and ok.last_completed_at == NOW
        bad = inspection_standing(session, "ext-h", NOW)
        assert bad.reasons == ("last_failed", "open_work_order") and bad.last_passed is False
        never = inspection_standing(session, "ext-2", NOW)
        assert never.reasons == ("never_inspected",)
    run_in_session(engine, close_work_order, failed.work_order.id, fix="新铅封 new seal", now=NOW)
    with Session(engine) as session:
        fixed = inspection_standing(session, "ext-h", NOW)
        assert fixed.proven and fixed.last_passed is True
        # the next period's task comes; once its due time passes undone, not proven
    run_in_session(engine, generate_tasks, plans(), at(2026, 12, 1, 0, 0))
    with Session(engine) as session:
        standings = inspection_standings(session, at(2026, 12, 1, 0, 0))
        assert standings["ext-1"].proven  # December's task is not yet due
        later = inspection_standings(session, at(2027, 1, 1, 0, 0), ["ext-1", "ext-2", "ghost"])
        assert later["ext-1"].reasons == ("overdue",)
        assert later["ext-2"].reasons == ("never_inspected", "overdue")
        assert later["ghost"].reasons == ("no_tasks",)


def test_alert_records_of_fault_rules_open_work_orders(engine: Engine) -> None:
    """The shape rules.alerts.public() publishes; only fault-type rules are repairs."""
    pressure = {
        "id": 17,
        "rule": "extinguisher-pressure-low",
        "device": "ext-h",
        "title": {"zh": "灭火器压力低", "en": "Extinguisher pressure low"},
    }
    order = run_in_session(engine, open_from_alert_record, pressure, now=NOW)
    assert order is not None
    assert (order.source_ref, order.kind, order.device_id) == ("17", "pressure", "ext-h")
    assert order.title == "灭火器压力低 / Extinguisher pressure low"
    assert run_in_session(engine, open_from_alert_record, pressure, now=NOW).id == order.id
    fire = {**pressure, "id": 18, "rule": "fire-confirmed"}
    assert run_in_session(engine, open_from_alert_record, fire, now=NOW) is None
    custom = run_in_session(
        engine,
        open_from_alert_record,
        {**fire, "id": 19},
        now=NOW,
        fault_rules={"fire-confirmed": "fault"},
    )
    assert custom is not None and custom.kind == "fault"
