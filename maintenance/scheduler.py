"""The maintenance service: APScheduler with its job store in the relational database.

``MaintenanceService.start()`` starts a BackgroundScheduler whose only in-memory job renews the
leader lease (maintenance/leader.py). The instance that holds the lease attaches the persistent
SQLAlchemy job store (table ``maintenance_scheduler_jobs``) holding three jobs:

- ``maintenance.generate`` at minutes 0, 15, 30 and 45 in the park's zone (so a daily task
  appears at local midnight): create this period's tasks and catch up missed periods;
- ``maintenance.service_dates`` daily at 00:05: extinguisher service and scrap tasks;
- ``maintenance.overdue`` every minute: open tasks past due become overdue.

On becoming leader it runs all three at once: that is the catch-up after downtime. The tasks'
unique key makes every run idempotent, so a run repeated by APScheduler's misfire handling,
by a second leader, or by hand, creates nothing twice.

Each job runs in its own transaction; a database or plan failure is logged, counted in
``status()`` and rolled back, and the scheduler keeps running.

``stop()`` is bounded: it waits for a running job at most ``stop_timeout_s`` (one stuck on a
database lock is logged, counted as ``stop_timeouts`` and left to end on its own, no longer
leading), then gives the lease up, waiting at most as long again for the database.
APScheduler's own ``shutdown(wait=True)`` is not used: it joins the job threads while holding
the scheduler's locks, so a lease tick calling into the scheduler at that moment (attaching
the job store on becoming leader) deadlocked the stop for good.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.catalogue import Catalogue
from core.db import SessionFactory, session_scope
from core.settings import Settings
from maintenance.errors import MaintenanceError, PlanError
from maintenance.leader import acquire_lease, release_lease
from maintenance.photos import MAX_PHOTO_BYTES, PhotoStore
from maintenance.plans import PLANS_FILE, PlanSet, load_plans
from maintenance.schedule import generate_tasks, mark_overdue, utc_now
from maintenance.service_dates import generate_service_tasks

log = logging.getLogger(__name__)

JOB_TABLE = "maintenance_scheduler_jobs"
DB_STORE = "db"
JOBS = ("generate", "service_dates", "overdue")
_LEADERS: dict[str, MaintenanceService] = {}
_LEADERS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class MaintenanceConfig:
    """Deployment knobs (the plans themselves are site data in inspection-plans.yaml)."""

    photo_dir: Path | None = None
    """Keep inspection photos in this folder; None keeps them in the database."""
    photo_max_bytes: int = MAX_PHOTO_BYTES
    catch_up_days: int = 366
    """Missed periods older than this are not generated on start-up (and that is reported)."""
    overdue_every_s: float = 60.0
    lease_ttl_s: float = 30.0
    lease_renew_s: float = 10.0
    stop_timeout_s: float = 5.0
    """``stop()`` waits this long for a running job, then as long again to release the lease."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MaintenanceConfig:
        """``PARKGUARD_PHOTO_DIR`` and ``PARKGUARD_PHOTO_MAX_BYTES``; ValueError names a bad one."""
        env = os.environ if environ is None else environ
        photo_dir = env.get("PARKGUARD_PHOTO_DIR") or None
        raw_max = env.get("PARKGUARD_PHOTO_MAX_BYTES")
        max_bytes = MAX_PHOTO_BYTES
        if raw_max:
            if not raw_max.isdigit() or not 1 <= int(raw_max) <= 100 * 1024 * 1024:
                raise ValueError(
                    "PARKGUARD_PHOTO_MAX_BYTES must be a number of bytes up to 100 MiB"
                )
            max_bytes = int(raw_max)
        return cls(photo_dir=Path(photo_dir) if photo_dir else None, photo_max_bytes=max_bytes)


