"""Per-device Mosquitto credentials, against a real Mosquitto that the test starts on its own
port with the production configuration (deploy/mosquitto/mosquitto.conf, paths pointed at the
test's folder) and the files `parkguard mqtt-auth export` wrote."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, select

from core.contract import alerts_topic, encode_telemetry, now_ms, topic_for
from core.db import make_engine
from core.models_spool import MqttCredential
from parkguard import cli
from parkguard.mqtt_auth import (
    API_USER,
    COLLECTOR_USER,
    check_password,
    export,
    hash_password,
    issue,
    issue_missing,
)
from tests.builders import make_site
from tests.collector.helpers import count, running_collector, wait_for
from tests.conftest import ROOT, free_port, need, port_open, unique

SERVICES = {COLLECTOR_USER: "collector-pw-" + unique(), API_USER: "api-pw-" + unique()}


@dataclass
class AuthBroker:
    engine: Engine
    site: str
    secrets: dict[str, str]
    auth_dir: Path
    port: int
    proc: subprocess.Popen[bytes]

    def reload(self) -> None:
        export(self.engine, self.auth_dir, SERVICES)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)


def production_conf(port: int, folder: Path) -> str:
    text = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "\nlistener 1883\n" in text
    # started as root, Mosquitto would drop to the user `mosquitto`, who cannot enter the
    # test's private folder (in compose, the files belong to Mosquitto's user instead)
    stay = "user root\n" if os.geteuid() == 0 else ""
    return stay + (
        text.replace("\nlistener 1883\n", f"\nlistener {port} 127.0.0.1\n")
        .replace("/mosquitto/data/", f"{folder / 'data'}/")
        .replace("/mosquitto/auth/", f"{folder / 'auth'}/")
    )


@pytest.fixture
def auth_broker(tmp_path: Path, sqlite_url: str) -> Iterator[AuthBroker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    need(Path(binary).exists(), "the mosquitto binary")
    engine = make_engine(sqlite_url)
    site = unique("s")
    make_site(engine, site, {f"{site}-a": "extinguisher", f"{site}-b": "extinguisher"})
    secrets = issue_missing(engine)
    result = export(engine, tmp_path / "auth", SERVICES)
    assert result.devices == 2 and result.without_secret == [] and result.refused == []
    (tmp_path / "data").mkdir()
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(production_conf(port, tmp_path))
    log = tmp_path / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mosquitto did not start: {log.read_text()}")
        time.sleep(0.05)
    yield AuthBroker(engine, site, secrets, tmp_path / "auth", port, proc)
    proc.terminate()
    proc.wait(timeout=10)
    engine.dispose()


class Client:
    """A paho client that records what it was told: CONNACK, SUBACK and messages."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.connack: Any = None
        self.suback: list[Any] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.done = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=unique("c"), protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.suback.extend(codes)
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.done.wait(10), "no CONNACK"

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connack = reason
        self.done.set()

    @property
    def accepted(self) -> bool:
        return not self.connack.is_failure

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def readings(engine: Engine, device: str) -> int:
    return count(engine, "SELECT count(*) FROM readings WHERE device_id = :d", d=device)


def test_a_wrong_or_missing_password_cannot_connect(auth_broker: AuthBroker) -> None:
    a = f"{auth_broker.site}-a"
    for user, password in (
        (a, "not-the-secret"),
        (a, auth_broker.secrets[f"{auth_broker.site}-b"]),  # another device's secret
        ("nobody", "x"),
        (None, None),
        (COLLECTOR_USER, "guess"),
    ):
        client = Client(auth_broker.port, user, password)
        client.close()
        assert not client.accepted, (user, client.connack)
    client = Client(auth_broker.port, a, auth_broker.secrets[a])
    client.close()
    assert client.accepted


def test_a_device_speaks_only_for_itself_and_the_collector_still_ingests(
    auth_broker: AuthBroker,
) -> None:
    engine, s = auth_broker.engine, auth_broker.site
    a, b = f"{s}-a", f"{s}-b"
    collector_address = ("127.0.0.1", auth_broker.port, COLLECTOR_USER, SERVICES[COLLECTOR_USER])
    watcher = Client(auth_broker.port, API_USER, SERVICES[API_USER])
    watcher.client.subscribe(alerts_topic(s), qos=1)
    device = Client(auth_broker.port, a, auth_broker.secrets[a])
    device.client.subscribe("parkguard/#", qos=1)  # a device reads nothing
    t = now_ms()
    try:
        with running_collector(engine, cast(tuple[str, int], collector_address)) as collector:
            wait_for(lambda: len(device.suback) == 1 and len(watcher.suback) == 1)
            device.publish(topic_for(s, b, "telemetry"), encode_telemetry(t, 1, {"present": True}))
            device.publish(alerts_topic(s), b'{"forged": true}')
            device.publish(topic_for(s, a, "telemetry"), encode_telemetry(t, 2, {"present": True}))
            wait_for(lambda: readings(engine, a) == 1, what="the device's own reading")
            time.sleep(1.0)  # time enough for anything else to arrive
            assert collector.status().broker_connected
    finally:
        device.close()
        watcher.close()
    assert readings(engine, b) == 0
    assert count(engine, "SELECT count(*) FROM dead_letters") == 0
    assert device.messages == []
    assert watcher.messages == []


