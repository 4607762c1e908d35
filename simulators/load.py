"""A load generator: a fleet's devices sending telemetry at a steady total rate, for benchmarks.

    fleet = Fleet.from_site(site, broker, connection="multiplexed", background=False)
    fleet.start(); fleet.wait_ready(30)
    load = LoadGenerator(fleet, rate=7500, duration_s=60)
    load.start(); load.wait()
    print(load.report())

Messages are the devices' real readings (noise, cycles, whatever a scenario holds), round robin
over the devices that are connected and not dropped, each with its own sequence numbers and
now-based timestamps. The generator runs on the fleet's thread, so a scenario played into the
same fleet (a fire during peak load) goes out between the load's messages: that is how alarm
latency under load is measured.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from simulators.devices import SimDevice
from simulators.fleet import Fleet

TICK_S = 0.005
MAX_BURST = 5000
"""Messages sent in one tick at most, so that a late tick does not starve the fleet's I/O."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    sent: int
    seconds: float
    rate: float
    """Messages per second actually published."""
    unacked: int
    """Messages the fleet published that the broker has not acknowledged (yet)."""
    overflow: int
    """Messages the fleet dropped because a client's buffer was full."""


class LoadGenerator:
    """Construct, ``start()``, ``wait()``/``stop()``, ``report()``."""

    def __init__(self, fleet: Fleet, rate: float, duration_s: float | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be more than 0 messages/s, not {rate!r}")
        self.fleet = fleet
        self.rate = rate
        self.duration_s = duration_s
        self.sent = 0
        self.done = threading.Event()
        self._started = 0.0
        self._ended = 0.0
        self._next = 0
        self._stopped = False
        self._devices: list[SimDevice] = []

    def start(self) -> None:
        self.fleet.call(self._begin)

    def stop(self) -> None:
        self._stopped = True
        self.fleet.call(self._finish)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def report(self) -> LoadReport:
        end = self._ended or time.monotonic()
        seconds = max(1e-9, end - self._started) if self._started else 0.0
        stats = self.fleet.stats()
        return LoadReport(
            self.sent,
            seconds,
            self.sent / seconds if seconds else 0.0,
            stats.sent - stats.acked,
            stats.overflow,
        )

    # ---- on the fleet's thread -------------------------------------------------------------

    def _begin(self) -> None:
        self._devices = list(self.fleet.devices.values())
        if not self._devices:
            self._finish()
            return
        self._started = time.monotonic()
        self._tick()

    def _finish(self) -> None:
        if not self.done.is_set():
            self._ended = time.monotonic()
            self.done.set()

    def _tick(self) -> None:
        if self._stopped or self.done.is_set():
            return
        now = time.monotonic()
        elapsed = now - self._started
        if self.duration_s is not None and elapsed >= self.duration_s:
            elapsed = self.duration_s
        due = int(self.rate * elapsed) - self.sent
        devices, clock, fleet = self._devices, self.fleet.clock, self.fleet
        misses = 0
        for _ in range(min(due, MAX_BURST)):
            device = devices[self._next % len(devices)]
            self._next += 1
            if not fleet.sending(device):
                misses += 1
                if misses >= len(devices):
                    break  # every device dropped: nothing to send until one returns
                continue
            fleet.send(device, [device.telemetry(clock, now)])
            self.sent += 1
        if self.duration_s is not None and elapsed >= self.duration_s:
            self._finish()
            return
        self.fleet.call_later(TICK_S, self._tick)
