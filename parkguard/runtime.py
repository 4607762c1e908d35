"""Wiring of the processes: database, built-in broker, collector and API, started and stopped
in order. The only place that composes everything (with the API)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from collector.client import BrokerAddress
from collector.heartbeat import Heartbeat, ReportMetrics, read_status
from collector.metrics import IngestMetrics
from collector.service import Collector
from compliance.recorder import ConditionRecorder
from core.catalogue import Catalogue, load_catalogue
from core.db import SessionFactory, make_engine, session_factory, upgrade
from core.journal import JournalBus
from core.readings import ReadingsStore, open_readings_store
from core.settings import Settings
from parkguard.broker import EmbeddedBroker
from rules.alerts import JOURNAL_CHANNEL as ALERT_JOURNAL
from rules.alerts import AlertStore
from rules.fanout import MqttTarget
from rules.incident_service import IncidentDesk, IncidentService
from rules.incidents import JOURNAL_CHANNEL as INCIDENT_JOURNAL
from rules.incidents import IncidentStore
from rules.plans import load_site_plans
from rules.service import RulesService
from rules.spec import load_site_rules

if TYPE_CHECKING:
    from api.context import AppContext
    from compliance.report import ReportConfig

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Collect start-up's garbage and exempt what survives from later full collections.

    A full collection walks every object, every thread stopped: on the demo park ``serve``
    holds about 200,000 objects after start-up and one took 130-140 ms here, so an alarm
    arriving during one waited that long. After ``gc.freeze()`` it walks only what came
    since (well under a millisecond). Call once a role has started."""
    gc.collect()
    gc.freeze()


