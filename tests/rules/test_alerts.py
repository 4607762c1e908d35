"""The alert store on SQLite and PostgreSQL: one open alert per (rule, subject), lifecycle,
shelving, flapping, escalation, the append-only journal, and changes in commit order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.db import make_engine
from core.models_alerts import Alert, AlertJournal
from rules.alerts import (
    AlertChange,
    AlertConflict,
    AlertFilter,
    AlertInputError,
    AlertNotFound,
    AlertStore,
)
from rules.engine import CancelTimer, Clear, Raise, Timer
from tests.rules.builders import SITE, rule, ruleset

S = 1000
T0 = 1_700_000_000_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def rules() -> Any:
    return ruleset(
        rule(id="fire", kind="event", events=["fire_alarm"], severity="critical"),
        rule(id="gas", kind="threshold", metric="gas_lel_pct", above=25, severity="major"),
        rule(
            id="flappy",
            kind="event",
            events=["fire_alarm"],
            severity="minor",
            flapping={"count": 3, "window": "10m"},
        ),
        escalate_after="60s",
    )


def up(
    rule_id: str = "fire",
    device: str = "smoke1",
    at: int = T0,
    severity: str | None = None,
    **detail: Any,
) -> Raise:
    sev = severity or {"fire": "critical", "gas": "major", "flappy": "minor"}.get(rule_id, "major")
    return Raise(rule_id, f"device:{device}", sev, at, SITE, device, "w1", detail)


def down(rule_id: str = "fire", device: str = "smoke1", at: int = T0) -> Clear:
    return Clear(rule_id, f"device:{device}", at, "condition cleared")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[AlertStore]:
    made = AlertStore(db_url, rules(), clock=clock)
    made.open()
    yield made
    made.close()


@pytest.fixture
def seen(store: AlertStore) -> list[AlertChange]:
    changes: list[AlertChange] = []
    store.bus.subscribe(changes.append)
    return changes


def only_alert(store: AlertStore, **where: Any) -> dict[str, Any]:
    items, total = store.query(AlertFilter(**where))
    assert total == 1, items
    return store.get(items[0]["id"])


def test_a_repeat_raises_count_and_last_seen_never_a_twin(
    store: AlertStore, seen: list[AlertChange]
) -> None:
    store.apply([up(at=T0)], T0)
    store.apply([up(at=T0 + 5 * S, event="fire_alarm"), up(at=T0 + 3 * S)], T0 + 5 * S)
    alert = only_alert(store)
    assert (alert["count"], alert["state"], alert["severity"]) == (3, "active", "critical")
    assert alert["first_seen_ms"] == T0 and alert["last_seen_ms"] == T0 + 5 * S
    assert [e["action"] for e in alert["journal"]] == ["raised"]
    assert [(c.action, c.notify) for c in seen] == [
        ("raised", True),
        ("repeated", False),
        ("repeated", False),
    ]
    assert seen[0].seq == alert["journal"][0]["id"] and seen[1].seq is None


def test_the_database_refuses_a_second_open_alert_for_one_rule_and_subject(
    store: AlertStore, db_url: str
) -> None:
    store.apply([up()], T0)
    engine = make_engine(db_url)
    row = {
        "open_key": "fire|device:smoke1",
        "rule_id": "fire",
        "kind": "event",
        "subject": "device:smoke1",
        "site_id": SITE,
        "severity": "critical",
        "state": "active",
        "title_zh": "x",
        "title_en": "x",
        "count": 1,
        "first_seen_ms": T0,
        "last_seen_ms": T0,
        "condition_active": True,
        "escalation_level": 0,
        "flapping": False,
        "detail": {},
        "updated_ms": T0,
    }
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(insert(Alert), [row])
    with engine.begin() as c:  # resolved alerts have no open key: as many as history needs
        c.execute(insert(Alert), [row | {"open_key": None, "state": "resolved"}] * 2)
    engine.dispose()


def test_concurrent_writers_make_one_alert(db_url: str) -> None:
    """Several stores (own engines, as several processes would have) race on one key."""
    stores = [AlertStore(db_url, rules()) for _ in range(4)]
    for s in stores:
        s.open()
    start = threading.Barrier(len(stores))

    def hammer(s: AlertStore) -> None:
        start.wait()
        for i in range(15):
            s.apply([up(at=T0 + i)], T0 + i)

    with ThreadPoolExecutor(len(stores)) as pool:
        for done in [pool.submit(hammer, s) for s in stores]:
            done.result()  # re-raises anything a writer hit
    items, total = stores[0].query(AlertFilter())
    assert total == 1 and items[0]["count"] == 60
    for s in stores:
        s.close()


def test_clear_resolves_and_a_new_raise_is_a_new_alert(store: AlertStore) -> None:
    store.apply([up()], T0)
    store.apply([down(at=T0 + S)], T0 + S)
    first = only_alert(store, state="resolved")
    assert first["resolved"] == {
        "by": "system",
        "at": "2023-11-14T22:13:21.000Z",
        "note": "condition cleared",
    }
    assert [(e["action"], e["from"], e["to"]) for e in first["journal"]] == [
        ("raised", None, "active"),
        ("resolved", "active", "resolved"),
    ]
    store.apply([down(at=T0 + 2 * S)], T0 + 2 * S)  # nothing open: nothing happens
    store.apply([up(at=T0 + 3 * S)], T0 + 3 * S)
    second = only_alert(store, state="active")
    assert second["id"] != first["id"] and second["count"] == 1


def test_acknowledge_records_who_and_refuses_twice(
    store: AlertStore, clock: Clock, seen: list[AlertChange]
) -> None:
    store.apply([up()], T0)
    alert_id = only_alert(store)["id"]
    clock.now = T0 + 10 * S
    acked = store.acknowledge(alert_id, "王伟", "on my way")
    assert acked["state"] == "acknowledged"
    assert acked["acknowledged"] == {"by": "王伟", "at": "2023-11-14T22:13:30.000Z"}
    with pytest.raises(AlertConflict):
        store.acknowledge(alert_id, "someone else")
    with pytest.raises(AlertNotFound):
        store.acknowledge(999_999, "x")
    journal = store.get(alert_id)["journal"]
    assert (journal[-1]["actor"], journal[-1]["action"], journal[-1]["note"]) == (
        "王伟",
        "acknowledged",
        "on my way",
    )
    assert seen[-1].action == "acknowledged" and seen[-1].notify


def test_manual_resolve_needs_a_note(store: AlertStore) -> None:
    store.apply([up()], T0)
    alert_id = only_alert(store)["id"]
    with pytest.raises(AlertInputError):
        store.resolve(alert_id, "op", "   ")
    resolved = store.resolve(alert_id, "op", "false alarm: dust from works")
    assert resolved["state"] == "resolved" and resolved["resolved"]["by"] == "op"
    with pytest.raises(AlertConflict):
        store.resolve(alert_id, "op", "again")


def test_shelve_needs_a_reason_and_a_sane_expiry(store: AlertStore, clock: Clock) -> None:
    store.apply([up()], T0)
    alert_id = only_alert(store)["id"]
    with pytest.raises(AlertInputError, match="reason"):
        store.shelve(alert_id, "op", "", T0 + 60 * S)
    with pytest.raises(AlertInputError, match="future"):
        store.shelve(alert_id, "op", "testing", T0 - 1)
    with pytest.raises(AlertInputError, match="at most"):
        store.shelve(alert_id, "op", "testing", T0 + 8 * 86400 * S)
    with pytest.raises(AlertNotFound):
        store.shelve(424242, "op", "testing", T0 + 60 * S)
    with pytest.raises(AlertConflict):
        store.unshelve(alert_id, "op")


def test_a_shelved_alert_records_underneath_and_resolves_when_unshelved_if_cleared(
    store: AlertStore, clock: Clock, seen: list[AlertChange]
) -> None:
    store.apply([up()], T0)
    alert_id = only_alert(store)["id"]
    shelved = store.shelve(alert_id, "tech", "detector loop test", T0 + 3600 * S)
    assert shelved["state"] == "shelved" and shelved["shelved"]["reason"] == "detector loop test"
    seen.clear()
    store.apply([up(at=T0 + S)], T0 + S)
    store.apply([down(at=T0 + 2 * S)], T0 + 2 * S)
    underneath = store.get(alert_id)
    assert underneath["state"] == "shelved" and underneath["count"] == 2
    assert underneath["condition_active"] is False
    assert [c.notify for c in seen] == [False, False]
    clock.now = T0 + 10 * S
    after = store.unshelve(alert_id, "tech", "test done")
    assert after["state"] == "resolved"
    actions = [(e["action"], e["actor"]) for e in store.get(alert_id)["journal"]]
    assert actions == [
        ("raised", "system"),
        ("shelved", "tech"),
        ("cleared", "system"),
        ("unshelved", "tech"),
        ("resolved", "system"),
    ]


def test_a_shelf_expires_and_the_alert_comes_back_if_still_active(
    store: AlertStore, clock: Clock, seen: list[AlertChange]
) -> None:
    store.apply([up(rule_id="gas", device="env1")], T0)
    alert_id = only_alert(store)["id"]
    store.shelve(alert_id, "tech", "sensor calibration", T0 + 60 * S)
    assert store.housekeeping(T0 + 59 * S) == []
    changes = store.housekeeping(T0 + 60 * S)
    assert [(c.action, c.from_state, c.to_state, c.actor) for c in changes] == [
        ("unshelved", "shelved", "active", "system")
    ]
    assert store.get(alert_id)["state"] == "active"


def test_escalation_of_an_unacknowledged_critical_alert(
    store: AlertStore, clock: Clock, seen: list[AlertChange]
) -> None:
    store.apply([up()], T0)
    store.apply([up(rule_id="gas", device="env1")], T0)  # major: never escalates
    assert store.housekeeping(T0 + 59 * S) == []
    changes = store.housekeeping(T0 + 60 * S)
    assert [(c.action, c.notify, c.alert["rule"]) for c in changes] == [("escalated", True, "fire")]
    assert changes[0].alert["escalation_level"] == 1
    assert store.housekeeping(T0 + 600 * S) == []  # once, unless escalate_repeat is set


def test_an_acknowledged_alert_does_not_escalate(store: AlertStore, clock: Clock) -> None:
    store.apply([up()], T0)
    store.acknowledge(only_alert(store)["id"], "op")
    assert store.housekeeping(T0 + 600 * S) == []


def test_severity_raised_by_a_later_stage_reactivates_and_arms_escalation(
    store: AlertStore, clock: Clock
) -> None:
    store.apply([up(rule_id="gas", device="env1")], T0)
    alert_id = only_alert(store)["id"]
    store.acknowledge(alert_id, "op")
    store.apply([up(rule_id="gas", device="env1", severity="critical", at=T0 + S)], T0 + S)
    alert = store.get(alert_id)
    assert (alert["severity"], alert["state"], alert["count"]) == ("critical", "active", 2)
    assert alert["journal"][-1]["note"] == "severity major → critical"
    assert [c.action for c in store.housekeeping(T0 + 61 * S)] == ["escalated"]
    # a lower severity later does not lower it
    store.apply([up(rule_id="gas", device="env1", severity="major", at=T0 + 70 * S)], T0 + 70 * S)
    assert store.get(alert_id)["severity"] == "critical"


def test_flapping_is_marked_and_held_open_instead_of_renotifying(
    store: AlertStore, seen: list[AlertChange]
) -> None:
    at = T0
    for _ in range(2):
        store.apply([up("flappy", at=at)], at)
        store.apply([down("flappy", at=at + S)], at + S)
        at += 10 * S
    seen.clear()
    store.apply([up("flappy", at=at)], at)
    alert = only_alert(store, state="open")
    assert alert["flapping"] is True
    assert alert["journal"][0]["note"].startswith("flapping: raised 3 times")
    store.apply([down("flappy", at=at + S)], at + S)
    store.apply([up("flappy", at=at + 2 * S)], at + 2 * S)
    store.apply([down("flappy", at=at + 3 * S)], at + 3 * S)
    assert only_alert(store, state="open")["id"] == alert["id"]
    assert [(c.action, c.notify) for c in seen] == [
        ("raised", True),
        ("cleared", False),
        ("reactivated", False),
        ("cleared", False),
    ]
    assert store.housekeeping(at + 3 * S + 599 * S) == []
    settled = store.housekeeping(at + 3 * S + 600 * S)
    assert [(c.action, c.notify) for c in settled] == [("resolved", True)]
    assert store.get(alert["id"])["resolved"]["note"] == "condition stayed clear; flapping ended"


def test_the_journal_is_append_only(store: AlertStore, db_url: str) -> None:
    store.apply([up()], T0)
    engine = make_engine(db_url)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
        c.execute(update(AlertJournal).values(actor="someone else"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
        c.execute(text("DELETE FROM alert_journal"))
    engine.dispose()


def test_changes_reach_the_bus_in_commit_order(store: AlertStore, clock: Clock) -> None:
    got: list[int] = []
    store.bus.subscribe(lambda c: got.append(c.seq) if c.seq is not None else None)
    threads = [
        threading.Thread(target=store.apply, args=([up(device=f"d{i}")], T0)) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for item in store.query(AlertFilter())[0]:
        store.acknowledge(item["id"], "op")
    assert len(got) == 16 and got == sorted(got)


def test_query_filters_and_pages(store: AlertStore, clock: Clock) -> None:
    for i in range(5):
        store.apply([up(device=f"d{i}", at=T0 + i * S)], T0 + i * S)
    store.apply([up(rule_id="gas", device="env1", at=T0 + 10 * S)], T0 + 10 * S)
    page, total = store.query(AlertFilter(rule="fire"), limit=2, offset=1)
    assert total == 5 and [a["device"] for a in page] == ["d3", "d2"]
    assert store.query(AlertFilter(severity="major"))[1] == 1
    assert store.query(AlertFilter(device="d0"))[1] == 1
    assert store.query(AlertFilter(zone="w1"))[1] == 6
    assert store.query(AlertFilter(until_ms=T0 + 2 * S))[1] == 2
    store.resolve(page[0]["id"], "op", "checked")
    clock.now = T0 + 20 * S
    assert store.query(AlertFilter(since_ms=T0 + 30 * S))[1] == 5
    assert store.query(AlertFilter(state="resolved"))[1] == 1
    assert store.query(AlertFilter(state="open"))[1] == 5


def test_timers_are_written_with_the_decisions(store: AlertStore) -> None:
    store.apply(
        [
            Timer("gas", "device:env1", "for", T0 + 5 * S, {"since": T0}),
            Timer("fire", "device:x", "clear_after", T0 + 9 * S, {}),
        ],
        T0,
    )
    store.apply(
        [Timer("gas", "device:env1", "hold", T0 + 7 * S, {}), CancelTimer("fire", "device:x")], T0
    )
    assert [(t.rule_id, t.kind, t.due_ms) for t in store.load_timers()] == [
        ("gas", "hold", T0 + 7 * S)
    ]


def test_open_keys(store: AlertStore) -> None:
    store.apply([up(), up(rule_id="gas", device="env1"), down()], T0)
    assert store.open_keys() == [("gas", "device:env1")]
