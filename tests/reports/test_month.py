"""A whole past month (tests/reports/builders.py) reported on: every figure checked against the
test's own arithmetic over what the builder wrote, on SQLite and PostgreSQL; the PDF read back
as text and as an image, the CSV zip opened; an empty month and a month with a gap."""

from __future__ import annotations

import csv
import io
import math
import shutil
import subprocess
import zipfile
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest
from sqlalchemy import Engine

from compliance.report import (
    ComplianceReport,
    PeriodError,
    PlanInfo,
    ReportConfig,
    build_report,
    last_month,
    month_period,
    nearest_rank,
)
from compliance.report_layout import layout
from compliance.scheduled import render
from core.catalogue import load_catalogue
from core.db import SessionFactory
from tests.reports import builders as rb
from tests.reports.builders import DAY, END, HOUR, MIN, START, local

CAT = load_catalogue()
MAY = month_period("2026-05", "Asia/Shanghai")
AS_OF = END + HOUR
PLANS = (
    PlanInfo("fire", "fire", "on_site", "火灾事故现场处置方案", "Fire on-site plan"),
    PlanInfo("chemical-leak", "chemical_leak", "on_site", "危化品泄漏", "Chemical leak"),
    PlanInfo("earthquake", "earthquake", "special", "地震专项预案", "Earthquake"),
    PlanInfo("public-health", "public_health", "special", "卫生防疫", "Public health"),
    PlanInfo("typhoon", "typhoon", "special", "台风暴雨", "Typhoon"),
    PlanInfo("riot", "riot", "on_site", "暴乱", "Riot"),
)


def report_of(sessions: SessionFactory, **config: object) -> ComplianceReport:
    with sessions() as s:
        return build_report(
            s,
            CAT,
            MAY,
            as_of_ms=AS_OF,
            config=ReportConfig(plans=PLANS, **config),  # type: ignore[arg-type]
        )


@pytest.fixture
def month(engine: Engine, sessions: SessionFactory) -> rb.Month:
    return rb.busy_month(engine, sessions)


def test_the_period_is_the_local_calendar_month() -> None:
    assert (MAY.start_ms, MAY.end_ms) == (START, END)
    assert MAY.start_ms == 1777564800000  # 2026-04-30T16:00:00Z
    assert last_month(local(3, 9, month=6), "Asia/Shanghai") == MAY
    assert last_month(local(1, 0, 30, month=1, year=2027), "Asia/Shanghai").label == "2026-12"
    for bad in ("2026-13", "2026-5", "26-05", "2026-05-01", "", "1999-12", "２０２６-05", "x" * 99):
        with pytest.raises(PeriodError):
            month_period(bad)


