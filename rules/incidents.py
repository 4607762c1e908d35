"""The incident store: emergency plans being carried out, their steps, and their record.

An incident is a plan activated for a zone (or for the whole site): automatically, by an alert
of one of the plan's trigger rules, or by a person with a reason. There is one open incident
per (plan, zone, drill or real): later alerts attach to it, and the database enforces it (a
unique ``open_key``, as for alerts), also when two alerts race in two processes. A real alert
never attaches to a drill, so a real fire during a drill opens a real incident.

Steps are copied from the plan at activation, with absolute deadlines (``due_ms``). A step is
``pending`` until a person marks it ``done`` (who, when, note or evidence as the plan asks) or
``skipped`` (who, why). A pending step past its deadline is ``overdue``: found by
``mark_overdue`` on the clock, also after a restart, journaled and notified once, like an
alert escalation. Closing takes a summary; a closed incident is a read-only record
(``get``): triggering alerts, every step with its times, notes and people, and durations.

Drills run the same steps and timers, are marked ``drill`` everywhere, and are counted apart
from real incidents by ``figures``. Every transition appends a journal row and, after the
commit, goes on the bus as an IncidentChange in commit order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.bus import Bus
from core.contract import now_ms
from core.models import DeviceEvent, Site, Zone
from core.models_alerts import Alert, AlertJournal
from core.models_incidents import (
    Incident,
    IncidentAlert,
    IncidentJournal,
    IncidentMark,
    IncidentStep,
)
from rules.alerts import display_state, iso
from rules.alerts import public as alert_public
from rules.journaled import JournaledStore, Tx
from rules.plans import Plan, PlanSet, fill, role_title

log = logging.getLogger(__name__)
SYSTEM = "system"
MAX_TEXT = 2000
ALERTS_MARK = "alerts"
TRIGGER_ACTIONS = ("raised", "severity")
"""Alert transitions that may start a plan: a new alert, or one whose severity went up."""
DRILL_SLACK_MS = 2000
JOURNAL_CHANNEL = "parkguard_incident_journal"
"""The name a core.journal.JournalBus of the incident journal notifies and locks by."""


class IncidentError(Exception):
    """A request the store refuses; the message is one sentence for the person asking."""


class IncidentNotFound(IncidentError):
    pass


class IncidentConflict(IncidentError):
    """The incident or step is not in a state that allows this; nothing was changed."""


class IncidentInputError(IncidentError):
    """A missing or impossible argument (no reason, unknown zone...)."""


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """One incident or step transition, as fanned out after its commit."""

    seq: int
    """The journal row's id (also the SSE event id)."""
    at_ms: int
    action: str
    """activated, alert_attached, step_done, step_skipped, step_overdue, closed."""
    actor: str
    from_state: str | None
    to_state: str
    note: str | None
    incident: dict[str, Any]
    step: dict[str, Any] | None = None

    @property
    def site(self) -> str:
        return str(self.incident["site"])

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "incident",
            "seq": self.seq,
            "at": iso(self.at_ms),
            "at_ms": self.at_ms,
            "action": self.action,
            "actor": self.actor,
            "from": self.from_state,
            "to": self.to_state,
            "note": self.note,
            "drill": self.incident["drill"],
            "incident": self.incident,
            "step": self.step,
        }


@dataclass(slots=True)
class IncidentFilter:
    state: str | None = None
    """open or closed."""
    plan: str | None = None
    zone: str | None = None
    site: str | None = None
    drill: bool | None = None
    since_ms: int | None = None
    """Incidents still open at or after this time (closed before it are left out)."""
    until_ms: int | None = None
    """Incidents activated before this time."""


@dataclass(frozen=True, slots=True)
class Place:
    site_id: str
    site_name: tuple[str, str]
    zone_id: str | None
    zone_name: tuple[str, str] | None

    @property
    def subject(self) -> str:
        return f"zone:{self.zone_id}" if self.zone_id else f"site:{self.site_id}"


_Tx = Tx[IncidentChange]


def open_key(plan_id: str, subject: str, drill: bool) -> str:
    return f"{plan_id}|{subject}|{'drill' if drill else 'real'}"


# ---- what the API, SSE, MQTT and webhooks show ----------------------------------------------


def step_public(step: IncidentStep, activated_ms: int, now: int) -> dict[str, Any]:
    acted = step.acted_ms
    finished = step.state != "pending"
    return {
        "id": step.step_id,
        "position": step.position,
        "role": step.role,
        "role_title": role_title(step.role),
        "text": {"zh": step.text_zh, "en": step.text_en},
        "requires": step.requires,
        "deadline_s": step.deadline_ms / 1000,
        "due": iso(step.due_ms),
        "due_ms": step.due_ms,
        "state": step.state,
        "overdue": not finished and step.due_ms <= now,
        "overdue_at": iso(step.overdue_ms),
        "late": acted is not None and acted > step.due_ms,
        "by": step.actor,
        "at": iso(acted),
        "at_ms": acted,
        "took_s": (acted - activated_ms) / 1000 if acted is not None else None,
        "note": step.note,
        "evidence": step.evidence,
    }


