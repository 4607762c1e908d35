"""Shared fixtures: real services (Mosquitto, PostgreSQL), fresh databases, private brokers.

Tests that need the broker or PostgreSQL skip where they are absent, unless
PARKGUARD_TEST_REQUIRE_SERVICES=1 (set by .ci/run), which turns those skips into failures.

Every API route needs a signed-in user (api.auth, api.policy). In-process router tests name
their actor with the ``X-ParkGuard-User`` header (and may set ``X-ParkGuard-Role``, default
admin): the autouse fixture ``signed_in_by_header`` makes the app trust it. Tests in
tests/auth and tests/console, and tests marked ``real_auth``, sign in for real.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from core.db import upgrade

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "examples" / "demo-park"
BROKER_HOST = os.environ.get("PARKGUARD_TEST_BROKER_HOST", "127.0.0.1")
BROKER_PORT = int(os.environ.get("PARKGUARD_TEST_BROKER_PORT", "1883"))
PG_ADMIN_URL = os.environ.get(
    "PARKGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE = os.environ.get("PARKGUARD_TEST_REQUIRE_SERVICES") == "1"
# Tests start collectors under fresh client ids on the machine's shared Mosquitto: a week-long
# session each would pile up there, queueing every later test's messages (subprocesses inherit
# this too).
os.environ.setdefault("PARKGUARD_MQTT_SESSION_EXPIRY_S", "300")


@pytest.fixture(autouse=True)
def signed_in_by_header(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside tests/auth and tests/console (and unless marked ``real_auth``), an in-process
    app takes the caller from ``X-ParkGuard-User`` / ``X-ParkGuard-Role`` (tests.auth.helpers)."""
    folder = Path(str(request.node.path)).resolve().relative_to(ROOT / "tests").parts[0]
    if folder in ("auth", "console") or request.node.get_closest_marker("real_auth"):
        return
    from api.auth import Auth
    from tests.auth.helpers import trust_user_header

    monkeypatch.setattr(Auth, "authenticate", trust_user_header)


def need(available: bool, what: str) -> None:
    """Skip without the service, or fail when CI requires every service."""
    if available:
        return
    if REQUIRE:
        pytest.fail(f"{what} is required (PARKGUARD_TEST_REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} not reachable")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker() -> tuple[str, int]:
    """The machine's Mosquitto (host, port)."""
    need(port_open(BROKER_HOST, BROKER_PORT), f"Mosquitto at {BROKER_HOST}:{BROKER_PORT}")
    return BROKER_HOST, BROKER_PORT


class Mosquitto:
    """A Mosquitto of a test's own on a free port, with the production queue limits
    (deploy/mosquitto/mosquitto-test.conf); stop() and start() again keep its port and data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        need(Path(binary).exists(), "the mosquitto binary")
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        base = (ROOT / "deploy" / "mosquitto" / "mosquitto-test.conf").read_text()
        conf.write_text(base.replace("@PORT@", str(self.port)).replace("@DATA@", str(data)))
        log = self.folder / "mosquitto.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while not port_open(self.host, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker process of the test's own that the test may stop and start."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.folder.mkdir()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_broker(mosquitto: Mosquitto) -> tuple[str, int]:
    """(host, port) of a Mosquitto of the test's own."""
    return mosquitto.address


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'parkguard.db'}"
    upgrade(url)
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of the test's own, dropped afterwards."""
    need(port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    name = unique("pg_")
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run a test on both relational backends."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))
