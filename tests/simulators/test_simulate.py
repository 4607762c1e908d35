"""`parkguard simulate` as a user runs it: a subprocess against a real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from core.db import make_engine, session_factory
from core.site import import_site, load_site
from parkguard.cli import main
from tests.collector.helpers import count, running_collector, wait_for
from tests.conftest import DEMO_SITE
from tests.simulators.helpers import observing


def simulate(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | (env or {}),
        check=False,
    )


def url(broker: tuple[str, int]) -> str:
    return f"mqtt://{broker[0]}:{broker[1]}"


def test_a_drill_runs_through_the_collector_and_is_marked_in_every_event(
    sqlite_url: str, private_broker: tuple[str, int]
) -> None:
    engine = make_engine(sqlite_url)
    import_site(session_factory(engine), load_site(DEMO_SITE))
    with running_collector(engine, private_broker, flush_interval_ms=50):
        done = simulate(
            "--site",
            str(DEMO_SITE),
            "--scenario",
            "warehouse-fire",
            "--speed",
            "480",
            "--drill",
            "--broker",
            url(private_broker),
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: count(engine, "select count(*) from device_events") >= 6)
    with engine.connect() as c:
        events = c.execute(text("select device_id, event, detail from device_events")).all()
    engine.dispose()
    assert ("A1-W1-SD008", "fire_alarm") in [(e.device_id, e.event) for e in events]
    for event in events:
        detail = event.detail if isinstance(event.detail, dict) else orjson.loads(event.detail)
        assert detail["drill"] is True and detail["scenario"] == "warehouse-fire"
    assert "scenario warehouse-fire (drill): 9 of 9 steps" in done.stdout
    assert "devices 766" in done.stdout


def test_rate_and_devices_drive_load_from_the_environment_s_broker(
    private_broker: tuple[str, int],
) -> None:
    with observing(private_broker) as observer:
        done = simulate(
            "--devices",
            "50",
            "--rate",
            "1500",
            "--duration",
            "2s",
            env={"PARKGUARD_MQTT_URL": url(private_broker), "PARKGUARD_SITE": str(DEMO_SITE)},
        )
        assert done.returncode == 0, done.stderr
        wait_until_quiet = time.monotonic() + 2
        while time.monotonic() < wait_until_quiet and len(observer.all()) < 3000:
            time.sleep(0.05)
    telemetry = [s for s in observer.all() if s.channel == "telemetry"]
    assert 2700 <= len(telemetry) <= 3300  # 1,500/s for 2 s
    assert len({s.device_id for s in telemetry}) == 50 + 4  # and the 4 the normal day names
    assert "load: " in done.stdout and "/s" in done.stdout


def test_ctrl_c_stops_the_fleet_cleanly(private_broker: tuple[str, int]) -> None:
    with observing(private_broker) as observer:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parkguard.cli", "simulate", "--devices", "20"],
            env=os.environ | {"PARKGUARD_MQTT_URL": url(private_broker)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: len([s for s in observer.all() if s.channel == "status"]) >= 20)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        statuses = [s.decoded() for s in observer.all() if s.channel == "status"]
    assert proc.returncode == 130, err
    goodbyes = [getattr(s, "online", None) for s in statuses].count(False)
    assert goodbyes == 20 + 4  # every device, the 4 the normal day names among them
    assert "scenario normal-day" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "warehouse-flood"], "no such scenario file"),
        (["--speed", "0"], "--speed must be more than 0"),
        (["--devices", "5000"], "has 766 devices; cannot simulate 5000"),
        (["--broker", "http://x"], "must look like mqtt://"),
        (["--duration", "soon"], "'soon' is not a duration"),
    ],
)
def test_bad_arguments_stop_with_one_sentence(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = [] if "--broker" in args else ["--broker", "mqtt://127.0.0.1:1"]
    assert main(["simulate", *args, *broker]) == 2
    assert message in capsys.readouterr().err


def test_a_scenario_that_does_not_fit_the_site_names_its_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "title: {zh: 坏, en: Bad}\nsteps:\n  - {at: 1m, devices: [NOPE-1], event: test}\n",
        encoding="utf-8",
    )
    assert main(["simulate", "--scenario", str(bad), "--broker", "mqtt://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml, step 1 (at 1m), field 'devices': no device 'NOPE-1'" in err


def test_the_list_names_every_built_in_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "warehouse-fire" in out and "Fire in the bonded warehouse" in out
