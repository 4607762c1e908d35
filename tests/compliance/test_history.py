"""Hand-checked periods: the expected figures are worked out in the test from the scenario,
independently of the code (device-minutes as plain arithmetic), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import date
from fractions import Fraction

import pytest
from sqlalchemy import Engine, update

from compliance.conditions import catch_up_events
from compliance.history import period_figure
from compliance.intactness import current_figure, figure_at
from compliance.out_of_service import put_back, take_out
from compliance.timeline import gather
from core.catalogue import load_catalogue
from core.db import SessionFactory
from core.models_maintenance import InspectionTask
from tests.compliance import builders as b
from tests.compliance.builders import DAY, HOUR, JUNE, MAY, MIN, to_dt

CAT = load_catalogue()
MONTH = JUNE - MAY  # 31 days


def percent(intact: Fraction) -> float:
    return round(float(100 * intact), 4)


@pytest.fixture
def park400(engine: Engine) -> dict[str, str]:
    """400 smoke detectors online all month, but: sd001 offline 90 minutes on the 11th, sd002 a
    whole day from the 21st, sd003 from noon on the 31st to the end of the month."""
    devices = {f"sd{i:03d}": "smoke_detector" for i in range(400)}
    b.make_park(engine, devices)
    b.outage(engine, "sd001", MAY + 10 * DAY + 8 * HOUR, MAY + 10 * DAY + 8 * HOUR + 90 * MIN)
    b.outage(engine, "sd002", MAY + 20 * DAY, MAY + 21 * DAY)
    b.outage(engine, "sd003", MAY + 30 * DAY + 12 * HOUR, None)
    return devices


def test_three_of_four_hundred_down_for_given_minutes(
    sessions: SessionFactory, park400: dict[str, str]
) -> None:
    month_minutes = 31 * 24 * 60  # 44,640
    down_minutes = 90 + 24 * 60 + 12 * 60  # 2,250
    expected = Fraction(400 * month_minutes - down_minutes, 400 * month_minutes)
    with sessions() as s:
        figure = period_figure(s, CAT, MAY, JUNE, JUNE, DAY)
    assert figure.overall.scope_ms == 400 * month_minutes * MIN
    assert figure.overall.intact_ms == (400 * month_minutes - down_minutes) * MIN
    assert figure.overall.percent == percent(expected) == 99.9874
    assert figure.by_category["fire_detection"].percent == percent(expected)
    assert figure.online.percent == percent(expected)  # every reason here is being offline
    assert figure.devices_counted == 400
    assert (figure.restored, figure.not_restored) == (2, 1)
    assert figure.mean_time_to_restore_ms == (90 + 24 * 60) / 2 * MIN  # 765 minutes
    assert [(o.device.id, o.in_period_ms // MIN, o.end_ms is None) for o in figure.longest] == [
        ("sd002", 1440, False),
        ("sd003", 720, True),
        ("sd001", 90, False),
    ]
    # the daily series: sd002 is down at midnight of the 21st only
    assert len(figure.series) == 31
    assert [s.intact for s in figure.series] == [400] * 20 + [399] + [400] * 10
    assert all(s.in_scope == 400 for s in figure.series)


def test_reasons_other_than_offline_leave_the_online_rate_alone(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"ext1": "extinguisher", "ext2": "extinguisher"})
    b.event(engine, "ext1", MAY + DAY, "removed")
    b.event(engine, "ext1", MAY + DAY + 6 * HOUR, "returned")
    with sessions() as s:
        catch_up_events(s, JUNE)
        figure = period_figure(s, CAT, MAY, JUNE, JUNE, HOUR)
    assert figure.overall.intact_ms == 2 * MONTH - 6 * HOUR
    assert figure.online.percent == 100.0
    assert figure.by_category["extinguisher"].percent == percent(
        Fraction(2 * MONTH - 6 * HOUR, 2 * MONTH)
    )


def test_overlapping_reasons_count_once(engine: Engine, sessions: SessionFactory) -> None:
    """Offline 10:00-14:00 and faulty 12:00-16:00 on the same day: not intact 10:00-16:00."""
    b.make_park(engine, {"h1": "heat_detector"})
    day = MAY + 4 * DAY
    b.outage(engine, "h1", day + 10 * HOUR, day + 14 * HOUR)
    b.event(engine, "h1", day + 12 * HOUR, "fault")
    b.event(engine, "h1", day + 16 * HOUR, "fault_cleared")
    with sessions() as s:
        catch_up_events(s, JUNE)
        figure = period_figure(s, CAT, MAY, JUNE, JUNE, HOUR)
    assert figure.overall.intact_ms == MONTH - 6 * HOUR
    assert figure.online.intact_ms == MONTH - 4 * HOUR
    [outage] = figure.longest
    assert (outage.start_ms, outage.end_ms, outage.reasons) == (
        day + 10 * HOUR,
        day + 16 * HOUR,
        ("fault", "offline"),
    )
    assert figure.mean_time_to_restore_ms == 6 * HOUR


def test_devices_entering_service_and_out_of_service_count_only_in_service(
    engine: Engine, sessions: SessionFactory
) -> None:
    """d1 counts all month; d2 enters service on the 11th (register date); d3 is taken out of
    service on the 6th at noon and put back on the 16th at noon (and is offline meanwhile,
    which does not count against the figure)."""
    b.make_park(
        engine,
        {"d1": "smoke_detector", "d2": "smoke_detector", "d3": "smoke_detector"},
        in_service={"d2": date(2026, 5, 11)},
    )
    out_at, back_at = MAY + 5 * DAY + 12 * HOUR, MAY + 15 * DAY + 12 * HOUR
    with sessions.begin() as s:
        take_out(s, "d3", by="alice", reason="ceiling works", now_ms=out_at)
    b.outage(engine, "d3", out_at + HOUR, back_at - HOUR)
    with sessions.begin() as s:
        put_back(s, "d3", by="bob", note="works done", now_ms=back_at)
    with sessions() as s:
        figure = period_figure(s, CAT, MAY, JUNE, JUNE, DAY)
        during = current_figure(s, CAT, MAY + 8 * DAY, record_first=False)
    scope = MONTH + (MONTH - 10 * DAY) + (MONTH - 10 * DAY)
    assert figure.overall.scope_ms == figure.overall.intact_ms == scope
    assert figure.overall.percent == 100.0
    # samples at midnight: d3 out from the 7th's to the 16th's, d2 in from the 11th's
    assert [s.in_scope for s in figure.series[:18]] == [2] * 6 + [1] * 4 + [2] * 6 + [3] * 2
    # during the works: d3 is listed apart with who and why, d2 is not yet in service
    assert (during.overall.in_scope, during.overall.intact) == (1, 1)
    [entry] = during.out_of_service
    assert (entry.device.id, entry.record.taken_by, entry.record.reason) == (
        "d3",
        "alice",
        "ceiling works",
    )
    assert [d.id for d in during.not_yet_in_service] == ["d2"]


def test_a_past_period_recomputes_identically_whatever_is_recorded_later(
    engine: Engine, sessions: SessionFactory
) -> None:
    devices = {f"x{i}": "extinguisher" for i in range(20)}
    b.make_park(engine, devices)
    b.outage(engine, "x1", MAY + 3 * DAY, MAY + 4 * DAY)
    b.event(engine, "x2", MAY + 7 * DAY, "blocked")
    b.event(engine, "x2", MAY + 7 * DAY + 5 * HOUR, "unblocked")
    with sessions.begin() as s:
        b.task(s, "x3", due=MAY + 9 * DAY)  # not done in May
        b.task(s, "x4", due=MAY + 9 * DAY, completed=MAY + 12 * DAY)
        b.shelved_alert(s, "x5", raised=MAY + DAY, shelved=MAY + DAY, until=MAY + 2 * DAY)
    as_of = JUNE + HOUR
    with sessions() as s:
        catch_up_events(s, as_of)
        first = period_figure(s, CAT, MAY, JUNE, as_of, HOUR)

    # recorded after as_of: a late-delivered event about May, the late completion of x3's
    # task, a catch-up task due in May, a work order, new outages and an out-of-service record
    later = JUNE + 2 * DAY
    b.event(engine, "x6", MAY + 20 * DAY, "removed", received=later)
    b.event(engine, "x6", MAY + 21 * DAY, "returned", received=later)
    with sessions.begin() as s:
        b.task(s, "x7", due=MAY + 15 * DAY, created=later)
        b.work_order(s, "x8", opened=later)
        take_out(s, "x9", by="ops", reason="moved", now_ms=later)
    with sessions.begin() as s:
        s.execute(
            update(InspectionTask)
            .where(InspectionTask.device_id == "x3")
            .values(state="done", completed_at=to_dt(later), result="pass")
        )
    b.outage(engine, "x1", JUNE + DAY, None)
    with sessions() as s:
        catch_up_events(s, later)
        again = period_figure(s, CAT, MAY, JUNE, as_of, HOUR)
        newer = period_figure(s, CAT, MAY, JUNE, later, HOUR)
    assert again == first
    expected_down = DAY + 5 * HOUR + (JUNE - (MAY + 9 * DAY)) + 3 * DAY + DAY
    assert first.overall.intact_ms == 20 * MONTH - expected_down
    # as of later, two more things about May are known: x6's removal (a day, delivered late)
    # and that x7's inspection due on the 16th was not done (its task was created late)
    assert newer.overall.intact_ms == first.overall.intact_ms - DAY - (JUNE - (MAY + 15 * DAY))


def test_the_series_samples_the_figure_at_each_step(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"a": "fire_lane", "b": "fire_lane"})
    b.event(engine, "a", MAY + 90 * MIN, "obstruction_start")
    b.event(engine, "a", MAY + 150 * MIN, "obstruction_end")
    with sessions() as s:
        catch_up_events(s, JUNE)
        figure = period_figure(s, CAT, MAY, MAY + 4 * HOUR, JUNE, 30 * MIN)
    assert [(s.at_ms - MAY) // MIN for s in figure.series] == [0, 30, 60, 90, 120, 150, 180, 210]
    assert [s.intact for s in figure.series] == [2, 2, 2, 1, 1, 2, 2, 2]
    assert figure.series[3].percent == 50.0


def test_a_period_must_make_sense(sessions: SessionFactory) -> None:
    with sessions() as s:
        with pytest.raises(ValueError, match="start before it ends"):
            period_figure(s, CAT, JUNE, MAY, JUNE, HOUR)
        with pytest.raises(ValueError, match="by as_of"):
            period_figure(s, CAT, MAY, JUNE, MAY + DAY, HOUR)
        with pytest.raises(ValueError, match="step"):
            period_figure(s, CAT, MAY, JUNE, JUNE, MIN // 60)


def test_the_figure_now_is_the_record_read_at_now(engine: Engine, sessions: SessionFactory) -> None:
    """The figure now (presence from device state) and the record read at the same instant
    (presence from its history) agree, for random presence histories of every kind."""
    rng = random.Random(7)
    devices = {f"r{i:02d}": rng.choice(["smoke_detector", "extinguisher"]) for i in range(40)}
    b.make_park(engine, devices, online_from=None)
    now = MAY + 10 * DAY
    for device in devices:
        ts = MAY
        changes = []
        for _ in range(rng.randint(0, 5)):
            ts += rng.randint(MIN, 2 * DAY)
            changes.append((ts, rng.choice(["online", "offline", "unknown"]), "message"))
        # some end just before now, inside one heartbeat window of the smoke detectors
        if rng.random() < 0.3:
            changes += [(now - 2 * HOUR, "online", "message"), (now - 2 * MIN, "unknown", "x")]
        changes = [c for i, c in enumerate(changes) if i == 0 or c[1] != changes[i - 1][1]]
        if changes:
            b.presence(engine, device, sorted(changes))
    with sessions() as s:
        live = current_figure(s, CAT, now, record_first=False)
        read = figure_at(gather(s, CAT, now, now + 1, now), now)
    assert [(x.device.id, x.reasons) for x in live.non_intact] == [
        (x.device.id, x.reasons) for x in read.non_intact
    ]
    assert 0 < live.overall.intact < live.overall.in_scope == 40
