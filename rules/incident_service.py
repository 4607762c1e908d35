"""The incident service: alert changes in, plans started, overdue steps found on the clock,
every incident and step transition out on the channels alerts use.

Wiring (``parkguard serve``), after the rules service has started::

    plans = load_site_plans(settings.site, rules.by_id)   # PlanFileError stops start-up
    incidents = IncidentService(
        settings.database_url, plans, alerts=rules_service.bus, rules=rules, mqtt=target
    )
    incidents.start()                                     # after RulesService.start()
    ctx.extras["incidents"] = incidents                   # for api/routers/plans.py
    ...
    incidents.stop()                                      # before RulesService.stop()

Alerts come from the rules service's bus (``Bus[AlertChange]``, in commit order) through a
queue to one worker thread, which starts the plans an alert triggers (``raised``, or a
severity upgrade) and attaches later alerts to the open incident. Nothing is missed across a
restart: the last alert-journal id handled is stored every few seconds and at ``stop``, and
``start`` first replays what was journaled after it (on the very first start: the alerts open
now). Replays are harmless, since an alert joins an incident of a plan only once. Run one
incident service per database.

A ticker thread marks pending steps past their deadline as overdue (deadlines are stored
absolute, so a restart changes nothing), journaled and notified once, like an escalation.

Fan-out of every IncidentChange, in commit order:

- ``self.bus`` (``Bus[IncidentChange]``): the SSE stream ``GET /api/v1/incidents/stream``.
- MQTT ``parkguard/{site}/alerts`` at QoS 1, JSON with ``"type": "incident"`` (an alert's
  message has no ``type``). The alerts topic is reused on purpose: the collector already skips
  it (``core.contract.is_outbound``), the generated Mosquitto ACL already lets the service
  write it, and a console subscribed to alerts gets incidents without a second subscription.
- The rule files' webhooks (same targets as alerts): ``{"type": "parkguard.incident", ...}``,
  or WeCom/DingTalk markdown, filtered by the plan's severity, retried with doubling backoff
  and dead-lettered in ``webhook_dead_letters`` (``alert_id`` NULL) after the last try.

With ``bus=JournalBus(...)`` (split roles) the bus also carries the incident changes other
processes journal (a step done in the API process), so MQTT and webhooks carry them too; with
``alerts`` a JournalBus as well, plans start from alerts whichever process raised them.

Drills are marked ``drill`` in every message (and ``[演练 DRILL]`` in robot markdown).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from core.bus import Bus, Subscription
from core.contract import alerts_topic, now_ms
from core.journal import JournalBus
from core.models_alerts import WebhookDeadLetter
from rules.alerts import AlertChange
from rules.fanout import (
    SEVERITY_ZH,
    MqttPublisher,
    MqttTarget,
    WebhookDelivery,
    _escape,
    post,
)
from rules.incidents import TRIGGER_ACTIONS, IncidentChange, IncidentStore
from rules.plans import PlanSet
from rules.spec import SEVERITY_RANK, EventRule, RuleSet, Webhook

log = logging.getLogger(__name__)
RETRY_MAX_S = 10.0
STOP_ATTEMPTS = 5
MARK_EVERY_S = 5.0
CATCH_UP_PAGE = 1000
ACTION_ZH = {
    "activated": "预案启动",
    "alert_attached": "新告警并入",
    "step_done": "步骤完成",
    "step_skipped": "步骤跳过",
    "step_overdue": "步骤超时",
    "closed": "事件关闭",
}


def incidents_topic(site: str) -> str:
    """Where incident transitions go: the site's alerts topic (see the module docstring)."""
    return alerts_topic(site)


