"""A real uvicorn in a thread and a reader of server-sent events, for tests of live streams."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tests.collector.helpers import wait_for
from tests.conftest import free_port


class Server:
    """An app on a real uvicorn, on a free port, in a thread (for the SSE stream)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10, what="uvicorn")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def read_events(response: httpx.Response, wanted: int) -> list[dict[str, Any]]:
    """The first ``wanted`` server-sent events with data, as {field: value}."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in current:
                events.append(current)
                if len(events) >= wanted:
                    return events
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            current[name] = value.lstrip(" ")
    return events
