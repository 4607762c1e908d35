"""`parkguard demo` as a visitor runs it: one command, nothing configured, data within 30 s."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.collector.helpers import wait_for
from tests.conftest import free_port


def test_the_demo_serves_the_console_and_simulated_data_within_30_s(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PARKGUARD_") or k.startswith("PARKGUARD_TEST")
    }
    env.update(
        PARKGUARD_DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
        PARKGUARD_API_PORT=str(port),
    )
    log = tmp_path / "demo.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parkguard.cli", "demo"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        printed = re.compile(r"as admin with the password (\S+)")
        wait_for(
            lambda: printed.search(log.read_text()) is not None,
            timeout=30,
            what="the admin password",
        )
        match = printed.search(log.read_text())
        assert match, log.read_text()[-2000:]

        def answering() -> bool:
            try:
                return httpx.get(f"{base}/api/v1/health", timeout=2).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for(answering, timeout=30, what="the API answering")
        console = httpx.get(f"{base}/", follow_redirects=True, timeout=5)
        assert console.status_code == 200 and "<html" in console.text.lower()
        token = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": "admin", "password": match.group(1)},
            timeout=5,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def online() -> int:
            body = httpx.get(f"{base}/api/v1/health", timeout=5).json()
            return int(body["ingest"]["stored"])

        wait_for(
            lambda: online() > 0,
            timeout=max(1.0, 30 - (time.monotonic() - started)),
            what="simulated data stored",
        )
        devices = httpx.get(
            f"{base}/api/v1/devices", params={"limit": 500}, headers=headers, timeout=5
        ).json()
        assert devices["total"] >= 300
        assert any(d["presence"] == "online" for d in devices["items"])

        # a visitor plays a scenario, as the console's button does
        names = [
            s["name"]
            for s in httpx.get(f"{base}/api/v1/demo/scenarios", headers=headers, timeout=5).json()
        ]
        assert "warehouse-fire" in names
        unknown = httpx.post(
            f"{base}/api/v1/demo/scenarios/no-such/play", headers=headers, timeout=5
        )
        assert unknown.status_code == 404
        played = httpx.post(
            f"{base}/api/v1/demo/scenarios/warehouse-fire/play",
            json={"drill": True, "speed": 30},
            headers=headers,
            timeout=5,
        )
        assert played.status_code == 202, played.text
        assert played.json()["drill"] is True

        def fire_alerts() -> set[str]:
            body = httpx.get(
                f"{base}/api/v1/alerts", params={"limit": 200}, headers=headers, timeout=5
            ).json()
            return {a["rule"] for a in body["items"]}

        wait_for(lambda: "fire-prealarm" in fire_alerts(), timeout=30, what="the drill's alarm")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()[-3000:]