@dataclass
class Runtime:
    """Construct with settings; start() opens everything, stop() closes it in reverse."""

    settings: Settings
    engine: Engine | None = None
    broker: EmbeddedBroker | None = None
    collector: Collector | None = None
    rules: RulesService | None = None
    incidents: IncidentService | None = None
    fleet: Any = None
    app: FastAPI | None = None
    services: list[Any] = field(default_factory=list)

    def start(self) -> FastAPI:
        """Start ingest and build the API app on it."""
        from api.app import create_app
        from api.context import AppContext
        from api.routers.reports import report_config

        collector = self.start_ingest()
        assert self.engine is not None
        sessions = session_factory(self.engine)
        ctx = AppContext(
            settings=self.settings,
            engine=self.engine,
            sessions=sessions,
            readings=collector.readings,
            catalogue=collector.catalogue,
            ingest_status=collector.status,
            registry=collector.metrics.registry,
        )
        if self.rules is not None:
            ctx.extras["alerts"] = self.rules.store
            ctx.extras["rules"] = self.rules
        if self.incidents is not None:
            ctx.extras["incidents"] = self.incidents
        ctx.extras["maintenance"] = self._start_maintenance(sessions, collector.catalogue)
        self._start_monthly_report(sessions, collector.catalogue, report_config(ctx))
        self.app = create_app(ctx)
        return self.app

    def start_ingest(self, follow: bool = False) -> Collector:
        """Migrate, import the site, start the broker (if built in) and the collector.

        ``follow`` (``parkguard collect``): the API runs in another process, so the alert and
        incident buses also carry the changes it journals (core.journal): a person's resolve
        makes the engine forget, and MQTT and webhooks carry people's actions."""
        settings = self.settings
        upgrade(settings.database_url)
        engine = self.engine = make_engine(settings.database_url)
        if settings.site is not None:
            import_site_folder(engine, settings)
        address = self._broker_address()
        catalogue = load_catalogue()
        readings = open_readings_store(settings.readings_url, engine, settings.influx_token)
        metrics = IngestMetrics()
        store_metrics = readings.metrics_collector()
        if store_metrics is not None:
            metrics.registry.register(store_metrics)
        readings.start()
        self.services.append(readings)
        self.collector = Collector(self.settings, engine, readings, catalogue, address, metrics)
        self.rules = self._start_rules(address, catalogue, follow)
        self.incidents = self._start_incidents(address, follow)
        recorder = ConditionRecorder(engine, catalogue)
        recorder.start()
        self.services.append(recorder)
        self.collector.add_listener(recorder.on_batch)
        if self.rules is not None:
            self.collector.add_listener(self.rules.on_batch)
        self.collector.start()
        heartbeat = Heartbeat(
            engine, settings.mqtt_client_id, self.collector.status, lambda: _backlog(readings)
        )
        heartbeat.start()
        self.services.append(heartbeat)  # stopped first of the services: its last report
        return self.collector

    def start_api(self) -> FastAPI:
        """The API role alone (``parkguard api``): migrate and serve every route, with no
        collector, rule engine or scheduler job in this process. Alerts and incidents come
        from their stores, whose buses follow the journals (core.journal), so the changes the
        collector's process makes reach the SSE streams; health and metrics read the
        collector's report (collector.heartbeat); the readings store is only read (its
        outage spool is drained by the collector)."""
        from api.app import create_app
        from api.context import AppContext

        settings = self.settings
        upgrade(settings.database_url)
        engine = self.engine = make_engine(settings.database_url)
        catalogue = load_catalogue()
        readings = open_readings_store(settings.readings_url, engine, settings.influx_token)
        self.services.append(readings)  # not started: no drainer; stop() closes its client
        registry = CollectorRegistry()
        registry.register(ReportMetrics(engine))
        ctx = AppContext(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            readings=readings,
            catalogue=catalogue,
            ingest_status=lambda: read_status(engine),
            registry=registry,
        )
        if settings.site is None:
            log.warning("no site folder: no rules, so no alerts and no incidents")
        else:
            self._open_site_stores(ctx, catalogue)
        self.app = create_app(ctx)
        return self.app

    def _open_site_stores(self, ctx: AppContext, catalogue: Catalogue) -> None:
        """The alert and incident stores on the site's rules and plans, following the
        journals; a bad rule or plan file stops start-up."""
        from compliance.report import ReportConfig

        assert self.settings.site is not None
        url = self.settings.database_url
        rules = load_site_rules(self.settings.site, catalogue)
        plans = load_site_plans(self.settings.site, rules.by_id)
        alerts = AlertStore(url, rules, JournalBus(ALERT_JOURNAL, url))
        incidents = IncidentStore(url, plans, JournalBus(INCIDENT_JOURNAL, url))
        for store in (alerts, incidents):
            self.services.append(_follow(store))
        ctx.extras["alerts"] = alerts
        ctx.extras["incidents"] = IncidentDesk(incidents, plans)
        ctx.extras["report_config"] = ReportConfig.from_rules(rules.rules, plans.plans)

    def stop(self) -> None:
        """Stop in the order of the data flow: devices, ingest, then what ingest feeds."""
        if self.fleet is not None:
            self.fleet.stop()
        if self.collector is not None:
            self.collector.stop()
        for service in reversed(self.services):
            service.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.engine is not None:
            self.engine.dispose()

    def start_fleet(self) -> None:
        """The site's simulated devices on a normal day (the demo); `parkguard simulate
        --scenario NAME` hands further scenarios to this fleet."""
        from simulators.fleet import start_fleet

        assert self.collector is not None and self.settings.site is not None
        address = self.collector.address
        self.fleet, _day = start_fleet(self.settings.site, _broker_url(address))
        if self.app is not None:
            self.app.state.ctx.extras["scenarios"] = _ScenarioPlayer(self.fleet)
        log.info("simulated fleet of %s running a normal day", self.settings.site)

    def _start_rules(
        self, address: BrokerAddress, catalogue: Catalogue, follow: bool
    ) -> RulesService | None:
        """The rule engine on the site's rules; a bad rule file stops start-up."""
        if self.settings.site is None:
            log.warning("no site folder: no rules, no alerts")
            return None
        url = self.settings.database_url
        rules = load_site_rules(self.settings.site, catalogue)
        service = RulesService(
            url,
            rules,
            bus=JournalBus(ALERT_JOURNAL, url) if follow else None,
            mqtt=_mqtt_target(address),
            catalogue=catalogue,
        )
        service.start()
        self.services.append(service)
        return service

    def _start_incidents(self, address: BrokerAddress, follow: bool) -> IncidentService | None:
        """Emergency plans of the site's plans/ folder; a bad plan file stops start-up."""
        if self.rules is None or self.settings.site is None:
            return None
        url = self.settings.database_url
        plans = load_site_plans(self.settings.site, self.rules.rules.by_id)
        service = IncidentService(
            url,
            plans,
            alerts=self.rules.bus,
            rules=self.rules.rules,
            bus=JournalBus(INCIDENT_JOURNAL, url) if follow else None,
            mqtt=_mqtt_target(address),
        )
        service.start()
        self.services.append(service)  # after rules, so it stops before them
        return service

    def start_scheduler(self) -> None:
        """The scheduler role alone: the maintenance leader and the monthly report job, on the
        site's rules and plans (read, not run: rules run with the collector)."""
        from compliance.report import ReportConfig

        settings = self.settings
        upgrade(settings.database_url)
        engine = self.engine = make_engine(settings.database_url)
        sessions = session_factory(engine)
        catalogue = load_catalogue()
        config = ReportConfig()
        if settings.site is not None:
            rules = load_site_rules(settings.site, catalogue)
            plans = load_site_plans(settings.site, rules.by_id)
            config = ReportConfig.from_rules(rules.rules, plans.plans)
        self._start_maintenance(sessions, catalogue)
        self._start_monthly_report(sessions, catalogue, config)

    def _start_monthly_report(
        self, sessions: SessionFactory, catalogue: Catalogue, config: ReportConfig
    ) -> None:
        """Store last month's compliance report on the 1st at 01:00 park time, and once soon
        after start-up to catch up a missed month (the job stores each report only once)."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger

        from api.routers.intactness import register_scrap_date
        from compliance.scheduled import MonthlyReportJob

        job = MonthlyReportJob(sessions, catalogue, config=config, scrap_date=register_scrap_date)
        scheduler = BackgroundScheduler(timezone=self.settings.zone)
        cron = CronTrigger(day=1, hour=1, timezone=self.settings.zone)
        scheduler.add_job(job, cron, id="compliance.monthly_report", coalesce=True, max_instances=1)
        soon = datetime.now(UTC) + timedelta(seconds=60)
        scheduler.add_job(job, "date", run_date=soon, id="compliance.catch_up")
        scheduler.start()
        self.services.append(_Stoppable(lambda: scheduler.shutdown(wait=False)))

    def _start_maintenance(self, sessions: SessionFactory, catalogue: Catalogue) -> Any:
        from maintenance.scheduler import MaintenanceConfig, MaintenanceService

        assert self.engine is not None
        service = MaintenanceService.from_settings(
            self.settings,
            engine=self.engine,
            sessions=sessions,
            catalogue=catalogue,
            config=MaintenanceConfig.from_env(),
        )
        service.start()
        self.services.append(service)
        return service

    def _broker_address(self) -> BrokerAddress:
        if self.settings.mqtt_url:
            return BrokerAddress.from_url(self.settings.mqtt_url)
        self.broker = EmbeddedBroker("127.0.0.1", 1883)
        port = self.broker.start()
        # amqtt speaks MQTT 3.1.1 only
        self.settings = self.settings.model_copy(update={"mqtt_protocol": "3.1.1"})
        return BrokerAddress("127.0.0.1", port)


@dataclass
class _ScenarioPlayer:
    """The demo fleet's scenarios for the API (api.routers.demo.ScenarioPlayer)."""

    fleet: Any

    def scenarios(self) -> list[dict[str, Any]]:
        from simulators.scenario import list_scenarios, load_scenario

        out = []
        for name in list_scenarios():
            scenario = load_scenario(name)
            out.append(
                {
                    "name": name,
                    "title_zh": scenario.title.zh,
                    "title_en": scenario.title.en,
                    "drill": scenario.drill,
                }
            )
        return out

    def play(self, name: str, speed: float, drill: bool) -> dict[str, Any]:
        from simulators.scenario import ScenarioError, list_scenarios, load_scenario

        if name not in list_scenarios():
            raise KeyError(name)
        try:
            playback = self.fleet.play(load_scenario(name), speed=speed, drill=drill)
        except ScenarioError as exc:
            raise ValueError(str(exc)) from exc
        return {
            "scenario": name,
            "steps": len(playback.steps),
            "speed": playback.speed,
            "drill": playback.drill,
        }