def public(incident: Incident, counts: dict[str, int] | None, now: int) -> dict[str, Any]:
    """The incident as lists, SSE, MQTT and webhooks show it (without its steps)."""
    counts = counts or {}
    end = incident.closed_ms if incident.closed_ms is not None else now
    zone = (
        {"zh": incident.zone_name_zh, "en": incident.zone_name_en}
        if incident.zone_name_zh is not None and incident.zone_name_en is not None
        else None
    )
    return {
        "id": incident.id,
        "plan": incident.plan_id,
        "type": incident.plan_type,
        "level": incident.plan_level,
        "title": {"zh": incident.title_zh, "en": incident.title_en},
        "severity": incident.severity,
        "site": incident.site_id,
        "zone": incident.zone_id,
        "zone_name": zone,
        "drill": incident.drill,
        "state": incident.state,
        "trigger": incident.trigger,
        "reason": incident.reason,
        "activated": {"by": incident.activated_by, "at": iso(incident.activated_ms)},
        "activated_ms": incident.activated_ms,
        "closed": (
            {"by": incident.closed_by, "at": iso(incident.closed_ms), "summary": incident.summary}
            if incident.closed_ms is not None
            else None
        ),
        "closed_ms": incident.closed_ms,
        "duration_s": max(0, end - incident.activated_ms) / 1000,
        "progress": {
            "total": counts.get("total", 0),
            "pending": counts.get("pending", 0),
            "overdue": counts.get("overdue", 0),
            "done": counts.get("done", 0),
            "skipped": counts.get("skipped", 0),
        },
        "alert_count": counts.get("alerts", 0),
        "next_due": iso(counts.get("next_due")),
    }


def journal_public(entry: IncidentJournal) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at_ms),
        "at_ms": entry.at_ms,
        "actor": entry.actor,
        "action": entry.action,
        "step": entry.step_id,
        "from": entry.from_state,
        "to": entry.to_state,
        "note": entry.note,
        "detail": entry.detail,
    }


def _counts(steps: Sequence[IncidentStep], alerts: int, now: int) -> dict[str, Any]:
    pending = [s for s in steps if s.state == "pending"]
    return {
        "total": len(steps),
        "pending": len(pending),
        "overdue": sum(1 for s in pending if s.due_ms <= now),
        "done": sum(1 for s in steps if s.state == "done"),
        "skipped": sum(1 for s in steps if s.state == "skipped"),
        "alerts": alerts,
        "next_due": min((s.due_ms for s in pending), default=None),
    }


