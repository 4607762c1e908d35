"""The incident service through real parts: Mosquitto → collector → rules service → incident
service, on SQLite and PostgreSQL; restarts (overdue steps and alerts missed while down); and
every incident transition on MQTT from the real broker and on webhooks."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from core.bus import Bus
from core.contract import Event, alerts_topic, encode_event, now_ms, topic_for
from core.db import make_engine
from core.ingest import CommittedBatch
from core.models_alerts import WebhookDeadLetter
from rules.fanout import MqttTarget
from rules.incident_service import IncidentService, markdown, render
from rules.incidents import IncidentChange, IncidentFilter
from rules.plans import Plan, PlanSet, load_site_plans
from rules.spec import RuleSet, Webhook, load_site_rules
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import DEMO_SITE, unique
from tests.plans.builders import Clock, running_collector, running_incidents, running_rules
from tests.rules.builders import add_park
from tests.rules.test_fanout import Hook, Listener

Park = tuple[str, str, dict[str, str], str]


@pytest.fixture
def park(db_url: str) -> Park:
    """(url, site, logical name → device id, zone prefix) of a fresh small park."""
    engine = make_engine(db_url)
    site = unique("s")
    ids = add_park(engine, site, f"{site}-")
    engine.dispose()
    return db_url, site, ids, f"{site}-"


@pytest.fixture(scope="module")
def demo() -> tuple[RuleSet, PlanSet]:
    """The demo park's rules and plans (the small test park has the device types they use)."""
    rules = load_site_rules(DEMO_SITE)
    return rules, load_site_plans(DEMO_SITE, rules.by_id)


def incidents_of(service: IncidentService, **where: Any) -> list[dict[str, Any]]:
    return service.store.query(IncidentFilter(**where), limit=100)[0]


def fire_alarm(site: str, device: str, seq: int = 1, **detail: Any) -> tuple[str, bytes]:
    return topic_for(site, device, "event"), encode_event(
        now_ms(), seq, "fire_alarm", detail or None
    )


def settle(*services: Any) -> None:
    for service in services:
        assert service.wait_idle()


# ---- through the pipeline -------------------------------------------------------------------


def test_a_double_detector_fire_starts_the_fire_plan_once_for_its_zone(
    park: Park, broker: tuple[str, int], demo: tuple[RuleSet, PlanSet]
) -> None:
    url, site, ids, p = park
    rules, plans = demo
    with (
        running_rules(url, rules) as alerts,
        running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents,
        running_collector(url, broker, alerts),
    ):
        publish_all(broker, [fire_alarm(site, ids["smoke1"]), fire_alarm(site, ids["smoke2"])])
        wait_for(lambda: bool(incidents_of(incidents)), what="the fire incident")
        # more alerts follow: a third detector, the first again, a lone detector elsewhere
        publish_all(
            broker,
            [
                fire_alarm(site, ids["heat1"]),
                fire_alarm(site, ids["smoke1"], seq=2),
                fire_alarm(site, ids["smoke3"]),
            ],
        )
        wait_for(lambda: alerts.stats.events >= 5, what="five events through the rules")
        settle(alerts, incidents)
        found = incidents_of(incidents)
        detail = incidents.store.get(found[0]["id"])
    assert len(found) == 1
    incident = found[0]
    assert (incident["plan"], incident["zone"], incident["drill"]) == ("fire", p + "w1", False)
    assert incident["trigger"] == "alert" and incident["state"] == "open"
    assert [a["rule"] for a in detail["alerts"]] == ["fire-confirmed"]
    assert detail["steps"][0]["id"] == "cctv-check"
    assert detail["steps"][4]["text"]["zh"].startswith("按应急广播组织w1及所在建筑人员")
    assert [e["action"] for e in detail["timeline"]] == ["activated"]
    assert incidents.stats.activations == 1 and incidents.stats.worker_errors == 0