def test_rotation_replaces_the_secret(auth_broker: AuthBroker) -> None:
    a = f"{auth_broker.site}-a"
    old = auth_broker.secrets[a]
    new = issue(auth_broker.engine, a)
    with auth_broker.engine.connect() as c:
        stored = c.execute(
            select(MqttCredential.password_hash).where(MqttCredential.device_id == a)
        ).scalar_one()
    assert check_password(new, stored) and not check_password(old, stored)
    assert new not in stored
    auth_broker.reload()
    for secret, accepted in ((old, False), (new, True)):
        client = Client(auth_broker.port, a, secret)
        client.close()
        assert client.accepted is accepted


def test_the_command_shows_new_secrets_once_and_stores_only_hashes(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    make_site(engine, "p", {"dev-1": "smoke_detector", "alerts": "smoke_detector"})
    monkeypatch.setenv("PARKGUARD_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PARKGUARD_MQTT_COLLECTOR_PASSWORD", "c")
    monkeypatch.delenv("PARKGUARD_MQTT_API_PASSWORD", raising=False)
    assert cli.main(["mqtt-auth", "export", str(tmp_path / "auth")]) == 2  # API password unset
    monkeypatch.setenv("PARKGUARD_MQTT_API_PASSWORD", "a")

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["mqtt-auth", "export", "--issue-missing", str(tmp_path / "auth")]) == 0
    header, *rows = out.getvalue().splitlines()
    assert header == "device_id,site_id,password"
    issued = dict((r.split(",")[0], r.split(",")[2]) for r in rows)
    assert set(issued) == {"alerts", "dev-1"}
    with redirect_stdout(io.StringIO()) as again:
        assert cli.main(["mqtt-auth", "export", "--issue-missing", str(tmp_path / "auth")]) == 0
    assert again.getvalue().splitlines() == ["device_id,site_id,password"]  # shown once

    passwd = (tmp_path / "auth" / "passwd").read_text()
    acl = (tmp_path / "auth" / "acl").read_text()
    with engine.connect() as c:
        query = select(MqttCredential.device_id, MqttCredential.password_hash)
        stored = {device: hashed for device, hashed in c.execute(query)}
    for device, secret in issued.items():
        assert secret not in passwd and secret not in stored[device]
        assert check_password(secret, stored[device])
    assert f"dev-1:{stored['dev-1']}" in passwd.splitlines()
    assert "user dev-1\ntopic write parkguard/p/dev-1/#\n" in acl
    assert "alerts" not in [line.split(":")[0] for line in passwd.splitlines()]  # reserved id
    assert "user alerts" not in acl
    assert oct(os.stat(tmp_path / "auth" / "passwd").st_mode & 0o777) == "0o640"

    with redirect_stdout(io.StringIO()) as rotated:
        assert cli.main(["mqtt-auth", "rotate", "dev-1"]) == 0
    assert check_password(rotated.getvalue().strip(), _hash_of(engine, "dev-1"))
    assert cli.main(["mqtt-auth", "rotate", "no-such-device"]) == 1
    engine.dispose()


def _hash_of(engine: Engine, device: str) -> str:
    with engine.connect() as c:
        return str(
            c.execute(
                select(MqttCredential.password_hash).where(MqttCredential.device_id == device)
            ).scalar_one()
        )


def test_hashes_are_in_mosquitto_passwd_format(tmp_path: Path) -> None:
    encoded = hash_password("s3cret", iterations=101, salt=b"0123456789ab")
    assert encoded.startswith("$7$101$MDEyMzQ1Njc4OWFi$")
    assert check_password("s3cret", encoded) and not check_password("s3creT", encoded)
    binary = shutil.which("mosquitto_passwd")
    if binary is None:
        return
    # and the other way round: a hash written by mosquitto_passwd checks out here
    path = tmp_path / "pw"
    subprocess.run([binary, "-c", "-b", str(path), "u", "s3cret"], check=True)
    line = path.read_text().strip()
    assert check_password("s3cret", line.split(":", 1)[1])
