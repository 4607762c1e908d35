"""``/api/v1`` maintenance: inspection plans, the crew's inspections, work orders, calendar feed.

The crew's morning view is ``GET /api/v1/inspections?assignee=me&due=today``; their phone
subscribes to ``GET /api/v1/inspections.ics?assignee=<name>`` (a calendar app cannot send
headers). The acting user is the signed-in caller (api.auth).

The maintenance service comes from ``ctx.extras["maintenance"]`` (the wiring puts the running
``MaintenanceService`` there); an API without it builds an unstarted one from the settings.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from starlette.datastructures import UploadFile

from api.deps import ID, CtxDep, CurrentUserName
from api.schemas import ErrorPublic
from api.timefmt import EPOCH, to_rfc3339
from core.db import session_scope
from core.models import Zone
from core.models_maintenance import InspectionPhoto, InspectionTask, WorkOrder
from maintenance.calendar import due_date, tasks_calendar
from maintenance.errors import (
    Conflict,
    MaintenanceError,
    NotFound,
    PhotoRejected,
    PlanError,
)
from maintenance.inspections import (
    Completion,
    TaskFilter,
    complete_task,
    effective_state,
    get_task,
    list_tasks,
)
from maintenance.periods import local_midnight
from maintenance.plans import Assignee, Plan
from maintenance.scheduler import MaintenanceConfig, MaintenanceService
from maintenance.work_orders import (
    WorkOrderFilter,
    close_work_order,
    get_work_order,
    list_work_orders,
    open_work_order,
)

router = APIRouter(prefix="/api/v1", tags=["maintenance"])

PAGE_MAX = 500
OFFSET_MAX = 10_000_000
ICS_MAX = 5000
FORM_OVERHEAD = 64 * 1024
State = Literal["open", "overdue", "done"]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (404, "No such inspection task or work order."),
        (409, "Already completed or closed; nothing was changed."),
        (422, "The request is incomplete or malformed; nothing was stored."),
    )
}


# ---- dependencies -----------------------------------------------------------------------------


def get_maintenance(ctx: CtxDep) -> MaintenanceService:
    service = ctx.extras.get("maintenance")
    if service is None:
        service = MaintenanceService.from_settings(
            ctx.settings,
            engine=ctx.engine,
            sessions=ctx.sessions,
            catalogue=ctx.catalogue,
            config=MaintenanceConfig.from_env(),
        )
        ctx.extras["maintenance"] = service
    assert isinstance(service, MaintenanceService)
    return service


MaintenanceDep = Annotated[MaintenanceService, Depends(get_maintenance)]


UserDep = CurrentUserName
"""The signed-in caller's name (api.auth)."""


def _fail(exc: MaintenanceError) -> NoReturn:
    if isinstance(exc, NotFound):
        raise HTTPException(404, str(exc)) from None
    if isinstance(exc, Conflict):
        raise HTTPException(409, str(exc)) from None
    if isinstance(exc, PhotoRejected):
        raise HTTPException(413 if exc.too_large else 415, str(exc)) from None
    if isinstance(exc, PlanError):
        raise HTTPException(503, f"the inspection plans cannot be used: {exc}") from None
    raise HTTPException(422, str(exc)) from None


# ---- response shapes --------------------------------------------------------------------------


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)


class ChecklistItemPublic(_Public):
    id: str
    """The item's id, the key of its answer."""
    zh: str
    """What to check, in Chinese."""
    en: str
    """What to check, in English."""
    device_types: list[str] | None = None
    """Only for these device types; null: every type of the plan."""


class AssigneePublic(_Public):
    role: str | None
    """The role that does the task, e.g. ``crew``."""
    person: str | None
    """The person who does it (what ``assignee=me`` matches)."""


class StricterPublic(_Public):
    zone_kinds: list[str]
    """In zones of these kinds..."""
    frequency: str
    """...this shorter period applies: ``half_monthly`` or ``cron: 0 8 * * 1``."""


class InspectionPlanPublic(_Public):
    id: str
    """The plan's id."""
    name_zh: str
    """The plan's name in Chinese."""
    name_en: str
    """The plan's name in English."""
    per: str
    """``device``, ``zone`` or ``site``: what one task is about."""
    device_types: list[str]
    """The device types checked (per-device plans)."""
    zone_kinds: list[str]
    """Only devices or zones in zones of these kinds (empty: any)."""
    zones: list[str]
    """Only devices or zones in these zones (empty: any)."""
    frequency: str
    """daily, weekly, half_monthly, monthly, quarterly, yearly or ``cron: <expression>``."""
    stricter: list[StricterPublic]
    """Shorter periods in given zone kinds (GB 50444 §5.2.2)."""
    due_within_hours: int | None
    """Due this long after the period starts; null: at the end of the period."""
    assignee: AssigneePublic
    """Who does the plan's tasks."""
    reference: str | None
    """The clause the plan follows."""
    checklist: list[ChecklistItemPublic]
    """The items every task of the plan answers."""