@dataclass(slots=True)
class IncidentStats:
    alert_changes: int = 0
    activations: int = 0
    """Alert changes that started or joined an incident."""
    drills: int = 0
    """Of those, from drill events."""
    overdue: int = 0
    db_errors: int = 0
    """Failed attempts to store; each is retried until it succeeds."""
    worker_errors: int = 0
    """Alert changes the worker failed on outside the database (a bug): counted, logged."""
    lost_on_stop: int = 0
    """Alert changes not handled because the service stopped while the database was down;
    the watermark stays before them, so the next start handles them."""


@dataclass(frozen=True, slots=True)
class IncidentDesk:
    """The incidents as a process without the incident service sees them (``parkguard api``):
    the store and the plans. People act on incidents through it; plans start from alerts, and
    steps fall overdue, in the process that runs the IncidentService."""

    store: IncidentStore
    plans: PlanSet


class IncidentService:
    """Construct, ``start()``, ``stop()``; the store is ``self.store``, the bus ``self.bus``."""

    def __init__(
        self,
        database_url: str,
        plans: PlanSet,
        *,
        alerts: Bus[AlertChange] | None = None,
        rules: RuleSet | None = None,
        bus: Bus[IncidentChange] | None = None,
        mqtt: MqttTarget | None = None,
        webhooks: Sequence[Webhook] | None = None,
        tick_s: float = 1.0,
        clock: Callable[[], int] = now_ms,
        send: Callable[[Webhook, dict[str, Any]], None] = post,
    ) -> None:
        self.plans = plans
        self.alerts = alerts
        self.rules = rules
        self.bus: Bus[IncidentChange] = bus if bus is not None else Bus()
        self.store = IncidentStore(database_url, plans, self.bus, clock)
        self.mqtt = IncidentMqtt(self.bus, mqtt) if mqtt is not None else None
        hooks = webhooks if webhooks is not None else (rules.webhooks if rules else ())
        self.webhooks = IncidentWebhooks(self.bus, hooks, self.store, send)
        self.tick_s = tick_s
        self.clock = clock
        self.stats = IncidentStats()
        self._subscription: Subscription[AlertChange] | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._handled = 0
        self._marked = 0
        self._hold_mark = False
        self._last_mark = 0.0

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, start the fan-out, listen to alerts, handle what was missed while
        stopped, mark what fell overdue meanwhile, then start the threads."""
        self.store.open()
        self._stopping.clear()
        try:
            if isinstance(self.bus, JournalBus):  # split roles: steps done in the API, too
                self.bus.start(self.store)
            if self.mqtt is not None:
                self.mqtt.start()
            self.webhooks.start()
            if self.alerts is not None:  # before the catch-up: nothing falls in between
                self._subscription = self.alerts.subscribe_queue(100_000)
            self._catch_up()
            self.stats.overdue += len(self.store.mark_overdue())
        except BaseException:
            self._shutdown()
            raise
        for target, name in ((self._work, "incidents-worker"), (self._tick, "incidents-ticker")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Handle the alert changes already queued, stop the threads, the fan-out, the store."""
        if self._subscription is not None:
            self._subscription.close()  # no more alert changes; the worker drains the queue
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self._save_mark(force=True)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if isinstance(self.bus, JournalBus):
            self.bus.stop()
        self.webhooks.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        self.store.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every alert change received so far is handled (tests)."""
        deadline = time.monotonic() + timeout
        subscription = self._subscription
        while subscription is not None and (
            subscription.queue.unfinished_tasks > subscription.dropped
        ):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def check_overdue(self) -> list[IncidentChange]:
        """Run the overdue clock once now (the ticker does it every ``tick_s``)."""
        try:
            changes = self.store.mark_overdue()
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("overdue check failed; trying again at the next tick")
            return []
        self.stats.overdue += len(changes)
        return changes

    # ---- alerts ----------------------------------------------------------------------------

    def _catch_up(self) -> None:
        rules = sorted(self.plans.trigger_rules)
        mark = self.store.watermark()
        if mark is None:  # the first start on this database: what is open now
            head = self.store.alert_journal_head()
            for alert in self.store.open_trigger_alerts(rules):
                self._activate(alert, self.clock(), retry=False)
            self.store.set_watermark(head)
            self._handled = self._marked = head
            return
        self._handled = self._marked = mark
        self._replay(mark)

    def _replay(self, after: int, retry: bool = False) -> None:
        """Handle the journaled alert transitions after ``after`` that may start a plan."""
        rules = sorted(self.plans.trigger_rules)
        while True:
            missed = self.store.missed_alert_changes(after, rules, CATCH_UP_PAGE)
            for seq, at_ms, alert in missed:
                self._activate(alert, at_ms, retry=retry)
                self._handled = max(self._handled, seq)
            if len(missed) < CATCH_UP_PAGE:
                return
            after = missed[-1][0]

    def _work(self) -> None:
        subscription = self._subscription
        dropped = 0
        while subscription is not None:
            change = subscription.get(0.2)
            if subscription.dropped != dropped:  # the queue overflowed: read the journal
                dropped = subscription.dropped
                self._hold_mark = True
                self._recover()
            if change is None:
                if self._stopping.is_set():
                    return
                self._save_mark()
                continue
            try:
                self._on_alert(change)
            except Exception:  # the worker must outlive any one failure, or plans stop
                self.stats.worker_errors += 1
                self._hold_mark = True
                log.exception("incident worker failed on alert change %s", change.seq)
            finally:
                subscription.queue.task_done()

    def _recover(self) -> None:
        try:
            self._replay(self._marked, retry=True)
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("replaying dropped alert changes failed; the next start will")

    def _on_alert(self, change: AlertChange) -> None:
        self.stats.alert_changes += 1
        if change.seq is None:
            # A repeat of an open alert: it starts nothing new, except real events under an
            # alert a drill raised (a real fire in a zone whose drill alert is still open).
            if change.action == "repeated" and change.alert["rule"] in self.plans.trigger_rules:
                self._activate(change.alert, change.at_ms, retry=True)
            return
        if change.action in TRIGGER_ACTIONS:
            self._activate(change.alert, change.at_ms, retry=True)
        self._handled = max(self._handled, change.seq)

    def _activate(self, alert: dict[str, Any], at_ms: int, retry: bool) -> None:
        """Start the plans an alert triggers. Live, a database error is retried until it
        succeeds (or the service stops); at start-up it stops the start."""
        if not self.plans.for_alert(str(alert["rule"]), str(alert["severity"])):
            return
        delay = 0.2
        for attempt in itertools.count(1):
            try:
                drill = self.store.is_drill(alert, self._events_of(str(alert["rule"])))
                touched = self.store.activate_for_alert(alert, at_ms, drill)
            except SQLAlchemyError:
                self.stats.db_errors += 1
                if not retry:
                    raise
                log.exception("starting plans for alert %s failed; retrying", alert.get("id"))
                if self._stopping.is_set() and attempt >= STOP_ATTEMPTS:
                    self.stats.lost_on_stop += 1
                    self._hold_mark = True
                    log.error("stopping: alert %s left for the next start", alert.get("id"))
                    return
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if touched:
                self.stats.activations += 1
                self.stats.drills += int(drill)
            return

    def _events_of(self, rule_id: str) -> Sequence[str]:
        rule = self.rules.by_id.get(rule_id) if self.rules is not None else None
        events = getattr(rule, "events", None)
        return sorted(events) if events and not isinstance(rule, EventRule) else ()

    def _save_mark(self, force: bool = False) -> None:
        """Store the last alert-journal id handled (every few seconds when idle), so the
        next start's catch-up reads little; never past a change that was not handled."""
        if self._hold_mark or self._handled <= self._marked:
            return
        if not force and time.monotonic() - self._last_mark < MARK_EVERY_S:
            return
        self._last_mark = time.monotonic()
        try:
            self.store.set_watermark(self._handled)
            self._marked = self._handled
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("could not store the alert watermark; trying later")

    # ---- the clock -------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stopping.wait(self.tick_s):
            self.check_overdue()