def test_racing_alerts_and_two_incident_services_make_one_incident(
    park: Park, broker: tuple[str, int], demo: tuple[RuleSet, PlanSet]
) -> None:
    """Two pre-alarms and the confirmation arrive in one batch, and two incident services (as
    two processes would) handle each of them at once: one incident, each alert once."""
    url, site, ids, p = park
    rules, plans = demo
    body = plans.by_id["fire"].model_dump()
    body["triggers"] = [*body["triggers"], {"rule": "fire-prealarm"}]
    both = PlanSet([Plan.model_validate(body)])
    with (
        running_rules(url, rules) as alerts,
        running_incidents(url, both, alerts=alerts.bus, rules=rules) as one,
        running_incidents(url, both, alerts=alerts.bus, rules=rules) as two,
        running_collector(url, broker, alerts),
    ):
        publish_all(
            broker,
            [fire_alarm(site, ids[d]) for d in ("smoke1", "smoke2", "heat1")],
        )
        wait_for(lambda: alerts.stats.events >= 3, what="three events through the rules")
        settle(alerts, one, two)
        found = incidents_of(one)
        detail = one.store.get(found[0]["id"])
    assert len(found) == 1 and found[0]["zone"] == p + "w1"
    rules_seen = sorted(a["rule"] for a in detail["alerts"])
    assert rules_seen == ["fire-confirmed"] + ["fire-prealarm"] * 3
    actions = [e["action"] for e in detail["timeline"]]
    assert actions == ["activated"] + ["alert_attached"] * 3
    assert one.stats.worker_errors == two.stats.worker_errors == 0


def test_a_drill_from_a_simulator_scenario_is_a_drill_and_leaves_real_figures_untouched(
    park: Park, broker: tuple[str, int], demo: tuple[RuleSet, PlanSet]
) -> None:
    url, site, ids, p = park
    rules, plans = demo
    since = now_ms()
    drill: dict[str, Any] = {"drill": True, "scenario": "warehouse-fire"}
    with (
        running_rules(url, rules) as alerts,
        running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents,
        running_collector(url, broker, alerts),
    ):
        publish_all(
            broker,
            [fire_alarm(site, ids["smoke1"], **drill), fire_alarm(site, ids["heat1"], **drill)],
        )
        wait_for(lambda: bool(incidents_of(incidents)), what="the drill incident")
        figures = incidents.store.figures(since)
        (incident,) = incidents_of(incidents)
    assert incident["drill"] is True and incident["zone"] == p + "w1"
    assert figures["real"]["incidents"] == 0 and figures["real"]["steps"]["total"] == 0
    assert figures["drills"]["incidents"] == 1
    assert figures["drills"]["steps"]["total"] == len(plans.by_id["fire"].steps)


# ---- restarts -------------------------------------------------------------------------------


def test_steps_go_overdue_on_time_also_across_a_restart(
    park: Park, demo: tuple[RuleSet, PlanSet]
) -> None:
    url, _, _, p = park
    _, plans = demo
    clock = Clock(now_ms())
    seen: list[IncidentChange] = []
    with running_incidents(url, plans, clock=clock) as first:
        first.bus.subscribe(seen.append)
        start = clock.ms
        n = first.store.activate("fire", "王伟", "演练", zone=p + "w1", drill=True)["id"]
        clock.advance(59.9)
        time.sleep(0.3)  # several ticks: nothing is due yet
        assert [c.action for c in seen] == ["activated"]
        clock.advance(0.1)
        wait_for(lambda: len(seen) == 2, timeout=5, what="the first overdue step")
    assert (seen[1].action, seen[1].step and seen[1].step["id"]) == ("step_overdue", "cctv-check")
    assert seen[1].at_ms == start + 60_000
    # down for four minutes: three more steps fall due meanwhile
    clock.advance(240)
    later: list[IncidentChange] = []
    bus: Bus[IncidentChange] = Bus()
    bus.subscribe(later.append)
    with running_incidents(url, plans, clock=clock, bus=bus) as second:
        overdue = [c.step["id"] for c in later if c.step is not None]
        assert overdue == [
            "on-site-confirm",
            "linkage-auto",
            "call-119",
            "evacuate",
            "first-aid-fighting",
        ]
        assert all(c.at_ms == start + 300_000 for c in later)  # found at the restart
        clock.advance(180)  # 8 min: cutting power and opening the fire lanes are due
        wait_for(lambda: len(later) == 7, timeout=5, what="two more overdue steps")
        record = second.store.get(n)
    assert [c.step["id"] for c in later[5:] if c.step] == ["cut-power-gas", "open-fire-lanes"]
    assert record["progress"]["overdue"] == 8  # with the first run's cctv-check
    assert [e["action"] for e in record["timeline"]].count("step_overdue") == 8


