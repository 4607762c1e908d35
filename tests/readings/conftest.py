"""A real server speaking the InfluxDB v2 write API: Debian's victoria-metrics, started by the
test on a free 127.0.0.1 port with its own data folder, and stoppable to make an outage."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port, need, port_open

VICTORIA = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


@dataclass
class Victoria:
    """victoria-metrics on ``port`` with data in ``data``; ``stop()`` and ``start()`` again."""

    port: int
    data: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def readings_url(self, **options: object) -> str:
        query = urllib.parse.urlencode({"org": "park", "bucket": "readings", **options})
        return f"influxdb://127.0.0.1:{self.port}?{query}"

    def start(self) -> None:
        args = [
            VICTORIA,
            f"-storageDataPath={self.data}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-loggerLevel=ERROR",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out)
        deadline = time.monotonic() + 20
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"victoria-metrics did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def export(self) -> list[dict[str, object]]:
        """Every stored series: ``{"metric": {labels}, "values": [...], "timestamps": [...]}``."""
        urllib.request.urlopen(f"{self.base}/internal/force_flush", timeout=10).close()
        body = urllib.parse.urlencode({"match[]": '{__name__!=""}', "start": "0"}).encode()
        with urllib.request.urlopen(f"{self.base}/api/v1/export", body, timeout=30) as response:
            text = response.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def samples(self) -> dict[tuple[str, ...], list[tuple[int, float]]]:
        """(name, device, site, zone) -> sorted (timestamp ms, value) samples."""
        out: dict[tuple[str, ...], list[tuple[int, float]]] = {}
        for series in self.export():
            labels = dict(series["metric"])  # type: ignore[call-overload]
            key = tuple(
                str(labels.pop(name, "")) for name in ("__name__", "device", "site", "zone")
            )
            assert labels == {}, f"unexpected labels {labels}"
            values = series["values"]
            stamps = series["timestamps"]
            assert isinstance(values, list) and isinstance(stamps, list)
            out[key] = sorted(zip(stamps, values, strict=True))
        return out

    def wait_for_samples(
        self, expected: int, timeout: float = 30.0
    ) -> dict[tuple[str, ...], list[tuple[int, float]]]:
        """Poll the export until it holds ``expected`` samples in all (then wait a moment more
        to see that no extra ones arrive)."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.samples()
            total = sum(len(v) for v in samples.values())
            if total >= expected:
                time.sleep(1.5)
                return self.samples()
            if time.monotonic() > deadline:
                raise AssertionError(f"victoria-metrics holds {total} samples, not {expected}")
            time.sleep(0.25)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Victoria]:
    need(Path(VICTORIA).exists(), "the victoria-metrics binary (Debian package victoria-metrics)")
    server = Victoria(free_port(), tmp_path / "vm-data", tmp_path / "vm.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
