"""Wiring of the processes: database, built-in broker, collector and API, started and stopped
in order. The only place that composes everything (with the API)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from collector.client import BrokerAddress
from collector.metrics import IngestMetrics
from collector.service import Collector
from core.catalogue import load_catalogue
from core.db import make_engine, session_factory, upgrade
from core.readings import open_readings_store
from core.settings import Settings
from parkguard.broker import EmbeddedBroker

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Construct with settings; start() opens everything, stop() closes it in reverse."""

    settings: Settings
    engine: Engine | None = None
    broker: EmbeddedBroker | None = None
    collector: Collector | None = None
    app: FastAPI | None = None
    services: list[Any] = field(default_factory=list)

    def start(self) -> FastAPI:
        """Start ingest and build the API app on it."""
        from api.app import create_app
        from api.context import AppContext

        collector = self.start_ingest()
        assert self.engine is not None
        ctx = AppContext(
            settings=self.settings,
            engine=self.engine,
            sessions=session_factory(self.engine),
            readings=collector.readings,
            catalogue=collector.catalogue,
            ingest_status=collector.status,
            registry=collector.metrics.registry,
        )
        self.app = create_app(ctx)
        return self.app

    def start_ingest(self) -> Collector:
        """Migrate, import the site, start the broker (if built in) and the collector."""
        settings = self.settings
        upgrade(settings.database_url)
        engine = self.engine = make_engine(settings.database_url)
        if settings.site is not None:
            import_site_folder(engine, settings)
        address = self._broker_address()
        catalogue = load_catalogue()
        readings = open_readings_store(settings.readings_url, engine)
        metrics = IngestMetrics()
        self.collector = Collector(self.settings, engine, readings, catalogue, address, metrics)
        self.collector.start()
        return self.collector

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        if self.collector is not None:
            self.collector.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.engine is not None:
            self.engine.dispose()

    def _broker_address(self) -> BrokerAddress:
        if self.settings.mqtt_url:
            return BrokerAddress.from_url(self.settings.mqtt_url)
        self.broker = EmbeddedBroker("127.0.0.1", 1883)
        port = self.broker.start()
        # amqtt speaks MQTT 3.1.1 only
        self.settings = self.settings.model_copy(update={"mqtt_protocol": "3.1.1"})
        return BrokerAddress("127.0.0.1", port)


def import_site_folder(engine: Engine, settings: Settings) -> None:
    from core.site import import_site, load_site

    assert settings.site is not None
    summary = import_site(session_factory(engine), load_site(settings.site))
    log.info("site %s imported: %s", settings.site, summary)