class IncidentStore(JournaledStore[IncidentChange]):
    """Incidents in the relational store. Construct, ``open()``, use from any thread,
    ``close()``. Writes are serialised in this process so that changes reach the bus in
    commit order; across processes the unique ``open_key`` keeps one open incident per
    (plan, zone, drill or real)."""

    def __init__(
        self,
        url: str,
        plans: PlanSet,
        bus: Bus[IncidentChange] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(url, bus, clock)
        self.plans = plans

    # ---- activation ------------------------------------------------------------------------

    def activate(
        self,
        plan_id: str,
        actor: str,
        reason: str,
        *,
        zone: str | None = None,
        site: str | None = None,
        drill: bool = False,
    ) -> dict[str, Any]:
        """A person starts a plan, with a reason, for a zone (or the whole site). Refused
        when the same plan is already open there (IncidentConflict names it)."""
        plan = self.plans.by_id.get(plan_id)
        if plan is None:
            raise IncidentNotFound(f"no plan with id {plan_id!r}")
        if not reason or not reason.strip():
            raise IncidentInputError("a reason is required to start a plan by hand")

        def work(session: Session, tx: _Tx) -> int:
            place = self._place(session, zone, site)
            incident, created = self._open(
                session, tx, plan, place, drill, "manual", actor, reason[:MAX_TEXT], tx.now_ms
            )
            if not created:
                where = f"zone {place.zone_id}" if place.zone_id else f"site {place.site_id}"
                kind = "drill" if drill else "incident"
                raise IncidentConflict(
                    f"{kind} {incident.id} of plan {plan.id!r} is already open for {where}"
                )
            return incident.id

        return self.get(int(self._transaction(work)))

    def activate_for_alert(
        self, alert: dict[str, Any], at_ms: int, drill: bool = False
    ) -> list[int]:
        """Start (or join) every plan this alert triggers, as of ``at_ms``; the incidents'
        ids. An alert joins a plan's incidents once as a drill and once for real: handling
        it again (a repeat, a replay after a restart) changes nothing, and looks without
        writing first."""
        plans = self.plans.for_alert(str(alert["rule"]), str(alert["severity"]))
        if not plans:
            return []
        with self.reading() as session:
            plans = [p for p in plans if not self._joined(session, alert, p, drill)]
        if not plans:
            return []

        def work(session: Session, tx: _Tx) -> list[int]:
            place = self._place_of_alert(session, alert)
            touched: list[int] = []
            for plan in plans:
                if self._joined(session, alert, plan, drill):
                    continue
                incident, created = self._open(
                    session, tx, plan, place, drill, "alert", SYSTEM, None, at_ms, alert
                )
                if not created:
                    self._attach(session, tx, incident, alert)
                touched.append(incident.id)
            return touched

        return list(self._transaction(work))

    @staticmethod
    def _joined(session: Session, alert: dict[str, Any], plan: Plan, drill: bool) -> bool:
        """Whether the alert already joined an incident (open or closed) of the plan, of
        this kind (drill or real)."""
        known = session.scalar(
            select(IncidentAlert.incident_id)
            .join(Incident, Incident.id == IncidentAlert.incident_id)
            .where(
                IncidentAlert.alert_id == alert["id"],
                Incident.plan_id == plan.id,
                Incident.drill.is_(drill),
            )
            .limit(1)
        )
        return known is not None

    def _open(
        self,
        session: Session,
        tx: _Tx,
        plan: Plan,
        place: Place,
        drill: bool,
        trigger: str,
        actor: str,
        reason: str | None,
        at_ms: int,
        alert: dict[str, Any] | None = None,
    ) -> tuple[Incident, bool]:
        """The open incident of (plan, place, drill): inserted with its steps, or the one
        already there (locked). Atomic on both databases (INSERT ... ON CONFLICT DO NOTHING)."""
        key = open_key(plan.id, place.subject, drill)
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        row = {
            "open_key": key,
            "plan_id": plan.id,
            "plan_type": plan.type,
            "plan_level": plan.level,
            "title_zh": plan.title.zh,
            "title_en": plan.title.en,
            "severity": plan.severity,
            "site_id": place.site_id,
            "zone_id": place.zone_id,
            "zone_name_zh": place.zone_name[0] if place.zone_name else None,
            "zone_name_en": place.zone_name[1] if place.zone_name else None,
            "drill": drill,
            "state": "open",
            "trigger": trigger,
            "reason": reason,
            "activated_by": actor,
            "activated_ms": at_ms,
            "updated_ms": tx.now_ms,
        }
        for _attempt in range(5):
            insert = dialect.insert(Incident).values(row)
            new_id = session.execute(
                insert.on_conflict_do_nothing(index_elements=[Incident.open_key]).returning(
                    Incident.id
                )
            ).scalar()
            if new_id is not None:
                break
            existing = session.scalars(
                select(Incident).where(Incident.open_key == key).with_for_update()
            ).first()
            if existing is not None:
                return existing, False
            # closed between our insert and our look: try again
        else:  # pragma: no cover - five closings racing one activation
            raise IncidentConflict(f"plan {plan.id!r} could not be started; try again")
        incident = session.get(Incident, new_id)
        assert incident is not None
        zone_zh, zone_en = place.zone_name or place.site_name
        for position, step in enumerate(plan.steps, start=1):
            deadline = round(step.deadline * 1000)
            session.add(
                IncidentStep(
                    incident_id=incident.id,
                    position=position,
                    step_id=step.id,
                    role=step.role,
                    text_zh=fill(step.text.zh, zone_zh, place.site_name[0]),
                    text_en=fill(step.text.en, zone_en, place.site_name[1]),
                    requires=step.requires,
                    deadline_ms=deadline,
                    due_ms=at_ms + deadline,
                    state="pending",
                )
            )
        detail: dict[str, Any] = {"trigger": trigger, "drill": drill, "steps": len(plan.steps)}
        note = reason
        if alert is not None:
            self._attach_row(session, tx, incident, alert)
            detail["alert"] = _alert_ref(alert)
            note = f"started by alert #{alert['id']} ({alert['rule']})"
        self._journal(session, incident, tx, "activated", None, "open", note, detail, actor)
        return incident, True

    def _attach(self, session: Session, tx: _Tx, incident: Incident, alert: dict[str, Any]) -> None:
        if self._attach_row(session, tx, incident, alert):
            note = f"alert #{alert['id']} ({alert['rule']}) attached"
            detail = {"alert": _alert_ref(alert)}
            self._journal(session, incident, tx, "alert_attached", "open", "open", note, detail)

    def _attach_row(
        self, session: Session, tx: _Tx, incident: Incident, alert: dict[str, Any]
    ) -> bool:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        title = alert.get("title") or {}
        insert = dialect.insert(IncidentAlert).values(
            incident_id=incident.id,
            alert_id=int(alert["id"]),
            rule_id=str(alert["rule"]),
            severity=str(alert["severity"]),
            title_zh=str(title.get("zh", alert["rule"]))[:200],
            title_en=str(title.get("en", alert["rule"]))[:200],
            device_id=alert.get("device"),
            first_seen_ms=int(alert.get("first_seen_ms") or tx.now_ms),
            attached_ms=tx.now_ms,
        )
        added = insert.on_conflict_do_nothing().returning(IncidentAlert.alert_id)
        return session.execute(added).scalar() is not None

    def _place(self, session: Session, zone_id: str | None, site_id: str | None) -> Place:
        if zone_id is not None:
            zone = session.get(Zone, zone_id)
            if zone is None:
                raise IncidentInputError(f"no zone {zone_id[:64]!r} in the site register")
            if site_id is not None and site_id != zone.site_id:
                raise IncidentInputError(f"zone {zone_id!r} is not in site {site_id[:64]!r}")
            site = session.get(Site, zone.site_id)
            site_name = (site.name_zh, site.name_en) if site is not None else (zone.site_id,) * 2
            return Place(zone.site_id, site_name, zone.id, (zone.name_zh, zone.name_en))
        if site_id is not None:
            site = session.get(Site, site_id)
            if site is None:
                raise IncidentInputError(f"no site {site_id[:64]!r} in the register")
        else:
            sites = session.scalars(select(Site).limit(2)).all()
            if len(sites) != 1:
                raise IncidentInputError("give the zone (or the site) the plan is started for")
            site = sites[0]
        return Place(site.id, (site.name_zh, site.name_en), None, None)

    def _place_of_alert(self, session: Session, alert: dict[str, Any]) -> Place:
        site_id = str(alert["site"])
        site = session.get(Site, site_id)
        site_name = (site.name_zh, site.name_en) if site is not None else (site_id, site_id)
        zone_id = alert.get("zone")
        if zone_id is None:
            return Place(site_id, site_name, None, None)
        zone = session.get(Zone, zone_id)
        names = (zone.name_zh, zone.name_en) if zone is not None else (zone_id, zone_id)
        return Place(site_id, site_name, str(zone_id), names)

    # ---- people ----------------------------------------------------------------------------

    def complete_step(
        self,
        incident_id: int,
        step_id: str,
        actor: str,
        note: str | None = None,
        evidence: str | None = None,
    ) -> dict[str, Any]:
        """Mark a pending step done, with the note or evidence its plan asks for."""
        note, evidence = _clean(note), _clean(evidence)

        def work(session: Session, tx: _Tx) -> None:
            incident, step = self._pending_step(session, incident_id, step_id)
            if step.requires == "note" and note is None:
                raise IncidentInputError(f"step {step_id!r} needs a note to be marked done")
            if step.requires == "evidence" and evidence is None:
                raise IncidentInputError(f"step {step_id!r} needs evidence to be marked done")
            step.state, step.actor, step.acted_ms = "done", actor, tx.now_ms
            step.note, step.evidence = note, evidence
            detail: dict[str, Any] = {"late_s": max(0, tx.now_ms - step.due_ms) / 1000}
            if evidence is not None:
                detail["evidence"] = evidence
            self._journal(
                session, incident, tx, "step_done", "pending", "done", note, detail, actor, step
            )

        self._transaction(work)
        return self.get(incident_id)

    def skip_step(self, incident_id: int, step_id: str, actor: str, reason: str) -> dict[str, Any]:
        """Skip a pending step, with a required reason."""
        why = _clean(reason)
        if why is None:
            raise IncidentInputError("a reason is required to skip a step")

        def work(session: Session, tx: _Tx) -> None:
            incident, step = self._pending_step(session, incident_id, step_id)
            step.state, step.actor, step.acted_ms, step.note = "skipped", actor, tx.now_ms, why
            self._journal(
                session, incident, tx, "step_skipped", "pending", "skipped", why, None, actor, step
            )

        self._transaction(work)
        return self.get(incident_id)

    def close_incident(
        self, incident_id: int, actor: str, summary: str, skip_pending: bool = False
    ) -> dict[str, Any]:
        """Close with a summary. Pending steps must be done or skipped first, unless
        ``skip_pending``: then each is skipped by ``actor`` with the summary as the reason."""
        text = _clean(summary)
        if text is None:
            raise IncidentInputError("a summary is required to close an incident")

        def work(session: Session, tx: _Tx) -> None:
            incident = self._get_locked(session, incident_id)
            if incident.state == "closed":
                raise IncidentConflict(f"incident {incident_id} is already closed")
            steps = self._steps(session, incident_id, lock=True)
            pending = [s for s in steps if s.state == "pending"]
            if pending and not skip_pending:
                names = ", ".join(s.step_id for s in pending[:10])
                raise IncidentConflict(
                    f"incident {incident_id} has {len(pending)} pending step(s) ({names}): "
                    "complete or skip them, or close with skip_pending"
                )
            for step in pending:
                why = f"not done when the incident was closed: {text}"[:MAX_TEXT]
                step.state, step.actor, step.acted_ms, step.note = "skipped", actor, tx.now_ms, why
                self._journal(
                    session,
                    incident,
                    tx,
                    "step_skipped",
                    "pending",
                    "skipped",
                    why,
                    None,
                    actor,
                    step,
                )
            incident.state = "closed"
            incident.open_key = None
            incident.closed_by, incident.closed_ms, incident.summary = actor, tx.now_ms, text
            detail = {"duration_s": (tx.now_ms - incident.activated_ms) / 1000}
            self._journal(session, incident, tx, "closed", "open", "closed", text, detail, actor)

        self._transaction(work)
        return self.get(incident_id)

    def _pending_step(
        self, session: Session, incident_id: int, step_id: str
    ) -> tuple[Incident, IncidentStep]:
        incident = self._get_locked(session, incident_id)
        if incident.state == "closed":
            raise IncidentConflict(f"incident {incident_id} is closed; its record is read-only")
        step = session.scalars(
            select(IncidentStep)
            .where(IncidentStep.incident_id == incident_id, IncidentStep.step_id == step_id)
            .with_for_update()
        ).first()
        if step is None:
            raise IncidentNotFound(f"incident {incident_id} has no step {step_id[:64]!r}")
        if step.state != "pending":
            raise IncidentConflict(
                f"step {step_id!r} of incident {incident_id} is already {step.state}"
            )
        return incident, step

    # ---- the clock -------------------------------------------------------------------------

    def mark_overdue(self, now: int | None = None) -> list[IncidentChange]:
        """Journal and notify, once each, the pending steps of open incidents that are past
        their deadline. Looks first without locking; writes only when something is due."""
        at = self.clock() if now is None else now
        due = and_(
            IncidentStep.state == "pending",
            IncidentStep.due_ms <= at,
            IncidentStep.overdue_ms.is_(None),
            Incident.state == "open",
        )
        on = Incident.id == IncidentStep.incident_id
        with self.reading() as session:
            if session.scalar(select(IncidentStep.id).join(Incident, on).where(due)) is None:
                return []

        def work(session: Session, tx: _Tx) -> list[IncidentChange]:
            tx.now_ms = at
            rows = session.execute(
                select(IncidentStep, Incident)
                .join(Incident, on)
                .where(due)
                .order_by(IncidentStep.due_ms, IncidentStep.id)
                .with_for_update()
            ).all()
            for step, incident in rows:
                step.overdue_ms = at
                late = (at - step.due_ms) / 1000
                note = f"step {step.step_id!r} ({step.role}) not done {late:g} s after its deadline"
                detail = {"due": iso(step.due_ms), "due_ms": step.due_ms, "late_s": late}
                self._journal(
                    session,
                    incident,
                    tx,
                    "step_overdue",
                    "pending",
                    "overdue",
                    note,
                    detail,
                    SYSTEM,
                    step,
                )
            return tx.changes

        return list(self._transaction(work))

    # ---- alerts: the watermark and drills --------------------------------------------------

    def watermark(self) -> int | None:
        """The last alert-journal id handled, or None before the first start."""
        with self.reading() as session:
            return session.scalar(
                select(IncidentMark.value).where(IncidentMark.name == ALERTS_MARK)
            )

    def set_watermark(self, seq: int) -> None:
        self._transaction(lambda session, _tx: self._advance_mark(session, seq))

    def _advance_mark(self, session: Session, seq: int) -> None:
        is_pg = session.get_bind().dialect.name == "postgresql"
        insert = (postgresql if is_pg else sqlite).insert(IncidentMark)
        greatest = func.greatest if is_pg else func.max
        session.execute(
            insert.values(name=ALERTS_MARK, value=seq).on_conflict_do_update(
                index_elements=[IncidentMark.name],
                set_={"value": greatest(IncidentMark.value, insert.excluded.value)},
            )
        )

    def alert_journal_head(self) -> int:
        with self.reading() as session:
            return int(session.scalar(select(func.max(AlertJournal.id))) or 0)

    def missed_alert_changes(
        self, after: int, rules: Sequence[str], limit: int = 1000
    ) -> list[tuple[int, int, dict[str, Any]]]:
        """Alert transitions after ``after`` that may start a plan: (seq, at_ms, alert)."""
        if not rules:
            return []
        with self.reading() as session:
            rows = session.execute(
                select(AlertJournal.id, AlertJournal.at_ms, Alert)
                .join(Alert, Alert.id == AlertJournal.alert_id)
                .where(
                    AlertJournal.id > after,
                    AlertJournal.action.in_(TRIGGER_ACTIONS),
                    Alert.rule_id.in_(rules),
                )
                .order_by(AlertJournal.id)
                .limit(limit)
            ).all()
            return [(seq, at, alert_public(alert)) for seq, at, alert in rows]

    def open_trigger_alerts(self, rules: Sequence[str]) -> list[dict[str, Any]]:
        """Open alerts of these rules (the first start: what is burning now)."""
        if not rules:
            return []
        with self.reading() as session:
            rows = session.scalars(
                select(Alert)
                .where(Alert.open_key.is_not(None), Alert.rule_id.in_(rules))
                .order_by(Alert.id)
            )
            return [alert_public(a) for a in rows]

    def is_drill(self, alert: dict[str, Any], events: Sequence[str] = ()) -> bool:
        """Whether an alert came from a drill: it says so, or every device event behind it
        (an event alert's latest event; a correlation's events in the window before its
        latest firing) is marked ``{"drill": true}`` (a simulator scenario played with
        ``--drill``). One real event makes it real."""
        detail = alert.get("detail") or {}
        if detail.get("drill") is True:
            return True
        with self.reading() as session:
            if alert.get("device") and "seq" in detail and "ts_ms" in detail:
                found = session.scalars(
                    select(DeviceEvent.detail).where(
                        DeviceEvent.device_id == alert["device"],
                        DeviceEvent.ts_ms == detail["ts_ms"],
                        DeviceEvent.seq == detail["seq"],
                    )
                ).all()
            elif isinstance(detail.get("devices"), list) and detail["devices"]:
                seen = int(alert.get("last_seen_ms") or alert.get("first_seen_ms") or 0)
                window = round(float(detail.get("window_s", 120)) * 1000)
                names = set(events) | ({str(detail["event"])} if "event" in detail else set())
                found = session.scalars(
                    select(DeviceEvent.detail).where(
                        DeviceEvent.device_id.in_([str(d) for d in detail["devices"]]),
                        DeviceEvent.received_ms >= seen - window - DRILL_SLACK_MS,
                        DeviceEvent.received_ms <= seen + DRILL_SLACK_MS,
                        DeviceEvent.event.in_(sorted(names)),
                    )
                ).all()
            else:
                return False
        return bool(found) and all(isinstance(d, dict) and d.get("drill") is True for d in found)

    # ---- journal and locking ---------------------------------------------------------------

    def _journal(
        self,
        session: Session,
        incident: Incident,
        tx: _Tx,
        action: str,
        before: str | None,
        after: str,
        note: str | None = None,
        detail: dict[str, Any] | None = None,
        actor: str = SYSTEM,
        step: IncidentStep | None = None,
    ) -> None:
        incident.updated_ms = tx.now_ms
        entry = IncidentJournal(
            incident_id=incident.id,
            at_ms=tx.now_ms,
            actor=actor,
            action=action,
            step_id=step.step_id if step is not None else None,
            from_state=before,
            to_state=after,
            note=note,
            detail=detail,
        )
        session.add(entry)
        session.flush()
        steps = self._steps(session, incident.id)
        alerts = session.scalar(
            select(func.count())
            .select_from(IncidentAlert)
            .where(IncidentAlert.incident_id == incident.id)
        )
        counts = _counts(steps, int(alerts or 0), tx.now_ms)
        tx.changes.append(
            IncidentChange(
                entry.id,
                tx.now_ms,
                action,
                actor,
                before,
                after,
                note,
                public(incident, counts, tx.now_ms),
                step_public(step, incident.activated_ms, tx.now_ms) if step is not None else None,
            )
        )

    def _get_locked(self, session: Session, incident_id: int) -> Incident:
        incident = session.scalars(
            select(Incident).where(Incident.id == incident_id).with_for_update()
        ).first()
        if incident is None:
            raise IncidentNotFound(f"no incident with id {incident_id}")
        return incident

    @staticmethod
    def _steps(session: Session, incident_id: int, lock: bool = False) -> list[IncidentStep]:
        query = (
            select(IncidentStep)
            .where(IncidentStep.incident_id == incident_id)
            .order_by(IncidentStep.position)
        )
        return list(session.scalars(query.with_for_update() if lock else query))

    # ---- reading ---------------------------------------------------------------------------

    def get(self, incident_id: int, now: int | None = None) -> dict[str, Any]:
        """The incident with its steps, triggering alerts, timeline and durations."""
        at = self.clock() if now is None else now
        with self.reading() as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                raise IncidentNotFound(f"no incident with id {incident_id}")
            steps = self._steps(session, incident_id)
            attached = session.execute(
                select(IncidentAlert, Alert)
                .outerjoin(Alert, Alert.id == IncidentAlert.alert_id)
                .where(IncidentAlert.incident_id == incident_id)
                .order_by(IncidentAlert.attached_ms, IncidentAlert.alert_id)
            ).all()
            entries = session.scalars(
                select(IncidentJournal)
                .where(IncidentJournal.incident_id == incident_id)
                .order_by(IncidentJournal.id)
            ).all()
            end = incident.closed_ms if incident.closed_ms is not None else at
            return public(incident, _counts(steps, len(attached), at), at) | {
                "steps": [step_public(s, incident.activated_ms, at) for s in steps],
                "alerts": [_attached_public(link, alert) for link, alert in attached],
                "timeline": [journal_public(e) for e in entries],
                "durations": _durations(incident.activated_ms, end, steps, at),
            }

    def query(
        self, where: IncidentFilter, limit: int = 50, offset: int = 0, now: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of incidents, newest first, and how many match in all."""
        at = self.clock() if now is None else now
        conditions: list[Any] = []
        for column, value in (
            (Incident.state, where.state),
            (Incident.plan_id, where.plan),
            (Incident.zone_id, where.zone),
            (Incident.site_id, where.site),
            (Incident.drill, where.drill),
        ):
            if value is not None:
                conditions.append(column == value)
        if where.since_ms is not None:
            conditions.append(
                or_(Incident.closed_ms.is_(None), Incident.closed_ms >= where.since_ms)
            )
        if where.until_ms is not None:
            conditions.append(Incident.activated_ms < where.until_ms)
        with self.reading() as session:
            total = session.scalar(select(func.count()).select_from(Incident).where(*conditions))
            incidents = session.scalars(
                select(Incident)
                .where(*conditions)
                .order_by(Incident.activated_ms.desc(), Incident.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            ids = [i.id for i in incidents]
            steps: dict[int, list[IncidentStep]] = {i: [] for i in ids}
            alerts: dict[int, int] = {}
            if ids:
                for step in session.scalars(
                    select(IncidentStep).where(IncidentStep.incident_id.in_(ids))
                ):
                    steps[step.incident_id].append(step)
                alerts = {
                    incident_id: int(n)
                    for incident_id, n in session.execute(
                        select(IncidentAlert.incident_id, func.count())
                        .where(IncidentAlert.incident_id.in_(ids))
                        .group_by(IncidentAlert.incident_id)
                    )
                }
            items = [
                public(i, _counts(steps[i.id], alerts.get(i.id, 0), at), at) for i in incidents
            ]
            return items, int(total or 0)

    def changes_since(self, seq: int, limit: int = 500) -> list[IncidentChange]:
        """Journaled transitions after ``seq``, oldest first, each with the incident (and
        step) as they are now (for a live view resuming after a disconnection)."""
        at = self.clock()
        with self.reading() as session:
            rows = session.execute(
                select(IncidentJournal, Incident)
                .join(Incident, Incident.id == IncidentJournal.incident_id)
                .where(IncidentJournal.id > seq)
                .order_by(IncidentJournal.id)
                .limit(limit)
            ).all()
            out = []
            for entry, incident in rows:
                steps = self._steps(session, incident.id)
                step = next((s for s in steps if s.step_id == entry.step_id), None)
                out.append(
                    IncidentChange(
                        entry.id,
                        entry.at_ms,
                        entry.action,
                        entry.actor,
                        entry.from_state,
                        entry.to_state,
                        entry.note,
                        public(incident, _counts(steps, 0, at), at),
                        step_public(step, incident.activated_ms, at) if step else None,
                    )
                )
            return out

    def journal_head(self) -> int:
        """The last incident-journal seq, 0 for none."""
        with self.reading() as session:
            return int(session.scalar(select(func.max(IncidentJournal.id))) or 0)

    # ---- figures ---------------------------------------------------------------------------

    def figures(
        self, since_ms: int | None = None, until_ms: int | None = None, now: int | None = None
    ) -> dict[str, Any]:
        """Incidents activated in [since, until): real ones and drills counted apart (a drill
        never counts as a real incident), with step punctuality, and each plan's drill record
        against its legal frequency."""
        at = self.clock() if now is None else now
        end = until_ms if until_ms is not None else at
        conditions = [Incident.activated_ms < end]
        if since_ms is not None:
            conditions.append(Incident.activated_ms >= since_ms)
        with self.reading() as session:
            incidents = session.scalars(select(Incident).where(*conditions)).all()
            steps: dict[int, list[IncidentStep]] = {i.id: [] for i in incidents}
            if incidents:
                for step in session.scalars(
                    select(IncidentStep).where(IncidentStep.incident_id.in_(list(steps)))
                ):
                    steps[step.incident_id].append(step)
            last_drills = dict(
                session.execute(
                    select(Incident.plan_id, func.max(Incident.activated_ms))
                    .where(Incident.drill.is_(True), Incident.activated_ms < end)
                    .group_by(Incident.plan_id)
                ).all()
            )
        real = [i for i in incidents if not i.drill]
        drills = [i for i in incidents if i.drill]
        return {
            "since": iso(since_ms),
            "until": iso(end),
            "real": _figures(real, steps, at),
            "drills": _figures(drills, steps, at)
            | {
                "items": [
                    {
                        "id": i.id,
                        "plan": i.plan_id,
                        "zone": i.zone_id,
                        "activated": iso(i.activated_ms),
                        "closed": iso(i.closed_ms),
                    }
                    for i in sorted(drills, key=lambda i: i.activated_ms)
                ]
            },
            "drill_record": [
                _drill_record(plan, last_drills.get(plan.id), at) for plan in self.plans.plans
            ],
        }


# ---- helpers --------------------------------------------------------------------------------


def _clean(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    return text.strip()[:MAX_TEXT]


def _alert_ref(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": alert["id"],
        "rule": alert["rule"],
        "severity": alert["severity"],
        "device": alert.get("device"),
        "zone": alert.get("zone"),
    }


def _attached_public(link: IncidentAlert, alert: Alert | None) -> dict[str, Any]:
    return {
        "id": link.alert_id,
        "rule": link.rule_id,
        "severity": alert.severity if alert is not None else link.severity,
        "title": {"zh": link.title_zh, "en": link.title_en},
        "device": link.device_id,
        "first_seen": iso(link.first_seen_ms),
        "attached": iso(link.attached_ms),
        "state": display_state(alert) if alert is not None else None,
    }


def _durations(
    activated_ms: int, end_ms: int, steps: Sequence[IncidentStep], now: int
) -> dict[str, Any]:
    acted = [s.acted_ms for s in steps if s.acted_ms is not None and s.state == "done"]
    figures = _step_figures(steps, now)
    return {
        "total_s": max(0, end_ms - activated_ms) / 1000,
        "first_step_s": (min(acted) - activated_ms) / 1000 if acted else None,
        "last_step_s": (max(acted) - activated_ms) / 1000 if acted else None,
        "on_time": figures["done_on_time"],
        "late": figures["done_late"],
        "punctuality": _ratio(figures),
    }


def _step_figures(steps: Sequence[IncidentStep], now: int) -> dict[str, int]:
    done = [s for s in steps if s.state == "done"]
    on_time = sum(1 for s in done if s.acted_ms is not None and s.acted_ms <= s.due_ms)
    pending = [s for s in steps if s.state == "pending"]
    return {
        "total": len(steps),
        "done": len(done),
        "done_on_time": on_time,
        "done_late": len(done) - on_time,
        "skipped": sum(1 for s in steps if s.state == "skipped"),
        "pending": len(pending),
        "overdue": sum(1 for s in pending if s.due_ms <= now),
    }


def _ratio(figures: dict[str, int]) -> float | None:
    """Punctuality: steps done by their deadline ÷ steps that fell due (done, or pending past
    their deadline); skipped steps are left out."""
    due = figures["done"] + figures["overdue"]
    return round(figures["done_on_time"] / due, 4) if due else None


def _figures(
    incidents: Sequence[Incident], steps: dict[int, list[IncidentStep]], now: int
) -> dict[str, Any]:
    all_steps = [s for i in incidents for s in steps[i.id]]
    figures = _step_figures(all_steps, now)
    closed = [i for i in incidents if i.closed_ms is not None]
    by_plan: dict[str, int] = {}
    for incident in incidents:
        by_plan[incident.plan_id] = by_plan.get(incident.plan_id, 0) + 1
    return {
        "incidents": len(incidents),
        "open": len(incidents) - len(closed),
        "closed": len(closed),
        "by_plan": dict(sorted(by_plan.items())),
        "steps": figures,
        "punctuality": _ratio(figures),
        "mean_duration_s": (
            round(sum((i.closed_ms or 0) - i.activated_ms for i in closed) / len(closed) / 1000, 3)
            if closed
            else None
        ),
    }


def _drill_record(plan: Plan, last_ms: int | None, now: int) -> dict[str, Any]:
    every_ms = round(plan.drill_interval_s * 1000)
    due_ms = last_ms + every_ms if last_ms is not None else None
    return {
        "plan": plan.id,
        "type": plan.type,
        "level": plan.level,
        "every_s": plan.drill_interval_s,
        "last_drill": iso(last_ms),
        "next_due": iso(due_ms),
        "overdue": due_ms is None or due_ms < now,
    }