class ServiceDatesPublic(_Public):
    enabled: bool
    """Whether extinguisher service and scrap tasks are created from the register."""
    lead_days: int
    """Service and scrap tasks appear this many days ahead."""
    assignee: AssigneePublic
    """Who does the service and scrap tasks."""


class InspectionPlansPublic(_Public):
    timezone: str
    """Periods begin at midnight in this zone."""
    plans: list[InspectionPlanPublic]
    """The plans in force, as in the site's inspection-plans.yaml."""
    extinguisher_service: ServiceDatesPublic
    """Service and scrap tasks from the register dates (GB 50444 T.5.3.3, T.5.4.3)."""


class InspectionPublic(_Public):
    id: int
    """The task's id."""
    kind: str
    """``inspection``, ``service`` or ``scrap``."""
    plan_id: str
    """The plan it comes from (``extinguisher-service`` / ``-scrap`` for register dates)."""
    site_id: str
    """The site."""
    subject: str
    """The device, zone or site id the task is about."""
    subject_label: str
    """The subject's label as the register gives it."""
    device_id: str | None
    """The device, for per-device tasks."""
    device_type: str | None
    """The device's type, for per-device tasks."""
    zone_id: str | None
    """The zone the device is in, or the zone checked."""
    title_zh: str
    """The task's title in Chinese."""
    title_en: str
    """The task's title in English."""
    frequency: str
    """The period the task covers: ``monthly``, ``half_monthly``, ``cron: …``, ``service``."""
    period_start: str
    """When its period began (local midnight), RFC 3339 UTC."""
    due_at: str
    """When it is due, RFC 3339 UTC; overdue from then on."""
    due_date: date
    """The park-local day by whose end the task is due."""
    state: State
    """``overdue`` as soon as the due time has passed undone."""
    assignee_role: str | None
    """The role that does it."""
    assignee: str | None
    """The person who does it."""
    checklist: list[dict[str, Any]]
    """The items to answer: ``{id, zh, en}``."""
    detail: dict[str, Any]
    """Reference clause; for service and scrap tasks the agent and the register dates."""
    created_at: str
    """When the task was generated, RFC 3339 UTC."""
    completed_at: str | None
    """When it was completed, RFC 3339 UTC."""
    completed_by: str | None
    """Who completed it."""
    result: str | None
    """``pass`` or ``fail``."""
    answers: dict[str, Any] | None
    """Each checklist item id → ``pass``, ``fail`` or ``na``."""
    note: str | None
    """The inspector's note, verbatim."""
    photo_url: str | None
    """Where the photo taken at the inspection is served."""


class InspectionsPublic(_Public):
    total: int
    """How many match the filters, over all pages."""
    limit: int
    """The page size asked for."""
    offset: int
    """How many matches were skipped before this page."""
    items: list[InspectionPublic]
    """The tasks, soonest due first."""


class WorkOrderPublic(_Public):
    id: int
    """The work order's id."""
    source: str
    """``inspection``, ``alert`` or ``manual``."""
    source_ref: str | None
    """The inspection task id or the alert id it came from."""
    kind: str
    """``inspection``, ``fault``, ``offline``, ``pressure``...: what is broken."""
    site_id: str | None
    """The site of the device."""
    device_id: str | None
    """The device to fix."""
    zone_id: str | None
    """Where it is."""
    title: str
    """What is broken, in one line."""
    description: str
    """The detail: failed checklist items, the inspector's note, the alert."""
    state: Literal["open", "closed"]
    """Open until closed with the fix recorded."""
    opened_at: str
    """When it was opened, RFC 3339 UTC."""
    opened_by: str | None
    """Who opened it (the inspector, for a failed check)."""
    assignee: str | None
    """Who is to fix it."""
    related: list[dict[str, Any]]
    """Later alerts of the same fault on the same device, added to this order."""
    closed_at: str | None
    """When it was closed, RFC 3339 UTC."""
    closed_by: str | None
    """Who closed it."""
    fix: str | None
    """What was done to fix it."""


