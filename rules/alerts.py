"""The alert store: one open alert per (rule, subject), its lifecycle, and its journal.

Lifecycle: active → acknowledged → resolved. The rule's clear condition resolves an alert by
itself; a person resolves it with a note. Shelving (reason and expiry required) silences an
alert without hiding it: what happens underneath is still recorded, and when the shelf ends
an alert whose condition cleared meanwhile is resolved. An alert raised too often within its
flapping window is marked flapping and held open: its clears and re-raises are recorded, not
notified, until the condition has stayed clear for a whole window. An unacknowledged alert of
an escalating severity escalates after a delay (journaled and notified again).

Every transition appends a journal row (who, when, why, from, to) and, after the commit, goes
on the bus as an AlertChange in commit order. A repeat only raises ``count`` and
``last_seen``; it is published for live views with ``notify`` false and no journal row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.bus import Bus
from core.contract import now_ms
from core.models_alerts import Alert, AlertJournal, WebhookDeadLetter
from rules import timers
from rules.engine import CancelTimer, Clear, Decision, Key, Raise, Timer
from rules.journaled import JournaledStore, Tx
from rules.spec import SEVERITY_RANK, RuleSet

log = logging.getLogger(__name__)
ALERTS = cast(Table, Alert.__table__)
JOURNAL = cast(Table, AlertJournal.__table__)
JOURNAL_INSERT = insert(JOURNAL).returning(JOURNAL.c.id)
SYSTEM = "system"
RECENTLY_CLEARED = (
    select(func.count())
    .select_from(ALERTS)
    .where(
        ALERTS.c.rule_id == bindparam("rule_id"),
        ALERTS.c.subject == bindparam("subject"),
        ALERTS.c.resolved_ms >= bindparam("since"),
        ALERTS.c.resolved_by == SYSTEM,
    )
)
"""How often a (rule, subject) was raised and cleared by its rule since a time (flapping)."""
DISPLAY_STATES = ("active", "acknowledged", "resolved", "shelved")
MAX_NOTE = 2000
JOURNAL_CHANNEL = "parkguard_alert_journal"
"""The name a core.journal.JournalBus of the alert journal notifies and locks by."""
QUIET_ACTIONS = frozenset({"cleared", "reactivated"})
"""Journaled transitions that are recorded but not notified (underneath a shelf or flapping)."""


class AlertError(Exception):
    """A request the store refuses; the message is one sentence for the person asking."""


class AlertNotFound(AlertError):
    pass


class AlertConflict(AlertError):
    """The alert is not in a state that allows this transition."""


class AlertInputError(AlertError):
    """A missing or impossible argument (empty reason, expiry in the past...)."""


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One alert transition (or repeat), as fanned out after its commit."""

    seq: int | None
    """The journal row's id; None for a repeat, which has no journal row."""
    at_ms: int
    action: str
    actor: str
    from_state: str | None
    to_state: str
    note: str | None
    notify: bool
    """Whether notification channels (MQTT, webhooks) should carry it."""
    alert: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": iso(self.at_ms),
            "at_ms": self.at_ms,
            "action": self.action,
            "actor": self.actor,
            "from": self.from_state,
            "to": self.to_state,
            "note": self.note,
            "notify": self.notify,
            "alert": self.alert,
        }


@dataclass(slots=True)
class AlertFilter:
    state: str | None = None
    """active, acknowledged, resolved, shelved, or open (anything not resolved)."""
    severity: str | None = None
    zone: str | None = None
    device: str | None = None
    rule: str | None = None
    since_ms: int | None = None
    """Alerts still open at or after this time (resolved before it are left out)."""
    until_ms: int | None = None
    """Alerts raised before this time."""


_Tx = Tx[AlertChange]


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def display_state(alert: Alert) -> str:
    if alert.state != "resolved" and alert.shelved_until_ms is not None:
        return "shelved"
    return alert.state


def _repeat(alert: Alert, at_ms: int) -> AlertChange:
    """An open alert raised again (count up): shown live, not journaled, not notified."""
    state = display_state(alert)
    return AlertChange(None, at_ms, "repeated", SYSTEM, state, state, None, False, public(alert))