def test_intactness_figures_are_the_written_outages(
    sessions: SessionFactory, month: rb.Month
) -> None:
    r = report_of(sessions)
    f = r.facilities
    minutes = 31 * 24 * 60
    devices = 28
    # not-intact device-minutes, reason by reason, from what the builder wrote
    expected = {
        "offline": 90
        + 24 * 60  # sd01, sd02
        # the restart on the 25th: 20 minutes unknown, counted as reporting for one heartbeat
        # window of the type (smoke 5 min, fire lane 5, hazmat store 2, asset tag 15,
        # extinguisher 60: never offline)
        + 20 * (20 - 5)
        + 2 * (20 - 5)
        + (20 - 2)
        + (20 - 15),
        "blocked": 25 + 70,  # fl1 on the 5th and 12th
        "shelved": 120,  # sd03 on the 6th
        "inspection_overdue": (12 * 24 * 60)  # ext1, due the 20th, never done
        + 30 * 60,  # ext2, due the 14th, done the 15th at 06:00
        "inspection_failed": 24 * 60,  # ext3's work order, open a day
        "work_order_open": 24 * 60,  # sd04's work order, open a day
    }
    assert {k: v // MIN for k, v in f.minutes_by_reason.items()} == expected
    down = sum(expected.values())  # no device has two reasons at once here
    assert f.time_weighted.scope_ms == devices * minutes * MIN
    assert f.time_weighted.intact_ms == (devices * minutes - down) * MIN
    share = Fraction(devices * minutes - down, devices * minutes)
    assert f.time_weighted.percent == round(float(100 * share), 4)
    # per building: B1 holds 24 devices, B2 the hazmat store and the tag, the lanes are outdoors
    b1_down = down - (20 - 2) - (20 - 15) - 95 - 2 * 15
    assert f.by_building["B1"].intact_ms == (24 * minutes - b1_down) * MIN
    assert f.by_building["B2"].intact_ms == (2 * minutes - 18 - 5) * MIN
    assert f.by_building[None].intact_ms == (2 * minutes - 95 - 30) * MIN
    # at the end of the month only ext1 (missed inspection) is not intact: 27 of 28
    assert (f.end_overall.in_scope, f.end_overall.intact) == (28, 27)
    assert f.end_non_intact == ["ext1"]
    assert f.end_by_category["extinguisher"].intact == 3
    # the intervals carry their evidence
    shelved = [i for i in f.intervals if i.reason == "shelved"]
    assert [(i.device_id, i.start_ms, i.end_ms, i.evidence["alert_id"]) for i in shelved] == [
        ("sd03", local(6, 10), local(6, 12), month.alerts["shelved"])
    ]
    missed = next(
        i for i in f.intervals if i.reason == "inspection_overdue" and i.device_id == "ext1"
    )
    assert (missed.start_ms, missed.end_ms, missed.evidence["task_id"]) == (
        local(20),
        None,
        month.tasks["missed"],
    )
    assert sum(i.in_period_ms for i in f.intervals) == down * MIN
    # the chart: one sample every 6 hours, 124 of them; 100 % before the first outage
    assert len(f.series) == 31 * 4
    assert f.series[0].percent == 100
    assert f.series[-1].intact == 27
    # inspections and work orders
    insp = f.inspections
    t = month.tasks
    assert sorted(insp.due) == sorted(t.values())
    assert (insp.on_time, insp.late, insp.missed) == (
        sorted([t["ok"], t["failed"]]),
        [t["late"]],
        [t["missed"]],
    )
    assert insp.failed == [t["failed"]]
    wo = f.work_orders
    assert sorted(wo.opened) == sorted(month.orders.values()) == sorted(wo.closed)
    assert wo.open_at_end == []
    assert wo.mean_close_ms == DAY
    assert f.ok is False


def test_lanes_hazmat_plans_training(sessions: SessionFactory, month: rb.Month) -> None:
    r = report_of(sessions)
    a = month.alerts
    lanes = {lane.device_id: lane for lane in r.lanes.lanes}
    assert lanes["fl1"].alert_ids == [a["lane1"], a["lane2"]]
    assert lanes["fl1"].obstructions == [
        (local(5, 8), local(5, 8, 25)),
        (local(12, 14), local(12, 15, 10)),
    ]
    assert lanes["fl1"].obstructed_ms == 95 * MIN
    assert (lanes["fl1"].longest_ms, lanes["fl1"].longest_start_ms) == (70 * MIN, local(12, 14))
    assert lanes["fl1"].no_data_ms == 15 * MIN  # the restart: an obstruction then was unseen
    assert (lanes["fl2"].alert_ids, lanes["fl2"].obstructed_ms) == ([], 0)
    assert r.lanes.ok is False
    h = r.hazmat
    assert [x.id for x in h.gas[1]] == [a["gas1"]] and [x.id for x in h.gas[2]] == [a["gas2"]]
    assert h.gas[2][0].value == 55.0
    assert [x.id for x in h.out_of_zone] == [a["goods"]]
    assert [x.id for x in h.door] == [a["door"]] and [x.id for x in h.temperature] == [a["temp"]]
    assert h.door[0].duration_ms == 50 * MIN
    p = r.plans
    assert [i.id for i in p.incidents] == [month.incidents["real"]]  # the drill is not an incident
    real = p.incidents[0]
    assert (real.done_on_time, real.done_late, real.skipped, real.overdue) == (1, 1, 1, 0)
    assert real.punctuality == 0.5 and real.alert_ids == (a["fire"],)
    drills = {d.plan.id: d for d in p.drills}
    assert drills["fire"].in_period == (month.incidents["drill"],) and drills["fire"].ok(END)
    assert not drills["chemical-leak"].ok(END)  # last drilled September 2025: > 6 months
    assert drills["earthquake"].ok(END)  # February: within a year
    assert drills["typhoon"].last_ms is None and not drills["typhoon"].ok(END)
    assert p.missing_types == [] and p.ok is False
    tr = r.training
    assert [s.id for s in tr.sessions] == [month.training["may1"], month.training["may2"]]
    assert (tr.people_trained, tr.named_people) == (42, 2)
    assert tr.last_before_end is not None and tr.last_before_end.held_on == date(2026, 5, 28)
    assert tr.ok


def test_alarm_handling(sessions: SessionFactory, month: rb.Month) -> None:
    r = report_of(sessions)
    a = month.alerts
    al = r.alarms
    counted = sorted(v for k, v in a.items() if k != "drill")
    assert sorted(x.id for x in al.alerts) == counted
    assert al.drill_alerts == [a["drill"]]
    # time to acknowledge of every acknowledged alert, in ms, worked out from the builder
    acks = {
        "lane1": 2 * MIN, "lane2": 29 * MIN, "gas1": 2 * MIN, "gas2": 30_000,
        "goods": 4 * MIN, "door": 10 * MIN, "temp": 3 * MIN, "fault": 10 * MIN,
        "false": MIN, "fire": 3 * MIN,
    }  # fmt: skip
    values = sorted(acks.values())
    assert sorted(al.ack["all"].values_ms) == values
    assert al.ack["all"].percentile(50) == values[math.ceil(0.5 * 10) - 1] == 3 * MIN
    assert al.ack["all"].percentile(90) == values[8] == 10 * MIN
    assert al.ack["all"].max == 29 * MIN
    # promises: critical 1 min, major 5, minor 30, warning 60
    assert al.ack_late == sorted([a["lane2"], a["fire"], a["open"]])  # open: never acked, 2 d
    assert al.ack["critical"].within == 1  # gas2 in 30 s; lane2, fire late
    resolves = {"lane1": 24, "lane2": 69, "gas1": 40, "gas2": 35, "goods": 30, "door": 50,
                "temp": 120, "fault": 120, "false": 20, "fire": 120, "shelved": 150}  # fmt: skip
    assert sorted(al.resolve["all"].values_ms) == sorted(m * MIN for m in resolves.values())
    assert al.resolve_late == []
    assert sorted(al.never_acked) == sorted([a["open"], a["shelved"]])
    assert al.still_open == [a["open"]]
    assert [(e.alert_id, e.at_ms) for e in al.escalations] == [
        (a["lane2"], local(12, 14, 2)),
        (a["fire"], local(15, 20, 1)),
    ]
    assert [(s.alert_id, s.reason) for s in al.shelvings] == [(a["shelved"], "maintenance window")]
    assert [(f.alert_id, f.by) for f in al.false_alarms] == [(a["false"], "王伟")]
    assert al.by_rule["fire-lane-obstructed"] == {
        "critical": 1,
        "major": 1,
        "minor": 0,
        "warning": 0,
    }
    assert nearest_rank([5, 1, 3], 90) == 5 and nearest_rank([], 50) is None


def test_self_inspection_and_gaps(sessions: SessionFactory, month: rb.Month) -> None:
    r = report_of(sessions)
    items = {(i.kind, i.ref): i for i in r.self_inspection.items}
    failed = items[("inspection_failed", f"task {month.tasks['failed']}")]
    assert (failed.action, failed.action_ref, failed.closed_ms) == (
        "更换压力表",
        f"work_order {month.orders['inspection']}",
        local(8, 10),
    )
    assert items[("inspection_missed", f"task {month.tasks['missed']}")].closed_ms is None
    assert items[("work_order", f"work_order {month.orders['manual']}")].action == "清洁探测器"
    assert ("drill_overdue", "plan chemical-leak") in items
    assert ("drill_overdue", "plan typhoon") in items
    assert r.self_inspection.ok is False
    gaps = r.data.gaps
    unknown = [g for g in gaps if g.kind == "presence_unknown"]
    assert [(g.start_ms, g.end_ms, g.devices, g.cause) for g in unknown] == [
        (month.gap_start, month.gap_back, 28, "startup")
    ]
    silent = [g for g in gaps if g.kind == "no_data"]
    assert len(silent) == 1
    # nothing was recorded from 20:50 (the last reading) to midnight: found to within 5 min
    assert local(24, 20, 50) <= silent[0].start_ms <= local(24, 20, 55)
    assert silent[0].end_ms == month.gap_start
    assert r.data.readings_checked and r.data.ok is False


def test_the_pdf_reads_back_in_chinese_with_the_figures(
    sessions: SessionFactory, month: rb.Month, tmp_path: Path
) -> None:
    need_poppler()
    r = report_of(sessions)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render(r, "zh", "pdf"))
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True, text=True
    ).stdout
    squeezed = "".join(text.split())
    for words in (
        "园区消防与安全合规月报",
        "5.5.4消防设施完好率",
        "5.5.5消防通道畅通",
        "5.5.3危险品存放",
        "5.5.2应急预案与演练",
        "5.5.1安全教育培训",
        "7.1/7.2自查自纠与整改",
        "数据完整性",
        "未达标",
        "达标",
        f"{r.facilities.time_weighted.percent:.4f}%",  # 98.0752 %
        "96.4286%",  # 27 of 28 at the end
        "误报：厨房油烟",
        "更换压力表",
    ):
        assert words in squeezed, words
    assert "98.0752" in text
    # and as an image: the summary page has ink where the title is, and the red and green
    # verdict cells (look at it: tests write it to tmp_path)
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "2", str(pdf), str(tmp_path / "page")],
        check=True,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 and all(p.stat().st_size > 5000 for p in pages)


