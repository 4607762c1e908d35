"""The condition log: spans from events (in arrival order, from the mark) and from values
(committed telemetry, and the safety net of last values); stale messages change nothing; the
writers never duplicate a span, even at the same moment."""

from __future__ import annotations

import threading

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from compliance.conditions import (
    ValueReading,
    catch_up_events,
    reconcile_values,
    record_values,
)
from core.catalogue import load_catalogue
from core.db import SessionFactory
from core.models import DeviceEvent
from core.models_compliance import ComplianceMark, ConditionSpan
from tests.compliance import builders as b
from tests.compliance.builders import DAY, HOUR, JUNE, MAY, MIN

CAT = load_catalogue()


def spans(sessions: SessionFactory) -> list[tuple[str, str, str, int, int | None]]:
    with sessions() as s:
        return [
            (row.device_id, row.reason, row.key, row.start_ms, row.end_ms)
            for row in s.scalars(
                select(ConditionSpan).order_by(ConditionSpan.device_id, ConditionSpan.start_ms)
            )
        ]


def test_events_become_spans_once(engine: Engine, sessions: SessionFactory) -> None:
    b.make_park(engine, {"e1": "extinguisher", "p1": "fire_alarm_panel"})
    for ts, name in [
        (MAY + HOUR, "removed"),
        (MAY + 2 * HOUR, "removed"),  # a repeat: the span keeps its first start
        (MAY + 3 * HOUR, "test"),  # not a condition
        (MAY + 4 * HOUR, "returned"),
        (MAY + 5 * HOUR, "returned"),  # nothing open: nothing to clear
        (MAY + 6 * HOUR, "discharged"),  # no clearing event: stays open
    ]:
        b.event(engine, "e1", ts, name)
    b.event(engine, "p1", MAY + HOUR, "disablement")
    with sessions() as s:
        assert catch_up_events(s, JUNE) == 6
        assert catch_up_events(s, JUNE) == 0
    assert spans(sessions) == [
        ("e1", "removed", "removed", MAY + HOUR, MAY + 4 * HOUR),
        ("e1", "discharged", "discharged", MAY + 6 * HOUR, None),
        ("p1", "disabled", "disablement", MAY + HOUR, None),
    ]
    with sessions() as s:
        mark = s.scalar(select(ComplianceMark.value).where(ComplianceMark.name == "conditions"))
        assert mark == s.scalar(select(func.max(DeviceEvent.id)))  # non-conditions read too
        span = s.scalars(select(ConditionSpan).where(ConditionSpan.key == "removed")).one()
        assert (span.opened_ms, span.closed_ms, span.open_key) == (MAY + HOUR, MAY + 4 * HOUR, None)
        assert span.end_detail is not None and span.end_detail["event"] == "returned"


def test_a_stale_event_changes_nothing(engine: Engine, sessions: SessionFactory) -> None:
    b.make_park(engine, {"h1": "heat_detector"})
    b.event(engine, "h1", MAY + 10 * HOUR, "fault")
    b.event(engine, "h1", MAY + 9 * HOUR, "fault_cleared", received=MAY + 11 * HOUR)
    b.event(engine, "h1", MAY + 12 * HOUR, "fault_cleared")
    b.event(engine, "h1", MAY + 11 * HOUR, "fault", received=MAY + 13 * HOUR)  # older than the end
    with sessions() as s:
        catch_up_events(s, JUNE)
    assert spans(sessions) == [("h1", "fault", "fault", MAY + 10 * HOUR, MAY + 12 * HOUR)]


def test_catching_up_in_small_batches_gives_the_same_spans(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {f"x{i}": "extinguisher" for i in range(5)})
    for i in range(5):
        b.event(engine, f"x{i}", MAY + i * HOUR, "blocked")
        b.event(engine, f"x{i}", MAY + i * HOUR + MIN, "unblocked")
    with sessions() as s:
        reads = []
        while (n := catch_up_events(s, JUNE, limit=3)) > 0:
            reads.append(n)
    assert reads == [3, 3, 3, 1]
    assert spans(sessions) == [
        (f"x{i}", "blocked", "blocked", MAY + i * HOUR, MAY + i * HOUR + MIN) for i in range(5)
    ]


