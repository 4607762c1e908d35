"""The bounded two-lane inbox between the MQTT network thread and the writer.

Events and status messages (fire alarms first of all) go in the urgent lane and are written
at once; telemetry waits for a batch. When the inbox is full, `put` blocks the network thread:
the broker then holds the messages (visible back-pressure, counted), nothing is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from core.contract import is_urgent_topic


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ms: int
    retained: bool = False
    """Replayed from the broker's retained store on subscribing, not published just now."""
    copy: bool = False
    """The bulk connection's copy of an event or status message, which the alarm connection
    receives too. It waits with the telemetry; whichever copy is written first is stored,
    the other is a duplicate of the same identity. Keeping both costs a duplicate insert per
    alarm and means an alarm is not lost when one session lacks it (the alarm session is new
    after an upgrade, or the broker refuses it)."""

    @property
    def urgent(self) -> bool:
        return not self.copy and is_urgent_topic(self.topic)


@dataclass(frozen=True, slots=True)
class Control:
    """A signal from the network thread that the writer must record in order."""

    kind: str  # "connected" | "disconnected"
    at_ms: int


Item = Received | Control


class Inbox:
    def __init__(self, maxsize: int, on_full: Callable[[], None] | None = None) -> None:
        self._urgent: deque[Item] = deque()
        self._bulk: deque[Item] = deque()
        self._maxsize = maxsize
        self._on_full = on_full
        self._cond = threading.Condition()
        self._closed = False
        self._bulk_since = 0.0
        self._batch_hint = 0

    def __len__(self) -> int:
        return len(self._urgent) + len(self._bulk)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def put(self, item: Item) -> None:
        urgent = isinstance(item, Control) or item.urgent
        with self._cond:
            if not urgent and len(self) >= self._maxsize:
                if self._on_full is not None:
                    self._on_full()
                while len(self) >= self._maxsize and not self._closed:
                    self._cond.wait(0.5)
            if urgent:
                self._urgent.append(item)
                self._cond.notify()
            else:
                bulk = self._bulk
                if not bulk:
                    self._bulk_since = time.monotonic()
                bulk.append(item)
                if len(bulk) == 1 or len(bulk) == self._batch_hint:
                    self._cond.notify()

    def has_urgent(self) -> bool:
        """Whether urgent items wait (read without the lock: a hint, checked often)."""
        return bool(self._urgent)

    def take_urgent(self) -> list[Item]:
        """The urgent items waiting now, without waiting for any: a telemetry transaction
        that sees an alarm arrive takes it in and commits (one commit, not two)."""
        with self._cond:
            items = list(self._urgent)
            self._urgent.clear()
            self._cond.notify_all()
            return items

    def requeue(self, items: list[Item]) -> None:
        """Put items taken but not written back at the front, due at once. They were counted
        when they first came in, so this never blocks on a full inbox."""
        if not items:
            return
        with self._cond:
            for item in reversed(items):
                urgent = isinstance(item, Control) or item.urgent
                (self._urgent if urgent else self._bulk).appendleft(item)
            self._bulk_since = 0.0
            self._cond.notify()

    def take(self, batch_size: int, linger_s: float) -> tuple[list[Item], bool]:
        """Wait for work; return (items, urgent).

        Urgent items are returned as soon as they are there, on their own. Telemetry is
        returned when `batch_size` items are waiting or `linger_s` after the first arrived.
        An empty list means the wait timed out or the inbox was closed.
        """
        with self._cond:
            self._batch_hint = batch_size
            while True:
                if self._urgent:
                    items = list(self._urgent)
                    self._urgent.clear()
                    self._cond.notify_all()
                    return items, True
                if self._bulk:
                    now = time.monotonic()
                    deadline = self._bulk_since + linger_s
                    if len(self._bulk) >= batch_size or now >= deadline or self._closed:
                        count = min(batch_size, len(self._bulk))
                        items = [self._bulk.popleft() for _ in range(count)]
                        self._bulk_since = now
                        self._cond.notify_all()
                        return items, False
                    self._cond.wait(deadline - now)
                    continue
                if self._closed:
                    return [], False
                if not self._cond.wait(linger_s):
                    return [], False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
