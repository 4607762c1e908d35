"""A small in-process publish/subscribe bus for fan-out: one publisher, several subscribers.

The publisher calls ``publish`` in the order its items were committed; every subscriber sees
them in that order. A subscriber is a callable that must return quickly (hand the item to a
queue or an event loop); a subscriber that raises is counted and logged, and the others still
get the item. ``subscribe_queue`` gives a bounded queue for a worker thread; when it is full the
item is not silently lost: the subscription counts it in ``dropped`` and keeps the newest.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Subscription(Generic[T]):
    """A bounded queue fed by the bus; ``close`` detaches it."""

    def __init__(self, maxsize: int) -> None:
        self.queue: queue.Queue[T] = queue.Queue(maxsize)
        self.dropped = 0
        self._detach: Callable[[], None] = lambda: None

    def put(self, item: T) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                    log.error("bus subscriber queue full: oldest item dropped (%d)", self.dropped)
                except queue.Empty:
                    pass

    def get(self, timeout: float | None = None) -> T | None:
        """The next item, or None after ``timeout`` seconds without one."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._detach()


class Bus(Generic[T]):
    def __init__(self) -> None:
        self._subscribers: tuple[Callable[[T], None], ...] = ()
        self._lock = threading.Lock()
        self.published = 0
        self.subscriber_errors = 0

    def subscribe(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback(item)`` for each item published from now on; returns unsubscribe."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    def subscribe_queue(self, maxsize: int = 10_000) -> Subscription[T]:
        subscription: Subscription[T] = Subscription(maxsize)
        subscription._detach = self.subscribe(subscription.put)
        return subscription

    def publish(self, item: T) -> None:
        self.published += 1
        for callback in self._subscribers:
            try:
                callback(item)
            except Exception:  # one broken subscriber must not starve the others
                self.subscriber_errors += 1
                log.exception("bus subscriber %r failed", callback)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
