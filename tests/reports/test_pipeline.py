"""Through the real pipeline: the demo park's fleet on a real Mosquitto, the collector, SQLite and
the rules service with the demo rules (compressed by the playback speed, as in
tests/simulators/test_pipeline.py) play a blocked fire lane and a hazmat-store gas leak; a person
acknowledges and resolves alarms through the alert store. The report over that stretch of time
must agree with what the test reads for itself from the stored events and the alert store."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from compliance.intactness import refresh
from compliance.report import Period, ReportConfig, build_report
from compliance.scheduled import render
from core.catalogue import load_catalogue
from core.contract import now_ms
from core.db import session_factory
from rules.alerts import AlertConflict, AlertFilter
from rules.spec import load_site_rules
from simulators.scenario import load_scenario
from tests.collector.helpers import wait_for
from tests.conftest import DEMO_SITE
from tests.simulators.test_pipeline import alerts, compressed, demo_park

SPEED = 480

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_a_played_lane_and_leak_are_reported_as_stored(
    sqlite_url: str, private_broker: tuple[str, int], tmp_path: Path
) -> None:
    rules = load_site_rules(DEMO_SITE)
    config = ReportConfig.from_rules(rules.rules)
    assert config.fire_lane_rules == {"fire-lane-obstructed"}
    assert config.gas_levels == {"gas-25-lel": 1, "gas-50-lel": 2}
    assert config.hazmat_door_rules == {"hazmat-door-open"}
    start = now_ms()
    with demo_park(sqlite_url, private_broker, compressed(rules, SPEED), speed=10) as park:
        for name in ("fire-lane-blocked", "hazmat-leak"):
            scenario = load_scenario(name)
            playback = park.fleet.play(scenario, speed=SPEED)
            wait_for(
                lambda p=playback, s=scenario: len(p.ran) == len(s.steps),  # type: ignore[misc]
                timeout=playback.length_s + 15,
                what=f"every step of {name}",
            )
        wanted = {"fire-lane-obstructed", "gas-25-lel", "gas-50-lel"}
        wait_for(lambda: wanted <= {a["rule"] for a in alerts(park.service)}, what="alerts")
        store = park.service.store
        for a in alerts(park.service):  # a person takes what is still on
            if a["state"] == "active":
                with contextlib.suppress(AlertConflict):  # resolved meanwhile by its rule
                    store.acknowledge(a["id"], "wang.wei")
        lane = next(a for a in alerts(park.service) if a["rule"] == "fire-lane-obstructed")
        if lane["state"] != "resolved":
            with contextlib.suppress(AlertConflict):
                store.resolve(lane["id"], "wang.wei", "误报：演示车辆")
        assert park.service.wait_idle(10)
        end = now_ms() + 1
        sessions = session_factory(park.engine)
        with sessions() as s:
            refresh(s, load_catalogue(), end)
            report = build_report(
                s,
                load_catalogue(),
                Period("live", start, end, "Asia/Shanghai"),
                as_of_ms=end,
                config=config,
            )
        stored = [  # those raised in the report's stretch of time (more may follow)
            a
            for a in store.query(AlertFilter(), limit=1000)[0]
            if start <= a["first_seen_ms"] < end
        ]
        events = park.engine.connect()
        try:
            obstruction = events.exec_driver_sql(
                "select event, ts_ms from device_events where device_id = 'FL-E-FLM002' "
                "and event in ('obstruction_start', 'obstruction_end') order by ts_ms"
            ).all()
        finally:
            events.close()
        journals = {
            a["id"]: [e for e in store.get(a["id"])["journal"] if e["at_ms"] <= end] for a in stored
        }
    # 5.5.5: the lane's alerts and its obstructed time, from the device's own events
    by_rule: dict[str, list[int]] = {}
    for a in stored:
        by_rule.setdefault(a["rule"], []).append(a["id"])
    lanes = {x.device_id: x for x in report.lanes.lanes}
    assert sorted(lanes["FL-E-FLM002"].alert_ids) == sorted(by_rule["fire-lane-obstructed"])
    assert [e for e, _ts in obstruction] == ["obstruction_start", "obstruction_end"]
    blocked = obstruction[1][1] - obstruction[0][1]
    assert blocked > 0
    # the lane is blocked both by the event pair and by the obstructed value: one stretch
    assert lanes["FL-E-FLM002"].obstructed_ms >= blocked
    assert lanes["FL-E-FLM002"].longest_ms == lanes["FL-E-FLM002"].obstructed_ms
    assert sum(x.obstructed_ms for x in report.lanes.lanes) == lanes["FL-E-FLM002"].obstructed_ms
    # 5.5.3: gas alarms by level, as the alert store has them
    assert [a.id for a in report.hazmat.gas[1]] == by_rule["gas-25-lel"]
    assert [a.id for a in report.hazmat.gas[2]] == by_rule["gas-50-lel"]
    # alarm handling: times to acknowledge, each from its alert's journal
    took = [
        next(e["at_ms"] for e in journals[a["id"]] if e["action"] == "acknowledged")
        - a["first_seen_ms"]
        for a in stored
        if any(e["action"] == "acknowledged" for e in journals[a["id"]])
    ]
    assert sorted(report.alarms.ack["all"].values_ms) == sorted(max(0, t) for t in took)
    assert sorted(a.id for a in report.alarms.alerts) == sorted(a["id"] for a in stored)
    false = [f.alert_id for f in report.alarms.false_alarms]
    resolved_by_person = [
        a["id"]
        for a in stored
        if any(e["action"] == "resolved" and e["actor"] == "wang.wei" for e in journals[a["id"]])
    ]
    assert false == resolved_by_person
    # and the PDF of it reads back
    pdf = tmp_path / "live.pdf"
    pdf.write_bytes(render(report, "zh", "pdf"))
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert "消防车道" in text and "FL-E-FLM002" in text and "可燃气体" in text
