"""What the API serves from: the stores and live services, handed in by whoever runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from core.catalogue import Catalogue
from core.db import SessionFactory
from core.ingest import IngestStatus
from core.readings import ReadingsStore
from core.settings import Settings


@dataclass(slots=True, kw_only=True)
class AppContext:
    """Everything a route may reach, built by the wiring (``parkguard serve``) or by a test.

    The API does not own these: whoever builds the context opens them and closes them
    (``engine.dispose()``) after the app has stopped.
    """

    settings: Settings
    engine: Engine
    sessions: SessionFactory
    readings: ReadingsStore
    catalogue: Catalogue
    ingest_status: Callable[[], IngestStatus]
    """The collector's live status (``collector.status``), asked at each health request."""
    registry: CollectorRegistry
    """Served at ``/metrics``."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Services of later packages by name, e.g. ``extras["alerts"]`` for the alerts router."""
