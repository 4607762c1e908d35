"""The console in a real browser: `parkguard serve` as a subprocess on the demo park (fresh
SQLite, the machine's Mosquitto, a free port, PARKGUARD_ADMIN_PASSWORD), driven by Playwright
in Debian's chromium (/usr/bin/chromium; Playwright's own browser download is not used).
Screenshots go to test-artifacts/console/ (not committed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.collector.helpers import wait_for
from tests.conftest import BROKER_HOST, BROKER_PORT, DEMO_SITE, ROOT, free_port, need, port_open
from tests.conftest import unique as unique_name

CHROMIUM = Path(os.environ.get("PARKGUARD_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_PASSWORD = "console-test-admin-password"
ARTIFACTS = ROOT / "test-artifacts" / "console"


@dataclass
class Served:
    """A `parkguard serve` process of a test's own; stop() and start() keep port and data."""

    folder: Path
    port: int
    client_id: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.folder / 'parkguard.db'}"

    def start(self) -> None:
        env = {
            **os.environ,
            "PARKGUARD_DATABASE_URL": self.database_url,
            "PARKGUARD_MQTT_URL": f"mqtt://{BROKER_HOST}:{BROKER_PORT}",
            "PARKGUARD_MQTT_CLIENT_ID": self.client_id,
            "PARKGUARD_SITE": str(DEMO_SITE),
            "PARKGUARD_API_PORT": str(self.port),
            "PARKGUARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        log = self.folder / "serve.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parkguard.cli", "serve"],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.base}/api/v1/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=60, what="parkguard serve healthy")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


def serve(folder: Path) -> Served:
    need(port_open(BROKER_HOST, BROKER_PORT), f"Mosquitto at {BROKER_HOST}:{BROKER_PORT}")
    folder.mkdir(parents=True, exist_ok=True)
    served = Served(folder, free_port(), unique_name("console"))
    served.start()
    return served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve(tmp_path_factory.mktemp("console"))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    need(CHROMIUM.exists(), f"Debian's chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "Playwright for Python")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(
        viewport={"width": 1600, "height": 900}, locale="zh-CN", bypass_csp=True
    )  # bypass_csp: Playwright evaluates its wait_for_function predicates as strings
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], errors


def screenshot(page: object, name: str) -> Path:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def sign_in(page: object, base: str, lang: str = "zh-CN") -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.add_init_script(f"localStorage.setItem('parkguard.lang', '{lang}')")
    page.goto(f"{base}/")
    page.fill("#login-user", "admin")
    page.fill("#login-password", ADMIN_PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("body[data-view=main][data-live=true]", timeout=15_000)