@dataclass
class _Stoppable:
    stop: Callable[[], None]


def _follow(store: AlertStore | IncidentStore) -> _Stoppable:
    """Open the store and start its JournalBus; the returned stop undoes both."""
    bus = store.bus
    assert isinstance(bus, JournalBus)
    store.open()
    bus.start(store)

    def stop() -> None:
        bus.stop()
        store.close()

    return _Stoppable(stop)


def _backlog(readings: ReadingsStore) -> int | None:
    """The readings spool's backlog for the collector's report (None: no spool, or unknown)."""
    backlog = readings.status().get("backlog")
    return backlog if isinstance(backlog, int) else None


def _broker_url(address: BrokerAddress) -> str:
    credentials = f"{address.username}:{address.password}@" if address.username else ""
    scheme = "mqtts" if address.tls else "mqtt"
    return f"{scheme}://{credentials}{address.host}:{address.port}"


def _mqtt_target(address: BrokerAddress) -> MqttTarget:
    return MqttTarget(address.host, address.port, address.username, address.password, address.tls)


def import_site_folder(engine: Engine, settings: Settings) -> None:
    from core.site import import_site, load_site

    assert settings.site is not None
    summary = import_site(session_factory(engine), load_site(settings.site))
    log.info("site %s imported: %s", settings.site, summary)
