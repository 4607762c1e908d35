"""The three roles of docker-compose.yml as processes: ``parkguard collect``, ``parkguard api``
and ``parkguard scheduler`` on the demo park, PostgreSQL and a broker of the test's own; a
fire alarm reaches the API's SSE stream, and ``parkguard health ROLE`` tells each role's state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from core.contract import encode_event, now_ms, topic_for
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import DEMO_SITE, ROOT, free_port, unique
from tests.live import read_events
from tests.parkguard.test_serve import ADMIN_PASSWORD, signed_in


def environment(database_url: str, broker: tuple[str, int], api_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKGUARD_")}
    env.update(
        PARKGUARD_DATABASE_URL=database_url,
        PARKGUARD_MQTT_URL=f"mqtt://{broker[0]}:{broker[1]}",
        PARKGUARD_MQTT_CLIENT_ID=unique("roles"),
        PARKGUARD_SITE=str(DEMO_SITE),
        PARKGUARD_API_PORT=str(api_port),
        PARKGUARD_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    return env


@contextmanager
def role(command: str, env: dict[str, str], folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``parkguard COMMAND`` until the block ends; then SIGTERM, and it must exit 0."""
    log = folder / f"{command}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parkguard.cli", command],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]


def health(check: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "health", check, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_collect_api_and_scheduler_as_processes(
    pg_url: str, private_broker: tuple[str, int], tmp_path: Path
) -> None:
    port = free_port()
    env = environment(pg_url, private_broker, port)
    base = f"http://127.0.0.1:{port}"
    with role("collect", env, tmp_path) as collect:
        wait_for(
            lambda: collect.poll() is None and health("collector", env).returncode == 0,
            timeout=60,
            what="the collector's report",
        )
        with role("api", env, tmp_path) as api, role("scheduler", env, tmp_path):

            def answering() -> bool:
                assert api.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
                try:
                    return httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(answering, timeout=60, what="parkguard api healthy")
            auth = signed_in(base)  # the first admin, made by `parkguard api` as serve does
            with httpx.stream(
                "GET", f"{base}/api/v1/alerts/stream", headers=auth, timeout=30
            ) as stream:
                at = now_ms()
                device = "A1-W1-SD001"
                publish_all(
                    private_broker,
                    [(topic_for("cdpark", device, "event"), encode_event(at, 1, "fire_alarm"))],
                )
                event = json.loads(read_events(stream, 1)[0]["data"])
            assert (event["action"], event["alert"]["rule"]) == ("raised", "fire-prealarm")
            assert event["alert"]["device"] == device

            assert health("api", env).returncode == 0
            wait_for(lambda: health("scheduler", env).returncode == 0, what="the lease")
            assert "ok" in health("collector", env).stdout

            collect.send_signal(signal.SIGTERM)
            collect.wait(timeout=60)
            stopped = health("collector", env)
            assert stopped.returncode == 1
            assert "stopped at" in stopped.stderr
            down = httpx.get(f"{base}/api/v1/health", timeout=5)
            assert down.status_code == 503
            assert health("api", env).returncode == 0  # the API itself still works


def test_health_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    env = environment(f"sqlite:///{tmp_path / 'empty.db'}", ("127.0.0.1", 1), free_port())
    unknown = health("everything", env)
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    nobody = health("api", env, "--url", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 1 and "does not answer" in nobody.stderr
    no_db = health("collector", env)
    assert no_db.returncode == 1 and "cannot be read" in no_db.stderr
    (tmp_path / "empty2").mkdir()
    env["PARKGUARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty2' / 'p.db'}"
    subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "db", "upgrade"], env=env, cwd=ROOT, check=True
    )
    assert (
        health("collector", env)
        .stderr.strip()
        .endswith(
            "no collector " + env["PARKGUARD_MQTT_CLIENT_ID"] + " has reported to this database"
        )
    )
    assert "no scheduler holds the maintenance lease" in health("scheduler", env).stderr


@pytest.mark.parametrize("command", ["api", "collect"])
def test_a_bad_rule_file_stops_a_role_with_one_sentence(command: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for name in ("site.yaml", "devices.csv"):
        (site / name).write_bytes((DEMO_SITE / name).read_bytes())
    (site / "rules.yaml").write_text("rules:\n  - id: broken\n    kind: nonsense\n")
    env = environment(f"sqlite:///{tmp_path / 'p.db'}", ("127.0.0.1", 1), free_port())
    env["PARKGUARD_SITE"] = str(site)
    done = subprocess.run(
        [sys.executable, "-m", "parkguard.cli", command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "rules.yaml" in done.stderr and "Traceback" not in done.stderr