def test_alerts_raised_while_the_service_is_down_start_their_plans_at_the_next_start(
    park: Park, demo: tuple[RuleSet, PlanSet]
) -> None:
    url, site, ids, p = park
    rules, plans = demo

    def both_detectors(zone_devices: tuple[str, str]) -> CommittedBatch:
        t = now_ms()
        return CommittedBatch(
            events=[Event(ids[d], site, t, 1, "fire_alarm", None) for d in zone_devices]
        )

    with running_rules(url, rules) as alerts:
        # open before the very first start: started at the first start
        alerts.on_batch(both_detectors(("smoke1", "smoke2")))
        assert alerts.wait_idle()
        with running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents:
            assert [i["zone"] for i in incidents_of(incidents)] == [p + "w1"]
        # raised while the incident service is down: started at its next start
        alerts.on_batch(
            CommittedBatch(
                events=[
                    Event(ids["env1"], site, now_ms(), 1, "smoke_alarm", None),
                    Event(ids["heat1"], site, now_ms(), 1, "fire_alarm", None),
                ]
            )
        )
        assert alerts.wait_idle()
        with running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents:
            found = incidents_of(incidents)
    assert [i["zone"] for i in found] == [p + "w1"]  # the same zone: attached, not doubled
    assert found[0]["alert_count"] == 1  # fire-confirmed repeated (count up): nothing new


def test_an_alert_missed_while_down_in_another_zone_opens_its_own_incident(
    park: Park, demo: tuple[RuleSet, PlanSet]
) -> None:
    url, site, ids, p = park
    rules, plans = demo
    with running_rules(url, rules) as alerts:
        with running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents:
            assert incidents_of(incidents) == []
        t = now_ms()
        alerts.on_batch(
            CommittedBatch(
                events=[
                    Event(ids["smoke3"], site, t, 1, "fire_alarm", None),
                    Event(ids["smoke1"], site, t, 1, "fire_alarm", None),
                    Event(ids["smoke2"], site, t, 1, "fire_alarm", None),
                ]
            )
        )
        assert alerts.wait_idle()
        with running_incidents(url, plans, alerts=alerts.bus, rules=rules) as incidents:
            found = incidents_of(incidents)
    assert [(i["plan"], i["zone"]) for i in found] == [("fire", p + "w1")]


# ---- fan-out --------------------------------------------------------------------------------


