"""The live SSE streams of journaled changes (alerts, incidents): each client gets every
change in commit order, can resume after the last id it saw, and is told to reload when it
falls too far behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

from sse_starlette import EventSourceResponse, ServerSentEvent

from core.bus import Bus
from core.journal import Journaled

STREAM_QUEUE = 1000
"""Changes a client may fall behind by before it is told to reload (``resync``)."""
PING_S = 15
SEND_TIMEOUT_S = 30
REPLAY_MAX = 500
"""Changes sent again at most on a resume (``Last-Event-ID``)."""
LAST_EVENT_ID = r"^\d{1,18}$"


C = TypeVar("C", bound=Journaled)


class Streamed(Protocol[C]):
    @property
    def bus(self) -> Bus[C]: ...

    def changes_since(self, seq: int, limit: int) -> list[C]: ...


def journal_stream(
    store: Streamed[C], last_event_id: str | None, name: str, event: Callable[[C], ServerSentEvent]
) -> EventSourceResponse:
    """The stream of ``store``'s changes, replaying those journaled after ``last_event_id``
    first. A change without a seq (an alert's repeat) is sent as it comes."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[C | None] = asyncio.Queue(STREAM_QUEUE)

    def deliver(change: C) -> None:
        try:
            queue.put_nowait(change)
        except asyncio.QueueFull:  # a client this far behind reloads: tell it so
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    def on_change(change: C) -> None:
        loop.call_soon_threadsafe(deliver, change)

    after = int(last_event_id) if last_event_id is not None else None

    async def events() -> AsyncIterator[ServerSentEvent]:
        unsubscribe = store.bus.subscribe(on_change)  # before the replay: no gap between
        try:
            replay: list[C] = []
            if after is not None:
                replay = await asyncio.to_thread(store.changes_since, after, REPLAY_MAX)
            seen = max((c.seq or 0 for c in replay), default=after or 0)
            yield ServerSentEvent(comment=f"parkguard {name}")
            for missed in replay:
                yield event(missed)
            while True:
                change = await queue.get()
                if change is None:
                    yield ServerSentEvent(data="{}", event="resync")
                    continue
                if change.seq is not None:
                    if change.seq <= seen:
                        continue
                    seen = change.seq
                yield event(change)
        finally:
            unsubscribe()

    return EventSourceResponse(
        events(), ping=PING_S, send_timeout=SEND_TIMEOUT_S, headers={"Cache-Control": "no-store"}
    )
