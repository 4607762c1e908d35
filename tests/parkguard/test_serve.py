"""`parkguard serve` as a user runs it: a subprocess on the demo park, real broker, real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.contract import encode_event, now_ms, topic_for
from tests.collector.helpers import publish_all, wait_for
from tests.conftest import DEMO_SITE, ROOT, free_port, unique

ADMIN_PASSWORD = "serve-test-admin-password"


def signed_in(base: str) -> dict[str, str]:
    """The Authorization header of a token of the admin that serve created at start-up."""
    form = {"username": "admin", "password": ADMIN_PASSWORD}
    answer = httpx.post(f"{base}/api/v1/auth/token", data=form, timeout=10)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def served(tmp_path: Path, broker: tuple[str, int]) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PARKGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'parkguard.db'}",
        "PARKGUARD_MQTT_URL": f"mqtt://{broker[0]}:{broker[1]}",
        "PARKGUARD_MQTT_CLIENT_ID": unique("serve"),
        "PARKGUARD_SITE": str(DEMO_SITE),
        "PARKGUARD_API_PORT": str(port),
        "PARKGUARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parkguard.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=60, what="parkguard serve healthy")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_two_detectors_in_one_zone_raise_a_confirmed_fire(
    served: str, broker: tuple[str, int]
) -> None:
    t = now_ms()
    publish_all(
        broker,
        [
            (topic_for("cdpark", "A1-W1-SD001", "event"), encode_event(t, 1, "fire_alarm")),
            (topic_for("cdpark", "A1-W1-SD002", "event"), encode_event(t, 1, "fire_alarm")),
        ],
    )

    auth = signed_in(served)

    def alerts() -> list[dict[str, object]]:
        body = httpx.get(
            f"{served}/api/v1/alerts", params={"limit": 50}, headers=auth, timeout=5
        ).json()
        return list(body["items"])

    wait_for(lambda: any(a["rule"] == "fire-confirmed" for a in alerts()), what="confirmed")
    confirmed = [a for a in alerts() if a["rule"] == "fire-confirmed"]
    assert len(confirmed) == 1
    assert confirmed[0]["severity"] == "critical"
    device = httpx.get(f"{served}/api/v1/devices/A1-W1-SD001", headers=auth, timeout=5).json()
    assert device["state"]["presence"] == "online"
    # a real park has no simulated fleet to play scenarios into
    fleetless = httpx.post(
        f"{served}/api/v1/demo/scenarios/warehouse-fire/play", headers=auth, timeout=5
    )
    assert fleetless.status_code == 503


def test_a_bad_rule_file_stops_start_up_with_one_clear_sentence(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for name in ("site.yaml", "devices.csv"):
        (site / name).write_bytes((DEMO_SITE / name).read_bytes())
    (site / "rules.yaml").write_text("rules:\n  - id: broken\n    kind: nonsense\n")
    env = {
        **os.environ,
        "PARKGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'parkguard.db'}",
        "PARKGUARD_MQTT_URL": "mqtt://127.0.0.1:1",
        "PARKGUARD_SITE": str(site),
        "PARKGUARD_API_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "rules.yaml" in done.stderr and "broken" in done.stderr


def test_an_invalid_setting_names_the_variable() -> None:
    env = {**os.environ, "PARKGUARD_API_PORT": "eighty"}
    done = subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "PARKGUARD_API_PORT" in done.stderr


def test_the_scheduler_role_runs_alone_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PARKGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'parkguard.db'}",
        "PARKGUARD_SITE": str(DEMO_SITE),
    }
    # the site must be imported (by serve or `parkguard import`) for tasks to exist
    subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "import", str(DEMO_SITE)],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parkguard.cli", "scheduler"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "is the scheduler leader" in log.read_text(), timeout=60, what="leader")
        wait_for(lambda: "catch-up" in log.read_text(), timeout=60, what="catch-up")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-3000:]


def test_settling_the_heap_collects_garbage_and_freezes_what_start_up_left() -> None:
    """Every role calls it once started (parkguard/cli.py): a full collection of a started
    serve's heap stopped every thread for 130-140 ms; frozen objects are not walked again."""
    import gc

    from parkguard.runtime import settle_heap

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()  # no collection of its own between here and settle_heap()
    try:
        Cycle()  # unreachable, kept alive by its own reference until a collection
        assert sum(1 for o in gc.get_objects() if isinstance(o, Cycle)) == 1
        settle_heap()
        assert not any(isinstance(o, Cycle) for o in gc.get_objects())
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.enable()