class WorkOrdersPublic(_Public):
    total: int
    """How many match the filters, over all pages."""
    limit: int
    """The page size asked for."""
    offset: int
    """How many matches were skipped before this page."""
    items: list[WorkOrderPublic]
    """The work orders, newest first."""


class CompletionPublic(_Public):
    inspection: InspectionPublic
    """The completed task."""
    work_order: WorkOrderPublic | None
    """The work order the failure opened, if it failed."""


class CompleteBody(BaseModel):
    """A completion as JSON; as multipart/form-data, ``answers`` is a JSON text field."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    answers: dict[str, str] = Field(max_length=200)
    """Every checklist item id → ``pass``, ``fail`` or ``na``."""
    result: Literal["pass", "fail"] | None = None
    """Derived from the answers when left out."""
    note: str | None = Field(default=None, max_length=2000)
    """What the inspector saw; required for a fail with every item passed."""


class WorkOrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    title: str = Field(max_length=200)
    """What is broken, in one line."""
    device_id: str | None = Field(default=None, pattern=ID)
    """The device to fix, if it is one."""
    zone_id: str | None = Field(default=None, pattern=ID)
    """Where (taken from the device when one is given)."""
    description: str | None = Field(default=None, max_length=4000)
    """The detail."""
    assignee: str | None = Field(default=None, max_length=64)
    """Who is to fix it."""
    kind: str = Field(default="fault", pattern=r"^[a-z_]{1,32}$")
    """What kind of fault: fault, pressure, leak, ..."""


class WorkOrderClose(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    fix: str = Field(max_length=4000)
    """What was done; required."""


# ---- plans ------------------------------------------------------------------------------------


@router.get(
    "/inspection-plans",
    response_model=InspectionPlansPublic,
    summary="The inspection plans in force",
)
def list_plans(service: MaintenanceDep) -> InspectionPlansPublic:
    try:
        plans = service.plans
    except PlanError as exc:
        _fail(exc)
    config = plans.extinguisher_service
    return InspectionPlansPublic(
        timezone=service.timezone,
        plans=[_plan_public(plan) for plan in plans.plans],
        extinguisher_service=ServiceDatesPublic(
            enabled=config.enabled, lead_days=config.lead_days, assignee=_assignee(config.assignee)
        ),
    )


def _plan_public(plan: Plan) -> InspectionPlanPublic:
    return InspectionPlanPublic(
        id=plan.id,
        name_zh=plan.name.zh,
        name_en=plan.name.en,
        per=plan.per,
        device_types=list(plan.device_types),
        zone_kinds=list(plan.zone_kinds),
        zones=list(plan.zones),
        frequency=plan.frequency_label,
        stricter=[
            StricterPublic(
                zone_kinds=list(rule.zone_kinds),
                frequency=rule.frequency or f"cron: {rule.cron}",
            )
            for rule in plan.stricter
        ],
        due_within_hours=plan.due_within_hours,
        assignee=_assignee(plan.assignee),
        reference=plan.reference,
        checklist=[
            ChecklistItemPublic(
                id=item.id,
                zh=item.zh,
                en=item.en,
                device_types=list(item.device_types) if item.device_types else None,
            )
            for item in plan.checklist
        ],
    )


def _assignee(assignee: Assignee) -> AssigneePublic:
    return AssigneePublic(role=assignee.role, person=assignee.person)


# ---- inspections ------------------------------------------------------------------------------


def task_filter(
    ctx: CtxDep,
    service: MaintenanceDep,
    user: UserDep,
    state: Annotated[
        str | None,
        Query(
            pattern=r"^(open|overdue|done)(,(open|overdue|done)){0,2}$",
            description="open, overdue, done, or several comma-separated.",
        ),
    ] = None,
    due: Annotated[
        str | None,
        Query(
            pattern=r"^(today|tomorrow|\d{4}-\d{2}-\d{2})$",
            description="Due on this park-local day: today, tomorrow or YYYY-MM-DD.",
        ),
    ] = None,
    due_from: Annotated[
        date | None, Query(description="Due on or after this park-local day.")
    ] = None,
    due_to: Annotated[
        date | None, Query(description="Due on or before this park-local day.")
    ] = None,
    zone: Annotated[str | None, Query(pattern=ID, description="Only this zone id.")] = None,
    type: Annotated[str | None, Query(pattern=ID, description="Only this device type.")] = None,
    device: Annotated[str | None, Query(pattern=ID, description="Only this device id.")] = None,
    assignee: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
            description="Only tasks of this person; ``me`` is the signed-in caller.",
        ),
    ] = None,
    role: Annotated[
        str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$", description="Only this role.")
    ] = None,
    plan: Annotated[
        str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Only this plan.")
    ] = None,
    kind: Annotated[
        Literal["inspection", "service", "scrap"] | None, Query(description="Only this kind.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 100,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Tasks to skip.")] = 0,
) -> TaskFilter:
    if assignee == "me":
        assignee = user
    if type is not None and type not in ctx.catalogue.device_types:
        known = ", ".join(sorted(ctx.catalogue.device_types))
        raise HTTPException(422, f"unknown device type {type!r}; known types: {known}")
    zone_info = service.zone
    today = service.clock().astimezone(zone_info).date()
    first: date | None = due_from
    last: date | None = due_to
    if due is not None:
        if due == "today":
            day = today
        elif due == "tomorrow":
            day = today + timedelta(days=1)
        else:
            try:
                day = date.fromisoformat(due)
            except ValueError:
                raise HTTPException(422, f"due {due!r} is not a date") from None
        first = max(first, day) if first else day
        last = min(last, day) if last else day
    if first is not None and last is not None and first > last:
        raise HTTPException(422, "the due range is empty: its start is after its end")
    return TaskFilter(
        states=tuple(state.split(",")) if state else (),
        due_after=local_midnight(first, zone_info) if first else None,
        due_until=local_midnight(last + timedelta(days=1), zone_info) if last else None,
        zone_id=zone,
        device_type=type,
        device_id=device,
        assignee=assignee,
        role=role,
        plan_id=plan,
        kind=kind,
        limit=limit,
        offset=offset,
    )


TaskFilterDep = Annotated[TaskFilter, Depends(task_filter)]


@router.get(
    "/inspections",
    response_model=InspectionsPublic,
    summary="Inspection tasks, soonest due first",
    responses={422: ERRORS[422]},
)
def list_inspections(ctx: CtxDep, service: MaintenanceDep, flt: TaskFilterDep) -> InspectionsPublic:
    """The crew's list: ``?assignee=me&due=today``; the manager's: ``?state=overdue``."""
    now = service.clock()
    with session_scope(ctx.sessions) as session:
        total, rows = list_tasks(session, flt, now)
        items = [_task_public(task, now, service) for task in rows]
    return InspectionsPublic(total=total, limit=flt.limit, offset=flt.offset, items=items)


@router.get(
    "/inspections.ics",
    summary="The inspections as an iCalendar feed a phone can subscribe to",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}, 422: ERRORS[422]},
)
def inspections_calendar(
    ctx: CtxDep,
    service: MaintenanceDep,
    flt: TaskFilterDep,
    group: Annotated[
        bool, Query(description="One event per plan, zone and due day (default) or per task.")
    ] = True,
) -> Response:
    """Open and overdue tasks unless ``state`` says otherwise; all-day events on the due day."""
    now = service.clock()
    if not flt.states:
        flt = replace(flt, states=("open", "overdue"))
    flt = replace(flt, limit=ICS_MAX, offset=0)
    with session_scope(ctx.sessions) as session:
        _, rows = list_tasks(session, flt, now)
        zone_ids = {task.zone_id for task in rows if task.zone_id}
        labels = {
            zone.id: zone.name_zh
            if zone.name_zh == zone.name_en
            else f"{zone.name_zh} / {zone.name_en}"
            for zone in session.scalars(select(Zone).where(Zone.id.in_(zone_ids)))
        }
        body = tasks_calendar(rows, now=now, tz=service.zone, zone_labels=labels, group=group)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'inline; filename="parkguard-inspections.ics"'},
    )


TaskId = Annotated[int, Path(ge=1, le=2**62, description="Inspection task id.")]


@router.get(
    "/inspections/{task_id}",
    response_model=InspectionPublic,
    summary="One inspection task",
    responses={404: ERRORS[404]},
)
def read_inspection(task_id: TaskId, ctx: CtxDep, service: MaintenanceDep) -> InspectionPublic:
    with session_scope(ctx.sessions) as session:
        try:
            task = get_task(session, task_id)
        except MaintenanceError as exc:
            _fail(exc)
        return _task_public(task, service.clock(), service)


@router.get(
    "/inspections/{task_id}/photo",
    summary="The photo taken at an inspection",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}, **ERRORS},
)
def read_photo(task_id: TaskId, ctx: CtxDep, service: MaintenanceDep) -> Response:
    with session_scope(ctx.sessions) as session:
        try:
            task = get_task(session, task_id)
            if task.photo_id is None:
                raise NotFound(f"inspection task {task_id} has no photo")
            photo = session.get(InspectionPhoto, task.photo_id)
            if photo is None:
                raise NotFound(f"inspection task {task_id}'s photo is missing")
            data = service.photos.load(photo)
        except MaintenanceError as exc:
            _fail(exc)
        return Response(
            data,
            media_type=photo.content_type,
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
        )


@router.post(
    "/inspections/{task_id}/complete",
    response_model=CompletionPublic,
    summary="Complete an inspection task: every item answered, optionally a photo",
    responses={
        **ERRORS,
        413: {"model": ErrorPublic, "description": "The photo is too large."},
        415: {"model": ErrorPublic, "description": "Not JSON or a form; or not a JPEG/PNG/WebP."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": CompleteBody.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["answers"],
                        "properties": {
                            "answers": {"type": "string", "description": "JSON object"},
                            "result": {"type": "string", "enum": ["pass", "fail"]},
                            "note": {"type": "string"},
                            "photo": {"type": "string", "format": "binary"},
                        },
                    }
                },
            },
        }
    },
)
async def complete_inspection(
    task_id: TaskId, request: Request, ctx: CtxDep, service: MaintenanceDep, user: UserDep
) -> CompletionPublic:
    """JSON ``{answers, result?, note?}``, or multipart/form-data with a ``photo`` file too.

    A failed item (or result fail) opens a work order, returned with the task.
    """
    body, photo = await _read_completion(request, service.config.photo_max_bytes)
    completion = Completion(
        answers=body.answers, result=body.result, note=body.note, photo=photo, user=user
    )
    return await run_in_threadpool(_complete, ctx, service, task_id, completion)


def _complete(
    ctx: Any, service: MaintenanceService, task_id: int, completion: Completion
) -> CompletionPublic:
    now = service.clock()
    try:
        with session_scope(ctx.sessions) as session:
            done = complete_task(session, task_id, completion, now=now, photos=service.photos)
            return CompletionPublic(
                inspection=_task_public(done.task, now, service),
                work_order=_order_public(done.work_order) if done.work_order else None,
            )
    except MaintenanceError as exc:
        _fail(exc)


async def _read_completion(request: Request, max_photo: int) -> tuple[CompleteBody, bytes | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_photo + FORM_OVERHEAD:
        raise HTTPException(
            413, f"request is {length} bytes; a photo may be at most {max_photo} bytes"
        )
    if content_type == "application/json":
        raw = await request.body()
        try:
            return CompleteBody.model_validate_json(raw), None
        except ValidationError as exc:
            raise HTTPException(422, _first_error(exc)) from None
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=1, max_fields=10)
        try:
            photo_part = form.get("photo")
            photo: bytes | None = None
            if isinstance(photo_part, UploadFile):
                photo = await photo_part.read(max_photo + 1)
                if len(photo) > max_photo:
                    raise HTTPException(413, f"photo is larger than {max_photo} bytes")
                if not photo and not photo_part.filename:
                    photo = None  # an empty file input
            elif photo_part not in (None, ""):
                raise HTTPException(422, "photo must be a file part")
            fields = {k: v for k, v in form.items() if k != "photo" and isinstance(v, str)}
            extra = sorted(set(fields) - {"answers", "result", "note"})
            if extra:
                raise HTTPException(422, f"unknown form field {extra[0][:40]!r}")
            try:
                answers = json.loads(fields.get("answers", ""))
            except json.JSONDecodeError:
                raise HTTPException(
                    422, "answers must be a JSON object of item id → pass, fail or na"
                ) from None
            data = {"answers": answers, "result": fields.get("result") or None}
            data["note"] = fields.get("note") or None
            try:
                return CompleteBody.model_validate(data), photo
            except ValidationError as exc:
                raise HTTPException(422, _first_error(exc)) from None
        finally:
            await form.close()
    raise HTTPException(415, "send application/json or a form (multipart/form-data)")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def _task_public(
    task: InspectionTask, now: datetime, service: MaintenanceService
) -> InspectionPublic:
    return InspectionPublic(
        id=task.id,
        kind=task.kind,
        plan_id=task.plan_id,
        site_id=task.site_id,
        subject=task.subject,
        subject_label=task.subject_label,
        device_id=task.device_id,
        device_type=task.device_type,
        zone_id=task.zone_id,
        title_zh=task.title_zh,
        title_en=task.title_en,
        frequency=task.frequency,
        period_start=_rfc3339(task.period_start),
        due_at=_rfc3339(task.due_at),
        due_date=due_date(task, service.zone),
        state=effective_state(task, now),
        assignee_role=task.assignee_role,
        assignee=task.assignee,
        checklist=list(task.checklist),
        detail=dict(task.detail),
        created_at=_rfc3339(task.created_at),
        completed_at=_rfc3339(task.completed_at) if task.completed_at else None,
        completed_by=task.completed_by,
        result=task.result,
        answers=task.answers,
        note=task.note,
        photo_url=f"/api/v1/inspections/{task.id}/photo" if task.photo_id else None,
    )


# ---- work orders ------------------------------------------------------------------------------


@router.get("/work-orders", response_model=WorkOrdersPublic, summary="Work orders, newest first")
def list_orders(
    ctx: CtxDep,
    user: UserDep,
    state: Annotated[
        Literal["open", "closed"] | None, Query(description="Only this state.")
    ] = None,
    device: Annotated[str | None, Query(pattern=ID, description="Only this device id.")] = None,
    zone: Annotated[str | None, Query(pattern=ID, description="Only this zone id.")] = None,
    source: Annotated[
        Literal["inspection", "alert", "manual"] | None, Query(description="Only from this.")
    ] = None,
    assignee: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.@-]{1,64}$",
            description="A person, or ``me`` (the signed-in caller).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX, description="Orders to skip.")] = 0,
) -> WorkOrdersPublic:
    if assignee == "me":
        assignee = user
    flt = WorkOrderFilter(
        state=state,
        device_id=device,
        zone_id=zone,
        source=source,
        assignee=assignee,
        limit=limit,
        offset=offset,
    )
    with session_scope(ctx.sessions) as session:
        total, rows = list_work_orders(session, flt)
        items = [_order_public(order) for order in rows]
    return WorkOrdersPublic(total=total, limit=limit, offset=offset, items=items)


@router.post(
    "/work-orders",
    response_model=WorkOrderPublic,
    status_code=201,
    summary="Open a work order by hand",
    responses={422: ERRORS[422]},
)
def create_order(
    body: WorkOrderCreate, ctx: CtxDep, service: MaintenanceDep, user: UserDep
) -> WorkOrderPublic:
    try:
        with session_scope(ctx.sessions) as session:
            order = open_work_order(
                session,
                title=body.title,
                now=service.clock(),
                device_id=body.device_id,
                zone_id=body.zone_id,
                description=body.description,
                opened_by=user,
                assignee=body.assignee,
                kind=body.kind,
            )
            return _order_public(order)
    except MaintenanceError as exc:
        _fail(exc)


OrderId = Annotated[int, Path(ge=1, le=2**62, description="Work order id.")]


@router.get(
    "/work-orders/{order_id}",
    response_model=WorkOrderPublic,
    summary="One work order",
    responses={404: ERRORS[404]},
)
def read_order(order_id: OrderId, ctx: CtxDep) -> WorkOrderPublic:
    with session_scope(ctx.sessions) as session:
        try:
            return _order_public(get_work_order(session, order_id))
        except MaintenanceError as exc:
            _fail(exc)


@router.post(
    "/work-orders/{order_id}/close",
    response_model=WorkOrderPublic,
    summary="Close a work order, recording the fix",
    responses=ERRORS,
)
def close_order(
    order_id: OrderId, body: WorkOrderClose, ctx: CtxDep, service: MaintenanceDep, user: UserDep
) -> WorkOrderPublic:
    try:
        with session_scope(ctx.sessions) as session:
            order = close_work_order(
                session, order_id, fix=body.fix, now=service.clock(), closed_by=user
            )
            return _order_public(order)
    except MaintenanceError as exc:
        _fail(exc)


def _order_public(order: WorkOrder) -> WorkOrderPublic:
    return WorkOrderPublic(
        id=order.id,
        source=order.source,
        source_ref=order.source_ref,
        kind=order.kind,
        site_id=order.site_id,
        device_id=order.device_id,
        zone_id=order.zone_id,
        title=order.title,
        description=order.description,
        state="closed" if order.state == "closed" else "open",
        opened_at=_rfc3339(order.opened_at),
        opened_by=order.opened_by,
        assignee=order.assignee,
        related=list(order.related),
        closed_at=_rfc3339(order.closed_at) if order.closed_at else None,
        closed_by=order.closed_by,
        fix=order.fix,
    )


# ---- helpers ----------------------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    return to_rfc3339((moment - EPOCH) // timedelta(milliseconds=1))