def test_writers_at_the_same_moment_never_duplicate_a_span(
    engine: Engine, sessions: SessionFactory
) -> None:
    devices = {f"t{i:02d}": "extinguisher" for i in range(30)}
    b.make_park(engine, devices)
    for i, device in enumerate(devices):
        b.event(engine, device, MAY + i * MIN, "tamper")
        if i % 2:
            b.event(engine, device, MAY + i * MIN + HOUR, "tamper_cleared")
    errors: list[SQLAlchemyError] = []
    start = threading.Barrier(4)

    def work() -> None:
        try:
            start.wait()
            with sessions() as s:
                catch_up_events(s, JUNE, limit=7)
                while catch_up_events(s, JUNE, limit=7) > 0:
                    pass
        except SQLAlchemyError as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert spans(sessions) == [
        (d, "tamper", "tamper", MAY + i * MIN, MAY + i * MIN + HOUR if i % 2 else None)
        for i, d in enumerate(devices)
    ]


def test_values_open_and_close_spans_in_reading_order(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"e1": "extinguisher", "pm": "power_monitor"})
    readings = [
        ValueReading("e1", MAY + 3 * HOUR, {"pressure_mpa": 1.2}),  # sorted by time
        ValueReading("e1", MAY + HOUR, {"pressure_mpa": 0.9, "battery_pct": 90.0}),
        ValueReading("e1", MAY + 2 * HOUR, {"pressure_mpa": 0.85, "present": False}),
        ValueReading("pm", MAY + HOUR, {"mains_ok": 0.0}),  # a boolean kept as 0.0
        ValueReading("ghost", MAY, {"fault": True}),  # not in the register
        ValueReading("e1", MAY + HOUR, {"unknown_metric": 5.0}),
    ]
    with sessions() as s:
        assert record_values(s, CAT, readings, JUNE) == 3
    assert spans(sessions) == [
        ("e1", "out_of_band", "pressure_mpa", MAY + HOUR, MAY + 3 * HOUR),
        ("e1", "removed", "present", MAY + 2 * HOUR, None),
        ("pm", "out_of_band", "mains_ok", MAY + HOUR, None),
    ]
    late = [
        ValueReading("e1", MAY + 2 * HOUR, {"pressure_mpa": 0.5}),  # older than the span's end
        ValueReading("e1", MAY + HOUR, {"present": True}),  # older than the open span's start
    ]
    with sessions() as s:
        assert record_values(s, CAT, late, JUNE) == 0


def test_last_values_fill_in_what_the_recorder_missed(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"s1": "smoke_detector", "s2": "smoke_detector"})
    b.last_values(engine, "s1", {"battery_pct": (11.0, MAY + HOUR), "fault": (False, MAY + HOUR)})
    with sessions() as s:
        assert reconcile_values(s, CAT, MAY + HOUR + MIN) == 1  # the first look sees everyone
        assert reconcile_values(s, CAT, MAY + HOUR + 2 * MIN) == 0
    assert spans(sessions) == [("s1", "out_of_band", "battery_pct", MAY + HOUR, None)]
    with sessions() as s:
        detail = s.scalars(select(ConditionSpan.start_detail)).one()
    assert detail == {"value": 11.0, "normal": [20.0, 100.0], "unit": "%", "from": "last_values"}
    # s1 gets a new battery: seen at the next look, as it was heard from since
    b.last_values(engine, "s1", {"battery_pct": (97.0, MAY + DAY)})
    with sessions() as s:
        assert reconcile_values(s, CAT, MAY + DAY + MIN) == 1
    assert spans(sessions) == [("s1", "out_of_band", "battery_pct", MAY + HOUR, MAY + DAY)]


def test_a_look_only_reads_devices_heard_from_since_the_last(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"s1": "smoke_detector"})
    with sessions() as s:
        reconcile_values(s, CAT, MAY + DAY)  # first look: the mark is set
    # a value that disagrees, but from a device last heard from long before the mark (as if
    # written behind the collector's back): an ordinary look leaves it, a full one finds it
    b.last_values(engine, "s1", {"fault": (True, MAY)})
    with sessions() as s:
        assert reconcile_values(s, CAT, MAY + DAY + HOUR) == 0
        assert reconcile_values(s, CAT, MAY + DAY + HOUR, full=True) == 1
    assert spans(sessions) == [("s1", "fault", "fault", MAY, None)]