# ---- MQTT -----------------------------------------------------------------------------------


class IncidentMqtt(MqttPublisher[IncidentChange]):
    """Publishes each incident change to ``incidents_topic(site)``."""

    name = "incidents"

    def message(self, change: IncidentChange) -> tuple[str, bytes] | None:
        return incidents_topic(change.site), orjson.dumps(change.to_json())


# ---- webhooks -------------------------------------------------------------------------------


def render(hook: Webhook, change: IncidentChange) -> dict[str, Any]:
    """The request body for ``hook``'s format."""
    if hook.format == "json":
        return change.to_json() | {"type": "parkguard.incident"}
    text = markdown(change)
    if hook.format == "wecom":
        return {"msgtype": "markdown", "markdown": {"content": text}}
    incident = change.incident
    drill = "[演练] " if incident["drill"] else ""
    title = f"{drill}[{ACTION_ZH.get(change.action, change.action)}] {incident['title']['zh']}"
    return {"msgtype": "markdown", "markdown": {"title": title[:64], "text": text}}


def markdown(change: IncidentChange) -> str:
    incident = change.incident
    severity = str(incident["severity"])
    drill = "[演练 DRILL] " if incident["drill"] else ""
    zone = incident["zone_name"]
    where = f"{incident['zone']} {zone['zh']}" if zone else f"{incident['site']} (全园区 site)"
    lines = [
        f"**{drill}[{SEVERITY_ZH.get(severity, severity)} {severity}] "
        f"{_escape(incident['title']['zh'])} / {_escape(incident['title']['en'])}**",
        f"> {ACTION_ZH.get(change.action, change.action)} {change.action}"
        f" ({change.from_state or '-'} → {change.to_state})",
        f"> 事件 incident: #{incident['id']}  区域 zone: {_escape(where)}",
        f"> 时间 time: {change.to_json()['at']}",
    ]
    step = change.step
    if step is not None:
        role = step["role_title"]
        lines.append(
            f"> 步骤 step: {_escape(step['id'])} ({role['zh']} {role['en']}): "
            f"{_escape(step['text']['zh'][:200])}"
        )
    if change.actor != "system":
        lines.append(f"> 操作人 by: {_escape(change.actor)}")
    if change.note:
        lines.append(f"> 说明 note: {_escape(change.note[:200])}")
    return "\n".join(lines)