def test_english_html_and_csv(sessions: SessionFactory, month: rb.Month) -> None:
    r = report_of(sessions)
    page = render(r, "en", "html").decode()
    assert "Park fire and safety compliance report" in page
    assert "5.5.4 Fire facilities intact" in page and "Not met" in page
    assert "误报：厨房油烟" in page  # a person's note, shown as written
    assert "<svg" in page
    archive = zipfile.ZipFile(io.BytesIO(render(r, "en", "csv")))
    names = set(archive.namelist())
    assert {"meta.csv", "summary.csv", "non_intact_intervals.csv", "fire_lanes.csv"} <= names

    def rows(name: str) -> list[list[str]]:
        text = archive.read(name).decode("utf-8-sig")
        return list(csv.reader(io.StringIO(text)))

    intervals = rows("non_intact_intervals.csv")
    assert len(intervals) - 1 == len(r.facilities.intervals) == 33
    lanes = {row[0]: row for row in rows("fire_lanes.csv")[1:]}
    assert lanes["fl1 (fire_lane fl1)"][4] == "95.0"
    summary = rows("summary.csv")
    assert [row[1] for row in summary[1:]] == [
        "Not met", "Not met", "Not met", "Not met", "Met", "Not met", "Not met", "Not met"
    ]  # fmt: skip
    assert {"drills.csv", "alarms.csv", "training.csv", "data_gaps.csv"} <= names