def test_every_incident_transition_reaches_mqtt_in_order(
    park: Park, broker: tuple[str, int], demo: tuple[RuleSet, PlanSet]
) -> None:
    url, site, _, p = park
    _, plans = demo
    clock = Clock(now_ms())
    listener = Listener(broker, alerts_topic(site))
    try:
        with running_incidents(url, plans, clock=clock, mqtt=MqttTarget(*broker)) as service:
            assert service.mqtt is not None and service.mqtt.connected
            store = service.store
            n = store.activate("chemical-leak", "王伟", "演练: H1 泄漏", zone=p + "hz", drill=True)
            n_id = n["id"]
            store.complete_step(n_id, "raise-alarm", "值班员")
            clock.advance(200)  # no-ignition (3 min) is overdue
            wait_for(lambda: len(listener.messages) >= 3, timeout=5, what="three messages")
            store.skip_step(n_id, "call-119-120", "值班员", "泄漏已控制，无人员中毒")
            store.close_incident(n_id, "王伟", "演练结束 <script>", skip_pending=True)
            wait_for(lambda: listener.messages[-1]["action"] == "closed", timeout=5, what="closed")
    finally:
        listener.close()
    got = [(m["action"], m["step"] and m["step"]["id"]) for m in listener.messages]
    assert got[:4] == [
        ("activated", None),
        ("step_done", "raise-alarm"),
        ("step_overdue", "no-ignition"),
        ("step_skipped", "call-119-120"),
    ]
    assert got[-1] == ("closed", None)
    assert all(m["type"] == "incident" and m["drill"] is True for m in listener.messages)
    assert listener.qos == [1] * len(listener.messages)
    seqs = [m["seq"] for m in listener.messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    last = listener.messages[-1]
    assert last["incident"]["closed"]["summary"] == "演练结束 <script>"
    assert last["incident"]["state"] == "closed" and last["incident"]["zone"] == p + "hz"


def test_incident_transitions_reach_webhooks_and_dead_letters(
    park: Park, demo: tuple[RuleSet, PlanSet]
) -> None:
    url, _, _, p = park
    _, plans = demo
    good, bad = Hook(), Hook(plan=[500, 503])
    hooks = [
        Webhook(name="duty", url=good.url),
        Webhook(name="wecom", url=good.url.replace("/hook", "/wecom"), format="wecom"),
        Webhook(name="quiet", url=good.url, min_severity="critical"),
        Webhook(name="broken", url=bad.url, retries=1, backoff=0.05),
    ]
    try:
        with running_incidents(url, plans, webhooks=hooks) as service:
            n = service.store.activate(
                "public-health", "王伟", "疾控通报：食堂聚集性腹泻", zone=p + "w2"
            )["id"]
            wait_for(lambda: len(good.requests) >= 2, timeout=5, what="two deliveries")
            wait_for(lambda: service.webhooks.dead >= 1, timeout=5, what="a dead letter")
        engine = make_engine(url)
        with engine.connect() as c:
            dead = c.execute(select(WebhookDeadLetter)).one()
        engine.dispose()
    finally:
        good.close()
        bad.close()
    paths = sorted(path for path, _ in good.requests)
    assert paths == [
        "/hook?key=abc",
        "/wecom?key=abc",
    ]  # 'quiet' wants critical: public health is major
    body = next(b for path, b in good.requests if path.startswith("/hook"))
    assert body["type"] == "parkguard.incident" and body["action"] == "activated"
    assert body["incident"]["id"] == n and body["incident"]["reason"] == "疾控通报：食堂聚集性腹泻"
    robot = next(b for path, b in good.requests if path.startswith("/wecom"))
    assert robot["msgtype"] == "markdown"
    assert "突发公共卫生事件应急处置方案" in robot["markdown"]["content"]
    assert (dead.webhook, dead.alert_id, dead.attempts) == ("broken", None, 2)
    assert dead.payload["type"] == "parkguard.incident" and "HTTP 503" in dead.last_error


def test_robot_markdown_marks_drills_and_neutralises_hostile_text(
    park: Park, demo: tuple[RuleSet, PlanSet]
) -> None:
    url, _, _, p = park
    _, plans = demo
    seen: list[IncidentChange] = []
    with running_incidents(url, plans) as service:
        service.bus.subscribe(seen.append)
        n = service.store.activate("riot", "王伟", "演练", zone=p + "w1", drill=True)["id"]
        service.store.skip_step(n, "call-110", "王伟", "**[click](http://evil)** <b>\n> fake")
    text = markdown(seen[-1])
    assert text.startswith("**[演练 DRILL] [紧急 critical] 群体性事件")
    assert "\\*\\*\\[click\\]\\(http://evil\\)\\*\\* \\<b\\> \\> fake" in text
    assert "\n> fake" not in text
    ding = render(Webhook(name="d", url="https://x.test", format="dingtalk"), seen[0])
    assert ding["markdown"]["title"].startswith("[演练] [预案启动] 群体性事件")