def public(alert: Alert) -> dict[str, Any]:
    """The alert as the API, the SSE stream, MQTT and webhooks show it."""
    return {
        "id": alert.id,
        "rule": alert.rule_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "state": display_state(alert),
        "lifecycle": alert.state,
        "title": {"zh": alert.title_zh, "en": alert.title_en},
        "site": alert.site_id,
        "subject": alert.subject,
        "device": alert.device_id,
        "zone": alert.zone_id,
        "count": alert.count,
        "first_seen": iso(alert.first_seen_ms),
        "last_seen": iso(alert.last_seen_ms),
        "first_seen_ms": alert.first_seen_ms,
        "last_seen_ms": alert.last_seen_ms,
        "condition_active": alert.condition_active,
        "flapping": alert.flapping,
        "escalation_level": alert.escalation_level,
        "acknowledged": (
            {"by": alert.acked_by, "at": iso(alert.acked_ms)} if alert.acked_ms else None
        ),
        "resolved": (
            {"by": alert.resolved_by, "at": iso(alert.resolved_ms), "note": alert.resolve_note}
            if alert.resolved_ms
            else None
        ),
        "shelved": (
            {
                "by": alert.shelved_by,
                "until": iso(alert.shelved_until_ms),
                "reason": alert.shelve_reason,
            }
            if alert.shelved_until_ms is not None and alert.state != "resolved"
            else None
        ),
        "detail": alert.detail,
    }


def journal_public(entry: AlertJournal) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at_ms),
        "at_ms": entry.at_ms,
        "actor": entry.actor,
        "action": entry.action,
        "from": entry.from_state,
        "to": entry.to_state,
        "note": entry.note,
        "detail": entry.detail,
    }


def _core(session: Session) -> Connection:
    """The session's connection for a Core statement, after writing out pending ORM changes
    (a Core statement does not flush them itself). The alarm path (raise, journal) runs in
    Core: the ORM's unit of work cost an alert's raise about three times as much."""
    session.flush()
    return session.connection()


def open_key(rule_id: str, subject: str) -> str:
    return f"{rule_id}|{subject}"