def test_an_empty_month_says_so(sessions: SessionFactory) -> None:
    r = report_of(sessions)
    assert r.verdicts() == {
        "5.5.4": None,
        "5.5.5": None,
        "5.5.3": True,
        "5.5.2": False,
        "5.5.1": False,
        "alarms": True,
        "7.1": False,
        "data": False,
    }
    assert r.data.recorded == 0
    assert [(g.kind, g.start_ms, g.end_ms) for g in r.data.gaps] == [("no_data", START, None)]
    doc = layout(r, "en")
    data = next(s for s in doc.sections if s.key == "data")
    assert "Nothing was recorded from any device in the period" in " ".join(
        b for b in data.blocks if isinstance(b, str)
    )
    page = render(r, "zh", "html").decode()
    assert "报告期内未记录到任何设备数据" in page and "无数据" in page
    assert render(r, "zh", "pdf").startswith(b"%PDF")


def test_a_month_still_running_is_reported_up_to_as_of(
    engine: Engine, sessions: SessionFactory
) -> None:
    rb.park(engine)
    with sessions() as s:
        r = build_report(s, CAT, MAY, as_of_ms=local(10), config=ReportConfig(plans=PLANS))
        with pytest.raises(PeriodError):
            build_report(s, CAT, MAY, as_of_ms=START)
    assert r.facilities.time_weighted.scope_ms == 28 * 9 * DAY
    assert r.end_ms == local(10)
    # nothing recorded from the 1st to the 10th but the presence the park started with
    assert [(g.kind, g.start_ms, g.end_ms) for g in r.data.gaps] == [("no_data", START, None)]


def need_poppler() -> None:
    if shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None:
        pytest.fail("poppler-utils (pdftotext, pdftoppm) is required: scripts/test.sh installs it")