class IncidentWebhooks(WebhookDelivery[IncidentChange]):
    """Incident changes to the rule files' webhooks (the delivery loop is the alerts' one)."""

    thread_prefix = "incident-webhook"

    def __init__(
        self,
        bus: Bus[IncidentChange],
        hooks: Sequence[Webhook],
        store: IncidentStore,
        send: Callable[[Webhook, dict[str, Any]], None] = post,
    ) -> None:
        super().__init__(bus, hooks, send)
        self.store = store

    def wanted(self, hook: Webhook, change: IncidentChange) -> bool:
        severity = str(change.incident["severity"])
        return SEVERITY_RANK.get(severity, 3) >= SEVERITY_RANK[hook.min_severity]

    def body(self, hook: Webhook, change: IncidentChange) -> dict[str, Any]:
        return render(hook, change)

    def describe(self, change: IncidentChange) -> str:
        return f"incident change {change.seq}"

    def record_dead_letter(
        self, hook: Webhook, change: IncidentChange, attempts: int, error: str
    ) -> None:
        with self.store.writing() as session:
            session.add(
                WebhookDeadLetter(
                    webhook=hook.name,
                    created_ms=self.store.clock(),
                    alert_id=None,
                    seq=change.seq,
                    attempts=attempts,
                    last_error=error[:2000],
                    payload=change.to_json() | {"type": "parkguard.incident"},
                )
            )