class AlertStore(JournaledStore[AlertChange]):
    """Alerts in the relational store. Construct, ``open()``, use from any thread, ``close()``.

    Writes are serialised in this process so that changes reach the bus in commit order;
    across processes the database's unique open key keeps one open alert per (rule, subject).
    """

    def __init__(
        self,
        url: str,
        rules: RuleSet,
        bus: Bus[AlertChange] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(url, bus, clock)
        self.rules = rules
        self._upserts: dict[str, Any] = {}

    def repeated(self, refs: Sequence[int]) -> list[AlertChange]:
        """Repeats (count up) another process stored, as these alerts stand now; an alert
        resolved since is left out (its resolve comes through the journal)."""
        wanted = list(dict.fromkeys(refs))
        with self.reading() as session:
            found = {a.id: a for a in session.scalars(select(Alert).where(Alert.id.in_(wanted)))}
        now = self.clock()
        changes = []
        for alert in (found[i] for i in wanted if i in found):
            if alert.state != "resolved":
                changes.append(_repeat(alert, now))
        return changes

    def _repeat_ref(self, change: AlertChange) -> int | None:
        return int(change.alert["id"]) if change.action == "repeated" else None

    # ---- the engine's decisions ------------------------------------------------------------

    def apply(self, decisions: Sequence[Decision], now: int | None = None) -> list[AlertChange]:
        """Store a batch of engine decisions (alerts and timers) in one transaction."""
        if not decisions:
            return []

        def work(session: Session, tx: _Tx) -> list[AlertChange]:
            if now is not None:
                tx.now_ms = now
            clocks: list[Timer | CancelTimer] = []
            for decision in decisions:
                if isinstance(decision, Raise):
                    self._raise(session, decision, tx)
                elif isinstance(decision, Clear):
                    self._clear(session, decision, tx)
                else:
                    clocks.append(decision)
            timers.apply(session, clocks, tx.now_ms)
            return tx.changes

        return list(self._transaction(work))

    def _raise(self, session: Session, decision: Raise, tx: _Tx) -> None:
        rule = self.rules.by_id.get(decision.rule_id)
        at = decision.at_ms
        delay = self.rules.escalate_after_s(decision.rule_id, decision.severity)
        row = {
            "open_key": open_key(decision.rule_id, decision.subject),
            "rule_id": decision.rule_id,
            "kind": rule.kind if rule is not None else "unknown",
            "subject": decision.subject,
            "site_id": decision.site_id,
            "device_id": decision.device_id,
            "zone_id": decision.zone_id,
            "severity": decision.severity,
            "state": "active",
            "title_zh": rule.title.zh if rule is not None else decision.rule_id,
            "title_en": rule.title.en if rule is not None else decision.rule_id,
            "count": 1,
            "first_seen_ms": at,
            "last_seen_ms": at,
            "condition_active": True,
            "escalate_due_ms": tx.now_ms + round(delay * 1000) if delay is not None else None,
            "escalation_level": 0,
            "flapping": False,
            "detail": decision.detail,
            "updated_ms": tx.now_ms,
        }
        connection = _core(session)
        alert = Alert(**connection.execute(self._upsert(connection), row).one()._mapping)
        held = session.identity_map.get(session.identity_key(Alert, alert.id))
        if held is not None:
            session.expire(held)  # loaded earlier in this transaction: now stale
        if alert.count == 1:
            self._new(session, alert, tx)
        elif not alert.condition_active or (
            SEVERITY_RANK[decision.severity] > SEVERITY_RANK[alert.severity]
        ):
            self._raise_again(session, decision, tx, session.get_one(Alert, alert.id))
        else:
            tx.changes.append(_repeat(alert, tx.now_ms))

    def _raise_again(self, session: Session, decision: Raise, tx: _Tx, alert: Alert) -> None:
        """An open alert whose condition came back (under a shelf or flapping) or grew more
        severe."""
        reactivated = not alert.condition_active
        if reactivated:
            before = display_state(alert)
            alert.condition_active = True
            alert.cleared_ms = None
            why = "flapping" if alert.flapping else "shelved"
            self._journal(
                session, alert, tx, "reactivated", before, False, f"condition back ({why})"
            )
        if SEVERITY_RANK[decision.severity] > SEVERITY_RANK[alert.severity]:
            self._upgrade(session, alert, decision.severity, tx)

    def _upsert(self, connection: Connection) -> Any:
        """INSERT ... ON CONFLICT (open_key) DO UPDATE count + 1 ... RETURNING the alert:
        atomic on both databases, so racing raises make one alert; built once per dialect."""
        name = connection.dialect.name
        if name not in self._upserts:
            dialect = postgresql if name == "postgresql" else sqlite
            insert = dialect.insert(ALERTS)
            self._upserts[name] = insert.on_conflict_do_update(
                index_elements=[ALERTS.c.open_key],
                set_={
                    "count": ALERTS.c.count + 1,
                    "last_seen_ms": case(
                        (
                            ALERTS.c.last_seen_ms > insert.excluded.last_seen_ms,
                            ALERTS.c.last_seen_ms,
                        ),
                        else_=insert.excluded.last_seen_ms,
                    ),
                    "detail": insert.excluded.detail,
                    "zone_id": insert.excluded.zone_id,
                    "updated_ms": insert.excluded.updated_ms,
                },
            ).returning(*ALERTS.c)
        return self._upserts[name]

    def _new(self, session: Session, alert: Alert, tx: _Tx) -> None:
        """Journal a raised alert; mark it flapping if it was raised and cleared too often."""
        connection = _core(session)
        flapping = self.rules.flapping(alert.rule_id)
        since = tx.now_ms - round(flapping.window * 1000)
        recent = connection.scalar(
            RECENTLY_CLEARED, {"rule_id": alert.rule_id, "subject": alert.subject, "since": since}
        )
        note = None
        if (recent or 0) + 1 >= flapping.count:
            connection.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(flapping=True))
            alert.flapping = True
            note = (
                f"flapping: raised {(recent or 0) + 1} times within {flapping.window:g} s; "
                "held open until it stays clear"
            )
        self._journal(session, alert, tx, "raised", None, True, note, alert.detail)

    def _upgrade(self, session: Session, alert: Alert, severity: str, tx: _Tx) -> None:
        before = display_state(alert)
        note = f"severity {alert.severity} → {severity}"
        alert.severity = severity
        if alert.state == "acknowledged":
            alert.state = "active"
        self._arm_escalation(alert, tx.now_ms)
        quiet = alert.flapping or alert.shelved_until_ms is not None
        self._journal(session, alert, tx, "severity", before, not quiet, note, alert.detail)

    def _clear(self, session: Session, decision: Clear, tx: _Tx) -> None:
        alert = self._locked(
            session, Alert.open_key == open_key(decision.rule_id, decision.subject)
        )
        if alert is None or not alert.condition_active:
            return
        if alert.flapping or alert.shelved_until_ms is not None:
            before = display_state(alert)
            alert.condition_active = False
            alert.cleared_ms = decision.at_ms
            why = "flapping" if alert.flapping else "shelved"
            note = f"{decision.reason}; held open ({why})"
            self._journal(session, alert, tx, "cleared", before, False, note)
            return
        self._resolve(session, alert, tx, SYSTEM, decision.reason)

    # ---- the clock -------------------------------------------------------------------------

    def housekeeping(self, now: int | None = None) -> list[AlertChange]:
        """Expire shelves, escalate unacknowledged alerts, settle flapping ones that stayed
        clear. Looks first without locking; opens a write transaction only when work is due."""
        at = self.clock() if now is None else now
        due = self._due_filter(at)
        with self.reading() as session:
            if session.scalar(select(Alert.id).where(due).limit(1)) is None:
                return []

        def work(session: Session, tx: _Tx) -> list[AlertChange]:
            tx.now_ms = at
            rows = session.scalars(select(Alert).where(due).order_by(Alert.id).with_for_update())
            for alert in list(rows):
                if alert.shelved_until_ms is not None and alert.shelved_until_ms <= at:
                    self._unshelve(session, alert, tx, SYSTEM, "shelve expired")
                if alert.state == "resolved":
                    continue
                if (
                    alert.escalate_due_ms is not None
                    and alert.escalate_due_ms <= at
                    and alert.state == "active"
                    and alert.shelved_until_ms is None
                ):
                    self._escalate(session, alert, tx)
                window = round(self.rules.flapping(alert.rule_id).window * 1000)
                if (
                    alert.flapping
                    and not alert.condition_active
                    and alert.cleared_ms is not None
                    and alert.cleared_ms <= at - window
                    and alert.shelved_until_ms is None
                ):
                    self._resolve(
                        session, alert, tx, SYSTEM, "condition stayed clear; flapping ended"
                    )
            return tx.changes

        return list(self._transaction(work))

    def _due_filter(self, at: int) -> Any:
        windows = {round(f.window * 1000) for f in self._flapping_configs()}
        settle = [Alert.cleared_ms <= at - w for w in windows] or [Alert.cleared_ms <= at]
        return and_(
            Alert.open_key.is_not(None),
            or_(
                Alert.shelved_until_ms <= at,
                Alert.escalate_due_ms <= at,
                and_(Alert.flapping.is_(True), Alert.condition_active.is_(False), or_(*settle)),
            ),
        )

    def _flapping_configs(self) -> list[Any]:
        return [self.rules.defaults.flapping] + [
            r.flapping for r in self.rules.rules if r.flapping is not None
        ]

    def _escalate(self, session: Session, alert: Alert, tx: _Tx) -> None:
        alert.escalation_level += 1
        repeat = self.rules.defaults.escalate_repeat
        alert.escalate_due_ms = tx.now_ms + round(repeat * 1000) if repeat else None
        note = f"not acknowledged: escalation level {alert.escalation_level}"
        self._journal(session, alert, tx, "escalated", "active", True, note)

    def _arm_escalation(self, alert: Alert, at: int) -> None:
        delay = self.rules.escalate_after_s(alert.rule_id, alert.severity)
        if delay is None or alert.state != "active" or alert.shelved_until_ms is not None:
            alert.escalate_due_ms = None
        elif alert.escalate_due_ms is None:
            alert.escalate_due_ms = at + round(delay * 1000)

    # ---- people ----------------------------------------------------------------------------

    def acknowledge(self, alert_id: int, actor: str, note: str | None = None) -> dict[str, Any]:
        def work(session: Session, tx: _Tx) -> dict[str, Any]:
            alert = self._get_locked(session, alert_id)
            if alert.state != "active":
                raise AlertConflict(f"alert {alert_id} is {alert.state}, not active")
            before = display_state(alert)
            alert.state = "acknowledged"
            alert.acked_by = actor
            alert.acked_ms = tx.now_ms
            alert.escalate_due_ms = None
            self._journal(session, alert, tx, "acknowledged", before, True, note, actor=actor)
            return public(alert)

        return dict(self._transaction(work))

    def resolve(self, alert_id: int, actor: str, note: str) -> dict[str, Any]:
        if not note or not note.strip():
            raise AlertInputError("a note is required to resolve an alert by hand")

        def work(session: Session, tx: _Tx) -> dict[str, Any]:
            alert = self._get_locked(session, alert_id)
            if alert.state == "resolved":
                raise AlertConflict(f"alert {alert_id} is already resolved")
            self._resolve(session, alert, tx, actor, note)
            return public(alert)

        return dict(self._transaction(work))

    def shelve(self, alert_id: int, actor: str, reason: str, until_ms: int) -> dict[str, Any]:
        if not reason or not reason.strip():
            raise AlertInputError("a reason is required to shelve an alert")
        longest = round(self.rules.defaults.max_shelve * 1000)

        def work(session: Session, tx: _Tx) -> dict[str, Any]:
            if until_ms <= tx.now_ms:
                raise AlertInputError("the shelve expiry must be in the future")
            if until_ms > tx.now_ms + longest:
                raise AlertInputError(f"an alert can be shelved for at most {longest // 1000} s")
            alert = self._get_locked(session, alert_id)
            if alert.state == "resolved":
                raise AlertConflict(f"alert {alert_id} is resolved; there is nothing to shelve")
            before = display_state(alert)
            alert.shelved_until_ms = until_ms
            alert.shelved_by = actor
            alert.shelve_reason = reason
            alert.escalate_due_ms = None
            detail = {"until": iso(until_ms), "until_ms": until_ms}
            self._journal(session, alert, tx, "shelved", before, True, reason, detail, actor)
            return public(alert)

        return dict(self._transaction(work))

    def unshelve(self, alert_id: int, actor: str, note: str | None = None) -> dict[str, Any]:
        def work(session: Session, tx: _Tx) -> dict[str, Any]:
            alert = self._get_locked(session, alert_id)
            if alert.shelved_until_ms is None or alert.state == "resolved":
                raise AlertConflict(f"alert {alert_id} is not shelved")
            self._unshelve(session, alert, tx, actor, note)
            return public(alert)

        return dict(self._transaction(work))

    def _unshelve(
        self, session: Session, alert: Alert, tx: _Tx, actor: str, note: str | None
    ) -> None:
        alert.shelved_until_ms = None
        self._arm_escalation(alert, tx.now_ms)
        self._journal(session, alert, tx, "unshelved", "shelved", True, note, actor=actor)
        if not alert.condition_active and not alert.flapping:
            self._resolve(session, alert, tx, SYSTEM, "condition cleared while shelved")

    def _resolve(self, session: Session, alert: Alert, tx: _Tx, actor: str, note: str) -> None:
        before = display_state(alert)
        alert.state = "resolved"
        alert.open_key = None
        alert.resolved_by = actor
        alert.resolved_ms = tx.now_ms
        alert.resolve_note = note
        alert.escalate_due_ms = None
        alert.shelved_until_ms = None
        self._journal(session, alert, tx, "resolved", before, True, note, actor=actor)

    # ---- journal and locking ---------------------------------------------------------------

    def _journal(
        self,
        session: Session,
        alert: Alert,
        tx: _Tx,
        action: str,
        before: str | None,
        notify: bool,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
        actor: str = SYSTEM,
    ) -> None:
        alert.updated_ms = tx.now_ms
        to_state = display_state(alert)
        entry = {
            "alert_id": alert.id,
            "at_ms": tx.now_ms,
            "actor": actor,
            "action": action,
            "from_state": before,
            "to_state": to_state,
            "note": note,
            "detail": detail,
        }
        seq = _core(session).execute(JOURNAL_INSERT, entry).scalar_one()
        change = AlertChange(
            seq, tx.now_ms, action, actor, before, to_state, note, notify, public(alert)
        )
        tx.changes.append(change)

    def _locked(self, session: Session, *where: Any) -> Alert | None:
        return session.scalars(select(Alert).where(*where).with_for_update()).first()

    def _get_locked(self, session: Session, alert_id: int) -> Alert:
        alert = self._locked(session, Alert.id == alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert with id {alert_id}")
        return alert

    # ---- reading ---------------------------------------------------------------------------

    def get(self, alert_id: int) -> dict[str, Any]:
        """The alert with its whole journal, oldest entry first."""
        with self.reading() as session:
            alert = session.get(Alert, alert_id)
            if alert is None:
                raise AlertNotFound(f"no alert with id {alert_id}")
            entries = session.scalars(
                select(AlertJournal)
                .where(AlertJournal.alert_id == alert_id)
                .order_by(AlertJournal.id)
            )
            return public(alert) | {"journal": [journal_public(e) for e in entries]}

    def query(
        self, where: AlertFilter, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of alerts, newest first, and how many match in all."""
        conditions: list[Any] = []
        if where.state == "open":
            conditions.append(Alert.state != "resolved")
        elif where.state == "shelved":
            conditions += [Alert.state != "resolved", Alert.shelved_until_ms.is_not(None)]
        elif where.state in ("active", "acknowledged"):
            conditions += [Alert.state == where.state, Alert.shelved_until_ms.is_(None)]
        elif where.state is not None:
            conditions.append(Alert.state == where.state)
        for column, value in (
            (Alert.severity, where.severity),
            (Alert.zone_id, where.zone),
            (Alert.device_id, where.device),
            (Alert.rule_id, where.rule),
        ):
            if value is not None:
                conditions.append(column == value)
        if where.since_ms is not None:
            conditions.append(or_(Alert.resolved_ms.is_(None), Alert.resolved_ms >= where.since_ms))
        if where.until_ms is not None:
            conditions.append(Alert.first_seen_ms < where.until_ms)
        with self.reading() as session:
            total = session.scalar(select(func.count()).select_from(Alert).where(*conditions))
            rows = session.scalars(
                select(Alert)
                .where(*conditions)
                .order_by(Alert.first_seen_ms.desc(), Alert.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return [public(a) for a in rows], int(total or 0)

    def changes_since(self, seq: int, limit: int = 500) -> list[AlertChange]:
        """Journaled transitions after ``seq``, oldest first, each with the alert as it is
        now (for a live view resuming after a disconnection)."""
        with self.reading() as session:
            rows = session.execute(
                select(AlertJournal, Alert)
                .join(Alert, Alert.id == AlertJournal.alert_id)
                .where(AlertJournal.id > seq)
                .order_by(AlertJournal.id)
                .limit(limit)
            )
            return [
                AlertChange(
                    entry.id,
                    entry.at_ms,
                    entry.action,
                    entry.actor,
                    entry.from_state,
                    entry.to_state,
                    entry.note,
                    entry.action not in QUIET_ACTIONS,
                    public(alert),
                )
                for entry, alert in rows
            ]

    def journal_head(self) -> int:
        """The last journal seq, 0 for none."""
        with self.reading() as session:
            return int(session.scalar(select(func.max(AlertJournal.id))) or 0)

    def open_keys(self) -> list[Key]:
        with self.reading() as session:
            rows = session.execute(
                select(Alert.rule_id, Alert.subject).where(Alert.open_key.is_not(None))
            )
            return [(rule_id, subject) for rule_id, subject in rows]

    def load_timers(self) -> list[Timer]:
        with self.reading() as session:
            return timers.load(session)

    # ---- webhook dead letters --------------------------------------------------------------

    def record_dead_letter(
        self, webhook: str, change: AlertChange, attempts: int, error: str
    ) -> None:
        with self.writing() as session:
            session.add(
                WebhookDeadLetter(
                    webhook=webhook,
                    created_ms=self.clock(),
                    alert_id=change.alert.get("id"),
                    seq=change.seq,
                    attempts=attempts,
                    last_error=error[:2000],
                    payload=change.to_json(),
                )
            )

    def dead_letters(self, webhook: str | None = None) -> list[dict[str, Any]]:
        with self.reading() as session:
            query = select(WebhookDeadLetter).order_by(WebhookDeadLetter.id)
            if webhook is not None:
                query = query.where(WebhookDeadLetter.webhook == webhook)
            return [
                {
                    "id": d.id,
                    "webhook": d.webhook,
                    "created": iso(d.created_ms),
                    "alert_id": d.alert_id,
                    "seq": d.seq,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "payload": d.payload,
                }
                for d in session.scalars(query)
            ]
