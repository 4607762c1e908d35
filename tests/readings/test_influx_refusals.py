"""How the backend answers InfluxDB's refusals, with a small stand-in server on 127.0.0.1 that
answers the v2 write API the way InfluxDB does when victoria-metrics would not: 400 for a bad
line (the whole request refused), 503 for an overloaded server, 401 for a wrong token."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from sqlalchemy import Engine

from core.contract import now_ms
from core.db import make_engine
from core.readings import ReadingRow
from core.readings_influx import InfluxConfig, InfluxReadingsStore
from tests.builders import make_site
from tests.conftest import unique


class Handler(BaseHTTPRequestHandler):
    accepted: ClassVar[list[str]] = []
    answers: ClassVar[list[int]] = []  # statuses to give first, then 204
    tokens: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.tokens.append(self.headers.get("Authorization"))
        status = self.answers.pop(0) if self.answers else 204
        if status == 204 and "BAD" in body:
            status = 400
        if status == 204:
            self.accepted.extend(body.splitlines())
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[type[Handler]]:
    Handler.accepted, Handler.answers, Handler.tokens = [], [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.port = httpd.server_address[1]  # type: ignore[attr-defined]
    yield Handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    make_site(engine, "p", {"ext": "extinguisher"})
    yield engine
    engine.dispose()


def store_for(engine: Engine, server: type[Handler], **options: int) -> InfluxReadingsStore:
    port = server.port  # type: ignore[attr-defined]
    url = f"influxdb://127.0.0.1:{port}?org=o&bucket=b&attempts=3&timeout_ms=2000"
    return InfluxReadingsStore(InfluxConfig.from_url(url, token=unique("tok")), engine)


def rows(t: int, n: int) -> list[ReadingRow]:
    return [ReadingRow("ext", "pressure_mpa", t + i, i, 1.0) for i in range(n)]


def test_a_busy_server_is_retried_and_the_token_is_sent(
    engine: Engine, server: type[Handler]
) -> None:
    store = store_for(engine, server)
    server.answers.extend([503, 503])  # the third try goes through
    with engine.begin() as c:
        store.write(c, rows(now_ms(), 2))
    store.stop()
    assert len(server.accepted) == 2 and store.backlog() == 0
    assert server.tokens == [f"Token {store.config.token}"] * 3


def test_a_refused_line_is_isolated_the_others_drain_in_order(
    engine: Engine, server: type[Handler]
) -> None:
    store = store_for(engine, server)
    server.answers.append(401)  # a wrong token: not retried, nothing confirmed, so spool
    t = now_ms()
    with engine.begin() as c:
        store.write(c, rows(t, 5))
        store._spool(c, [("x/0/0", "BAD line")])  # as a line the server would refuse
        store.write(c, rows(t + 10, 2))
    assert store.backlog() == 8 and store.status()["last_error"] == "HTTP 401: Unauthorized"
    while store.drain_once():
        pass
    store.stop()
    assert store.backlog() == 0
    assert store.counts.rejected == 1
    assert [int(line.rsplit(" ", 1)[1]) // 1_000_000 for line in server.accepted] == [
        *(t + i for i in range(5)),
        t + 10,
        t + 11,
    ]


def test_an_unreachable_server_spools_within_the_timeouts(engine: Engine) -> None:
    from tests.conftest import free_port

    url = f"influxdb://127.0.0.1:{free_port()}?org=o&bucket=b&attempts=2&timeout_ms=500"
    store = InfluxReadingsStore(InfluxConfig.from_url(url), engine)
    with engine.begin() as c:
        assert store.write(c, rows(now_ms(), 3)) == 3
    assert store.backlog() == 3
    assert "Connection refused" in str(store.status()["last_error"])