@dataclass(slots=True)
class RunResult:
    """What one pass of the jobs did (``run_once`` and the catch-up on becoming leader)."""

    created: int = 0
    service_created: int = 0
    overdue: int = 0
    register_problems: int = 0
    skipped_plans: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class MaintenanceService:
    """Owns the maintenance scheduler; build it, ``start()`` it in the lifespan, ``stop()`` it.

    The constructor only assigns fields: no thread, connection or file is touched before
    ``start()`` (or the first use of ``plans``).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        sessions: SessionFactory,
        timezone: str = "Asia/Shanghai",
        plans_path: Path | None = None,
        plans: PlanSet | None = None,
        catalogue: Catalogue | None = None,
        config: MaintenanceConfig | None = None,
        clock: Callable[[], datetime] = utc_now,
        name: str = "maintenance",
        holder: str | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.timezone = timezone
        self.plans_path = plans_path
        self.catalogue = catalogue
        self.config = config or MaintenanceConfig()
        self.clock = clock
        self.name = name
        self.holder = holder or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._plans = plans
        self._scheduler: BackgroundScheduler | None = None
        self._leader = False
        self._lock = threading.RLock()
        self._jobs_done = threading.Condition()
        self._running: dict[int, tuple[str, float]] = {}
        self._job_tokens = itertools.count()
        self._counts: dict[str, int] = {}
        self._last_error: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: Engine,
        sessions: SessionFactory,
        catalogue: Catalogue | None = None,
        config: MaintenanceConfig | None = None,
        **kwargs: Any,
    ) -> MaintenanceService:
        """Plans from ``<site>/inspection-plans.yaml``; the park's zone from the settings."""
        plans_path = settings.site / PLANS_FILE if settings.site is not None else None
        return cls(
            engine=engine,
            sessions=sessions,
            timezone=settings.timezone,
            plans_path=plans_path,
            catalogue=catalogue,
            config=config,
            **kwargs,
        )

    # ---- data the API reads ------------------------------------------------------------------

    @property
    def plans(self) -> PlanSet:
        """The inspection plans, read on first use; PlanError if the file is bad."""
        with self._lock:
            if self._plans is None:
                self._plans = self._read_plans()
            return self._plans

    def reload_plans(self) -> PlanSet:
        """Read the plan file again; on error the plans in force stay and PlanError is raised."""
        fresh = self._read_plans()
        with self._lock:
            self._plans = fresh
        return fresh

    @property
    def photos(self) -> PhotoStore:
        return PhotoStore(self.config.photo_dir, self.config.photo_max_bytes)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_leader(self) -> bool:
        return self._leader

    def status(self) -> dict[str, Any]:
        """For health and metrics: leader or not, job counters, the last error.

        ``jobs_running`` maps each running job to how long (s) its oldest run has taken so far.
        """
        now = time.monotonic()
        jobs_running: dict[str, float] = {}
        with self._jobs_done:
            for job, started in self._running.values():
                jobs_running[job] = max(jobs_running.get(job, 0.0), now - started)
        with self._lock:
            counts = dict(self._counts)
        return {
            "running": self._scheduler is not None,
            "leader": self._leader,
            "holder": self.holder,
            "counts": counts,
            "jobs_running": jobs_running,
            "last_error": self._last_error,
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler; leadership (and the catch-up run) follows within a lease tick."""
        if self._scheduler is not None:
            raise RuntimeError("maintenance service already started")
        self.plans  # noqa: B018 - a bad plan file stops start-up with PlanError, not later
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=self.zone,
        )
        scheduler.add_listener(self._on_job_error, EVENT_JOB_ERROR)
        scheduler.add_job(
            self._lease_tick,
            IntervalTrigger(seconds=self.config.lease_renew_s),
            id="maintenance.lease",
            next_run_time=datetime.now(self.zone),
        )
        self._scheduler = scheduler
        scheduler.start()

    def stop(self) -> None:
        """Stop the scheduler and give up the lease, in at most about 2 × ``stop_timeout_s``.

        A job still running after ``stop_timeout_s`` is logged, counted (``stop_timeouts``) and
        left to end on its own: from here on it can no longer lead nor take the lease.
        """
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        timeout = self.config.stop_timeout_s
        deadline = time.monotonic() + timeout
        # Without waiting for the jobs (see the module docstring), and in a thread of its own:
        # even so it takes the scheduler's locks, which its main loop holds while it reads or
        # writes the job store, that is, for as long as the database keeps it waiting.
        closer = threading.Thread(
            target=scheduler.shutdown,
            kwargs={"wait": False},
            name=f"{self.name}-scheduler-shutdown",
            daemon=True,
        )
        closer.start()
        closer.join(timeout)
        with self._jobs_done:
            idle = self._jobs_done.wait_for(
                lambda: not self._running, max(0.0, deadline - time.monotonic())
            )
            stuck = sorted({job for job, _ in self._running.values()})
        if closer.is_alive() or not idle:
            self._count("stop_timeouts")
            log.warning(
                "maintenance stop: gave up after %.1f s waiting for %s; stopping without them",
                timeout,
                ", ".join(stuck) if stuck else "the scheduler's shutdown",
            )
        with self._lock:
            was_leader = self._leader
            self._step_down(None)
        if was_leader:
            try:
                with session_scope(self.sessions) as session:
                    release_lease(
                        session, self.name, self.holder, lock_wait=timedelta(seconds=timeout)
                    )
            except SQLAlchemyError as exc:
                self._failed("release_lease", exc)  # it expires after lease_ttl_s instead

    def run_once(self, now: datetime | None = None) -> RunResult:
        """Run generate, service dates and overdue once, each in its own transaction."""
        result = RunResult()
        for job in JOBS:
            self._run(job, now or self.clock(), result)
        return result

    # ---- internals ---------------------------------------------------------------------------

    def _read_plans(self) -> PlanSet:
        if self.plans_path is None:
            log.warning("no site folder: no inspection plans, only extinguisher service dates")
            return PlanSet()
        if not self.plans_path.exists():
            log.warning("%s does not exist: no inspection plans", self.plans_path)
            return PlanSet()
        return load_plans(self.plans_path, self.catalogue)

    @contextlib.contextmanager
    def _job(self, job: str) -> Iterator[None]:
        """Mark a job as running, for ``stop()`` to wait for and ``status()`` to show."""
        token = next(self._job_tokens)
        with self._jobs_done:
            self._running[token] = (job, time.monotonic())
        try:
            yield
        finally:
            with self._jobs_done:
                del self._running[token]
                self._jobs_done.notify_all()

    def _current(self, scheduler: BackgroundScheduler) -> bool:
        """True while ``scheduler`` is the one running: not stopped (nor replaced) since."""
        return self._scheduler is scheduler

    def _lease_tick(self) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        with self._job("lease"):
            self._renew_lease(scheduler)

    def _renew_lease(self, scheduler: BackgroundScheduler) -> None:
        now = self.clock()
        ttl = timedelta(seconds=self.config.lease_ttl_s)
        try:
            with session_scope(self.sessions) as session:
                held = acquire_lease(session, self.name, self.holder, now, ttl)
                if not self._current(scheduler):
                    # stopped while this tick waited for the database: take no lease after
                    # stop() released it
                    session.rollback()
                    return
        except SQLAlchemyError as exc:
            self._failed("lease", exc)
            held = False
        if held and not self._leader:
            self._become_leader(scheduler)
        elif not held and self._leader:
            log.warning("maintenance: lost the scheduler lease to another instance")
            self._step_down(scheduler)

    def _become_leader(self, scheduler: BackgroundScheduler) -> None:
        with self._lock:  # stop() reads and clears the leadership under the same lock
            if not self._current(scheduler):
                return
            log.info("maintenance: %s is the scheduler leader", self.holder)
            with _LEADERS_LOCK:
                _LEADERS[self.name] = self
            self._leader = True
        try:
            self._attach_jobs(scheduler)
        except SQLAlchemyError as exc:
            self._failed("attach_jobs", exc)
            self._step_down(scheduler)
            return
        # the catch-up after downtime, at once and apart from the lease job, which must keep
        # renewing however long a year of missed periods takes to generate
        scheduler.add_job(self._catch_up, id="maintenance.catch_up", replace_existing=True)

    def _catch_up(self) -> None:
        if not self._leader:
            return
        with self._job("catch_up"):
            caught_up = self.run_once()
        log.info(
            "maintenance catch-up: %d tasks, %d service tasks, %d overdue",
            caught_up.created,
            caught_up.service_created,
            caught_up.overdue,
        )

    def _attach_jobs(self, scheduler: BackgroundScheduler) -> None:
        store = _SharedEngineJobStore(engine=self.engine, tablename=JOB_TABLE)
        scheduler.add_jobstore(store, DB_STORE)
        triggers = {
            "generate": CronTrigger(minute="0,15,30,45", timezone=self.zone),
            "service_dates": CronTrigger(hour=0, minute=5, timezone=self.zone),
            "overdue": IntervalTrigger(seconds=self.config.overdue_every_s, timezone=self.zone),
        }
        for job, trigger in triggers.items():
            job_id = f"maintenance.{job}"
            existing = scheduler.get_job(job_id, jobstore=DB_STORE)
            if existing is not None and str(existing.trigger) == str(trigger):
                continue  # keep its stored next run time: APScheduler's misfire run follows
            scheduler.add_job(
                "maintenance.scheduler:run_job",
                trigger,
                args=(self.name, job),
                id=job_id,
                name=job_id,
                jobstore=DB_STORE,
                replace_existing=True,
            )

    def _step_down(self, scheduler: BackgroundScheduler | None) -> None:
        """Stop leading; detach the job store from ``scheduler`` unless it is being shut down."""
        with _LEADERS_LOCK:
            if _LEADERS.get(self.name) is self:
                del _LEADERS[self.name]
        if self._leader:
            self._leader = False
            if scheduler is not None:
                with contextlib.suppress(KeyError):
                    scheduler.remove_jobstore(DB_STORE, shutdown=False)

    def _run(self, job: str, now: datetime, result: RunResult) -> None:
        self._count(f"runs.{job}")
        try:
            with session_scope(self.sessions) as session:
                if job == "generate":
                    generated = generate_tasks(
                        session,
                        self.plans,
                        now,
                        default_tz=self.timezone,
                        catch_up=timedelta(days=self.config.catch_up_days),
                    )
                    result.created += generated.created
                    result.skipped_plans += [s.plan_id for s in generated.skipped]
                    self._count("tasks_created", generated.created)
                    self._count("catch_up_skipped", len(generated.skipped))
                elif job == "service_dates":
                    service = generate_service_tasks(
                        session, self.plans.extinguisher_service, now, default_tz=self.timezone
                    )
                    result.service_created += service.created
                    result.register_problems += len(service.problems)
                    self._count("tasks_created", service.created)
                    self._count("register_problems", len(service.problems))
                else:
                    result.overdue += mark_overdue(session, now)
        except (SQLAlchemyError, MaintenanceError) as exc:
            result.failures.append(f"{job}: {exc}")
            self._failed(job, exc)

    def _failed(self, job: str, exc: BaseException) -> None:
        self._count(f"failures.{job}")
        self._last_error = f"{job}: {type(exc).__name__}: {str(exc)[:300]}"
        level = logging.ERROR if isinstance(exc, PlanError) else logging.WARNING
        log.log(level, "maintenance %s failed (rolled back, will retry): %s", job, exc)

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def _on_job_error(self, event: JobExecutionEvent) -> None:
        self._failed(str(event.job_id), event.exception or RuntimeError("job failed"))


def run_job(name: str, job: str) -> None:
    """What the persistent jobs call (by reference, so the job store can pickle them)."""
    with _LEADERS_LOCK:
        service = _LEADERS.get(name)
    if service is None:
        log.warning("maintenance job %s fired with no leading %s service here; skipped", job, name)
        return
    with service._job(job):
        service._run(job, service.clock(), RunResult())


class _SharedEngineJobStore(SQLAlchemyJobStore):
    """The job store on the application's engine, which it must not dispose of on shutdown."""

    def shutdown(self) -> None:
        pass
