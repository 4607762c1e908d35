"""``/api/v1/reports`` and ``/api/v1/training``, the monthly job and ``parkguard report``: every
format and language, every bad input a 422 (or 404) saying why in one sentence, never a 500
and never the hostile string echoed whole."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.app import ROUTERS
from api.context import AppContext
from api.routers.reports import router
from compliance.scheduled import MonthlyReportJob
from core.contract import now_ms
from core.db import SessionFactory
from core.models_training import ReportRun, StoredReport
from tests.api.builders import FakeCollector, build_context
from tests.reports import builders as rb

USER = {"X-ParkGuard-User": "li.ming"}
URL = "/api/v1/reports/compliance"


@pytest.fixture
def ctx(db_url: str) -> Iterator[AppContext]:
    context = build_context(db_url, FakeCollector())
    yield context
    context.engine.dispose()


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.ctx = ctx
    app.include_router(router)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def month(ctx: AppContext) -> rb.Month:
    return rb.busy_month(ctx.engine, ctx.sessions)


def test_the_app_serves_the_router() -> None:
    assert router in ROUTERS


@pytest.mark.parametrize(
    ("lang", "fmt", "kind", "start"),
    [
        ("zh", "pdf", "application/pdf", b"%PDF-"),
        ("en", "pdf", "application/pdf", b"%PDF-"),
        ("zh", "html", "text/html; charset=utf-8", b"<!doctype html>"),
        ("en", "csv", "application/zip", b"PK"),
    ],
)
def test_every_format_and_language(
    client: TestClient, month: rb.Month, lang: str, fmt: str, kind: str, start: bytes
) -> None:
    answer = client.get(URL, params={"period": "2026-05", "lang": lang, "format": fmt})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == kind
    assert answer.content.startswith(start)
    extension = "zip" if fmt == "csv" else fmt
    assert (
        f"parkguard-compliance-2026-05-{lang}.{extension}" in answer.headers["content-disposition"]
    )


def test_the_page_shows_the_month(client: TestClient, month: rb.Month) -> None:
    page = client.get(URL, params={"period": "2026-05"}).text  # zh, html by default
    assert "园区消防与安全合规月报" in page and "2026-05" in page and "98.0752 %" in page


def test_default_period_is_last_month(client: TestClient, ctx: AppContext) -> None:
    rb.park(ctx.engine)
    answer = client.get(URL, params={"lang": "en"})
    assert answer.status_code == 200
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    last = date(today.year, today.month, 1) - timedelta(days=1)
    assert f"{last:%Y-%m}" in answer.text


def test_as_of_reproduces_a_report(client: TestClient, month: rb.Month) -> None:
    params = {"period": "2026-05", "format": "csv", "as_of": "2026-06-02T00:00:00+08:00"}
    first = client.get(URL, params=params).content
    second = client.get(URL, params=params).content
    assert first == second
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "non_intact_intervals.csv" in names


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"period": "2026-13"}, "is not a month between"),
        ({"period": "2026-5"}, "is not a month such as 2026-11"),
        ({"period": "2999-01"}, "has not begun"),
        ({"period": "'; drop table alerts;--"}, "at most 16 characters"),
        ({"period": "<script>"}, "is not a month such as"),
        ({"period": "２０２６-05"}, "is not a month such as"),
        ({"lang": "fr"}, "'zh' or 'en'"),
        ({"lang": "<b>zh</b>"}, "'zh' or 'en'"),
        ({"format": "docx"}, "'html', 'pdf' or 'csv'"),
        ({"as_of": "yesterday"}, "neither epoch milliseconds nor an RFC 3339"),
        ({"as_of": "2999-01-01T00:00:00Z"}, "must not be in the future"),
        ({"period": "2026-05", "as_of": "2026-04-01T00:00:00Z"}, "after the period's start"),
        ({"as_of": "x" * 65}, "at most 64 characters"),
    ],
)
def test_bad_inputs_are_refused(
    client: TestClient, ctx: AppContext, params: dict[str, str], words: str
) -> None:
    rb.park(ctx.engine)
    answer = client.get(URL, params=params)
    assert answer.status_code == 422, answer.text
    assert words in answer.text
    assert answer.headers["content-type"] == "application/json"  # never reflected as a page


def test_stored_reports(client: TestClient, month: rb.Month) -> None:
    made = client.post(
        "/api/v1/reports/stored", params={"period": "2026-05", "format": "pdf"}, headers=USER
    )
    assert made.status_code == 201, made.text
    kept = made.json()
    assert (kept["period"], kept["lang"], kept["format"], kept["created_by"]) == (
        "2026-05",
        "zh",
        "pdf",
        "li.ming",
    )
    assert kept["summary"]["verdicts"]["5.5.1"] is True
    listed = client.get("/api/v1/reports/stored", params={"period": "2026-05"}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == kept["id"]
    data = client.get(f"/api/v1/reports/stored/{kept['id']}")
    assert data.status_code == 200 and data.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(data.content).hexdigest() == kept["sha256"]
    assert client.get("/api/v1/reports/stored/999999").status_code == 404
    assert client.get("/api/v1/reports/stored/abc").status_code == 422
    assert client.get("/api/v1/reports/stored", params={"period": "May"}).status_code == 422


def test_the_monthly_job_stores_once_and_records_every_run(
    ctx: AppContext, month: rb.Month
) -> None:
    june_3 = rb.local(3, 6, month=6)
    job = MonthlyReportJob(
        ctx.sessions, ctx.catalogue, formats=("pdf", "csv"), clock=lambda: june_3
    )
    first = job()
    second = job()
    assert first is not None and second is not None
    assert (first.period, first.outcome, len(first.report_ids)) == ("2026-05", "stored", 4)
    assert (second.outcome, second.report_ids) == ("exists", [])
    with ctx.sessions() as s:
        stored = s.execute(select(StoredReport.lang, StoredReport.format)).all()
        runs = s.scalars(select(ReportRun.outcome).order_by(ReportRun.id)).all()
    assert sorted(stored) == [("en", "csv"), ("en", "pdf"), ("zh", "csv"), ("zh", "pdf")]
    assert runs == ["stored", "exists"]
    assert (job.runs, job.failures) == (2, 0)


def test_a_failing_run_is_recorded_not_raised(ctx: AppContext, month: rb.Month) -> None:
    bad = MonthlyReportJob(ctx.sessions, ctx.catalogue, formats=("docx",), clock=lambda: rb.END)
    failed = bad()
    assert failed is not None and failed.outcome == "failed" and "docx" in (failed.error or "")
    assert (bad.runs, bad.failures) == (1, 1)
    with ctx.sessions() as s:
        assert s.scalars(select(StoredReport.id)).all() == []  # rolled back


# ---- the training register --------------------------------------------------------------------

GOOD = {
    "held_on": "2026-05-12",
    "topic": "灭火器与室内消火栓的使用",
    "trainer": "张队长",
    "attendee_count": 12,
    "attendees": ["李明", "王芳"],
    "hours": 2,
}


def test_training_register(client: TestClient, ctx: AppContext) -> None:
    rb.park(ctx.engine)
    made = client.post("/api/v1/training", json=GOOD, headers=USER)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["site_id"], body["recorded_by"], body["attendees"]) == (
        "park",
        "li.ming",
        ["李明", "王芳"],
    )
    client.post("/api/v1/training", json={**GOOD, "held_on": "2026-06-02", "attendees": []})
    listed = client.get("/api/v1/training", params={"from": "2026-05-01", "to": "2026-05-31"})
    assert listed.json()["total"] == 1 and listed.json()["people_trained"] == 12
    everything = client.get("/api/v1/training").json()
    assert everything["sessions"] == 2 and everything["people_trained"] == 24
    assert (
        client.get(
            "/api/v1/training", params={"from": "2026-06-01", "to": "2026-05-01"}
        ).status_code
        == 422
    )
    # shown in the month's report, escaped
    client.post("/api/v1/training", json={**GOOD, "topic": "<img src=x onerror=alert(1)>"})
    page = client.get(URL, params={"period": "2026-05", "lang": "en"}).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page


TOMORROW = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"held_on": TOMORROW}, "is in the future"),
        ({"held_on": "1999-12-31"}, "on or after 2000-01-01"),
        ({"held_on": "2026-02-30"}, "held_on"),
        ({"attendee_count": 1}, "less than the 2 names given"),
        ({"attendee_count": 0}, "greater than or equal to 1"),
        ({"attendee_count": "12"}, "valid integer"),
        ({"attendee_count": True}, "valid integer"),
        ({"attendee_count": 5001}, "less than or equal to 5000"),
        ({"attendees": ["李明", "李明"]}, "listed twice"),
        ({"attendees": [""]}, "at least 1 character"),
        ({"topic": "   "}, "at least 1 character"),
        ({"topic": "first\nsecond"}, "must be one line"),
        ({"topic": "a\u202eb"}, "control or direction characters"),
        ({"topic": "x" * 201}, "at most 200 characters"),
        ({"hours": 0}, "greater than 0"),
        ({"hours": 25}, "less than or equal to 24"),
        ({"site_id": "nowhere"}, "no site with id 'nowhere'"),
        ({"site_id": "../etc"}, "should match pattern"),
        ({"admin": True}, "Extra inputs are not permitted"),
    ],
)
def test_training_validation(
    client: TestClient, ctx: AppContext, change: dict[str, object], words: str
) -> None:
    rb.park(ctx.engine)
    answer = client.post("/api/v1/training", json={**GOOD, **change}, headers=USER)
    assert answer.status_code == 422, answer.text
    assert words in answer.text
    assert client.get("/api/v1/training").json()["total"] == 0


def test_training_needs_a_site_when_there_are_several(client: TestClient, ctx: AppContext) -> None:
    answer = client.post("/api/v1/training", json=GOOD)
    assert answer.status_code == 422 and "the park has no site yet" in answer.text


# ---- parkguard report -------------------------------------------------------------------------


def _cli(args: list[str], url: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARKGUARD_")}
    env["PARKGUARD_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "parkguard.cli", "report", *args],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_command_writes_the_report(
    db_url: str, engine: Engine, sessions: SessionFactory, tmp_path: Path
) -> None:
    rb.busy_month(engine, sessions)
    out = tmp_path / "may.pdf"
    done = _cli(["--period", "2026-05", "--lang", "zh", "--format", "pdf", "-o", str(out)], db_url)
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes().startswith(b"%PDF-")
    done = _cli(["--period", "2026-05", "--lang", "en", "--format", "html"], db_url)
    assert done.returncode == 0 and b"Park fire and safety compliance report" in done.stdout
    bad = _cli(["--period", "May"], db_url)
    assert bad.returncode == 2
    assert bad.stderr.decode().strip().splitlines()[-1] == (
        "parkguard report: period 'May' is not a month such as 2026-11 (YYYY-MM)"
    )
    late = _cli(["--period", "2026-05", "--as-of", "2026-04-01T00:00:00Z"], db_url)
    assert late.returncode == 2 and b"has not begun" in late.stderr
    assert now_ms() > rb.END
