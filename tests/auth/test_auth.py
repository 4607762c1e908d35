"""Signing in: tokens, console sessions with CSRF, the sign-in rate limit, passwords, the
signing secret, the first admin, the users API and CLI, and the audit log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from fastapi.testclient import TestClient
from icalendar import Calendar
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from api.auth import (
    CSRF_HEADER,
    SECRET_ENV,
    SESSION_COOKIE,
    Auth,
    AuthError,
    LoginLimiter,
    ensure_admin,
)
from api.context import AppContext
from core.models_auth import AuditRecord, AuthSecret, User
from parkguard.users import bootstrap_admin
from tests.api.builders import FakeCollector, build_context
from tests.auth.helpers import token_for
from tests.conftest import ROOT

PASSWORD = "a long enough password"


@pytest.fixture
def ctx(db_url: str) -> Iterator[AppContext]:
    context = build_context(db_url, FakeCollector())
    context.extras["auth"] = Auth(context.sessions)
    yield context
    context.engine.dispose()


@pytest.fixture
def auth(ctx: AppContext) -> Auth:
    made = ctx.extras["auth"]
    assert isinstance(made, Auth)
    made.add_user("wang.wei", "operator", PASSWORD, "王伟")
    return made


@pytest.fixture
def client(ctx: AppContext, auth: Auth) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as test_client:
        yield test_client


def bearer(
    client: TestClient, username: str = "wang.wei", password: str = PASSWORD
) -> dict[str, str]:
    """The Authorization header of a token asked for through the API."""
    answer = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def login(client: TestClient, username: str = "wang.wei", password: str = PASSWORD) -> str:
    answer = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf_token"])


# ---- bearer tokens --------------------------------------------------------------------------


def test_a_token_for_the_right_password_only(client: TestClient) -> None:
    wrong = client.post("/api/v1/auth/token", data={"username": "wang.wei", "password": "nope"})
    assert wrong.status_code == 401
    nobody = client.post("/api/v1/auth/token", data={"username": "nobody", "password": PASSWORD})
    assert nobody.status_code == 401
    assert wrong.json() == nobody.json() == {"detail": "wrong user name or password"}
    answer = client.post("/api/v1/auth/token", data={"username": "wang.wei", "password": PASSWORD})
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    me = client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert me == {
        "username": "wang.wei",
        "role": "operator",
        "display_name": "王伟",
        "via": "token",
        "csrf_token": None,
    }


def test_expired_forged_and_outdated_tokens_are_refused(client: TestClient, auth: Auth) -> None:
    good = bearer(client)["Authorization"].split()[1]
    claims = jwt.decode(good, options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": claims["iat"] - 1}, auth.signing_key(), "HS256")
    forged = jwt.encode(claims, "x" * 48, "HS256")
    unsigned = jwt.encode(claims, None, "none")
    for token in (expired, forged, unsigned, good + "x", "garbage"):
        answer = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, token
    assert client.get("/api/v1/devices", headers={"Authorization": f"Bearer {good}"}).is_success
    auth.set_password("wang.wei", "another long password")
    answer = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {good}"})
    assert answer.status_code == 401


def test_a_deactivated_user_is_refused_at_once(client: TestClient, auth: Auth) -> None:
    headers = bearer(client)
    assert client.get("/api/v1/devices", headers=headers).is_success
    auth.update_user("wang.wei", active=False)
    assert client.get("/api/v1/devices", headers=headers).status_code == 401
    answer = client.post("/api/v1/auth/token", data={"username": "wang.wei", "password": PASSWORD})
    assert answer.status_code == 401


# ---- console sessions -----------------------------------------------------------------------


def test_the_session_cookie_is_httponly_strict_and_needs_the_csrf_header(
    client: TestClient,
) -> None:
    answer = client.post("/api/v1/auth/login", json={"username": "wang.wei", "password": PASSWORD})
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Secure" not in session
    csrf = answer.json()["csrf_token"]
    assert client.get("/api/v1/auth/me").json()["via"] == "session"
    refused = client.post("/api/v1/work-orders", json={"title": "x"})
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["detail"]
    wrong = client.post("/api/v1/work-orders", json={"title": "x"}, headers={CSRF_HEADER: "no"})
    assert wrong.status_code == 403
    done = client.post("/api/v1/work-orders", json={"title": "x"}, headers={CSRF_HEADER: csrf})
    assert done.status_code not in (401, 403), done.text


def test_cookies_are_secure_over_https(ctx: AppContext, auth: Auth) -> None:
    with TestClient(create_app(ctx), base_url="https://testserver") as client:
        answer = client.post(
            "/api/v1/auth/login", json={"username": "wang.wei", "password": PASSWORD}
        )
        assert all("Secure" in c for c in answer.headers.get_list("set-cookie"))


def test_logging_out_ends_the_session(client: TestClient) -> None:
    csrf = login(client)
    cookie = client.cookies[SESSION_COOKIE]
    assert client.post("/api/v1/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy kept by an attacker
    assert client.get("/api/v1/auth/me").status_code == 401


def test_changing_ones_password_ends_every_session(client: TestClient) -> None:
    csrf = login(client)
    body = {"current_password": "wrong", "new_password": "a new long password"}
    assert (
        client.post("/api/v1/auth/password", json=body, headers={CSRF_HEADER: csrf}).status_code
        == 401
    )
    body["current_password"] = PASSWORD
    answer = client.post("/api/v1/auth/password", json=body, headers={CSRF_HEADER: csrf})
    assert answer.status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401
    login(client, password="a new long password")


def test_the_session_row_holds_no_usable_cookie(client: TestClient, ctx: AppContext) -> None:
    login(client)
    with ctx.engine.connect() as connection:
        stored = connection.execute(text("SELECT id FROM auth_sessions")).scalars().all()
    assert stored and client.cookies[SESSION_COOKIE] not in stored


# ---- the sign-in rate limit -----------------------------------------------------------------


def test_five_failures_a_minute_then_429(client: TestClient) -> None:
    form = {"username": "wang.wei", "password": "guess"}
    for _ in range(5):
        assert client.post("/api/v1/auth/token", data=form).status_code == 401
    limited = client.post("/api/v1/auth/token", data=form)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    right = client.post("/api/v1/auth/login", json={"username": "wang.wei", "password": PASSWORD})
    assert right.status_code == 429  # even the right password waits: no guessing in between
    other = client.post("/api/v1/auth/token", data={"username": "li.na", "password": "guess"})
    assert other.status_code == 401


def test_the_limit_is_per_name_and_address_and_passes() -> None:
    now = [1000.0]
    limiter = LoginLimiter(failures=5, window_s=60, clock=lambda: now[0])
    for _ in range(5):
        limiter.failed("Wang.Wei", "10.0.0.1")
    assert limiter.retry_after("wang.wei", "10.0.0.1") == 60
    assert limiter.retry_after("wang.wei", "10.0.0.2") == 0
    now[0] += 30
    assert limiter.retry_after("wang.wei", "10.0.0.1") == 30
    now[0] += 30.5
    assert limiter.retry_after("wang.wei", "10.0.0.1") == 0
    limiter.failed("x", "ip")
    limiter.succeeded("x", "ip")
    assert limiter.retry_after("x", "ip") == 0


# ---- passwords, secret, first admin ---------------------------------------------------------


def test_passwords_are_argon2_hashes_and_short_ones_are_refused(
    auth: Auth, ctx: AppContext
) -> None:
    with ctx.sessions() as session:
        stored = session.scalars(select(User.password_hash)).one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(AuthError, match="at least 10"):
        auth.add_user("short", "operator", "short")
    with pytest.raises(AuthError, match="already exists"):
        auth.add_user("wang.wei", "operator", PASSWORD)
    with pytest.raises(AuthError, match="unknown role"):
        auth.add_user("boss", "king", PASSWORD)
    with pytest.raises(AuthError, match="user name"):
        auth.add_user("a b", "operator", PASSWORD)


def test_the_secret_is_generated_once_and_kept(ctx: AppContext) -> None:
    first = Auth(ctx.sessions).signing_key()
    assert len(first) >= 32
    assert Auth(ctx.sessions).signing_key() == first
    with ctx.sessions() as session:
        assert session.get_one(AuthSecret, "jwt").value == first
    assert Auth(ctx.sessions, secret_key="k" * 40).signing_key() == "k" * 40
    with pytest.raises(AuthError, match=SECRET_ENV):
        Auth(ctx.sessions, secret_key="short").signing_key()


def test_the_first_admin(ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    auth = Auth(ctx.sessions)
    assert ensure_admin(auth, None, demo=False) is None
    assert auth.count_users() == 0 and "PARKGUARD_ADMIN_PASSWORD" in caplog.text
    generated = ensure_admin(auth, None, demo=True)
    assert generated is not None and len(generated) >= 16
    assert auth.check_credentials("admin", generated) is not None
    assert ensure_admin(auth, "another long password", demo=False) is None  # users exist
    assert auth.check_credentials("admin", "another long password") is None


def test_serve_creates_admin_from_the_environment_and_the_demo_prints_it(
    ctx: AppContext, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARKGUARD_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    bootstrap_admin(ctx.engine, demo=True, url="http://x/")
    out = capsys.readouterr().out
    password = out.split("with the password ")[1].split()[0]
    assert Auth(ctx.sessions).check_credentials("admin", password) is not None
    bootstrap_admin(ctx.engine, demo=True, url="http://x/")
    assert password not in capsys.readouterr().out  # printed once only
    monkeypatch.setenv(SECRET_ENV, "too short")
    with pytest.raises(AuthError):
        bootstrap_admin(ctx.engine, demo=False, url="http://x/")


# ---- users --------------------------------------------------------------------------------


def test_an_admin_adds_a_user_who_then_signs_in(client: TestClient, auth: Auth) -> None:
    admin = token_for(auth, "root", "admin")
    body = {
        "username": "li.na",
        "role": "maintenance",
        "password": PASSWORD,
        "display_name": "李娜",
    }
    made = client.post("/api/v1/users", json=body, headers=admin)
    assert made.status_code == 201 and made.json()["role"] == "maintenance"
    assert client.post("/api/v1/users", json=body, headers=admin).status_code == 409
    answer = client.post("/api/v1/auth/token", data={"username": "li.na", "password": PASSWORD})
    assert answer.status_code == 200
    changed = client.post("/api/v1/users/li.na", json={"role": "manager"}, headers=admin)
    assert changed.json()["role"] == "manager"
    assert client.post("/api/v1/users/nobody", json={}, headers=admin).status_code == 404
    names = {u["username"] for u in client.get("/api/v1/users", headers=admin).json()}
    assert names == {"wang.wei", "root", "li.na"}


def test_the_user_command(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    env = {**os.environ, "PARKGUARD_DATABASE_URL": url}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "parkguard.cli", "user", *args],
            input=stdin,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = run("add", "zhao", "--role", "auditor", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    again = run("add", "zhao", "--role", "auditor", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run("add", "qian", "--role", "operator", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 10" in short.stderr
    changed = run("passwd", "zhao", "--password-stdin", stdin="new password, long\n")
    assert changed.returncode == 0, changed.stderr
    listed = run("list")
    assert listed.stdout.split("\t")[:2] == ["zhao", "auditor"]
    from core.db import make_engine, session_factory

    engine = make_engine(url)
    try:
        auth = Auth(session_factory(engine))
        assert auth.check_credentials("zhao", "new password, long") is not None
    finally:
        engine.dispose()


# ---- the audit log ------------------------------------------------------------------------


def test_every_state_changing_request_is_audited(
    client: TestClient, auth: Auth, ctx: AppContext
) -> None:
    client.post("/api/v1/auth/token", data={"username": "wang.wei", "password": "guess"})
    operator = bearer(client)
    client.post(
        "/api/v1/intactness/devices/d1/out-of-service", json={"reason": "x"}, headers=operator
    )
    client.post("/api/v1/alerts/7/ack", json={}, headers=operator)
    client.post("/api/v1/work-orders", json={})
    client.get("/api/v1/devices", headers=operator)  # reads are not audited
    auth.add_user("audit", "auditor", PASSWORD)
    auditor = bearer(client, "audit")
    page = client.get("/api/v1/audit", params={"limit": 10}, headers=auditor).json()
    rows = [
        (r["actor"], r["method"], r["route"], r["target"], r["status"], r["client_ip"])
        for r in reversed(page["items"])
    ]
    assert rows == [
        ("wang.wei", "POST", "/api/v1/auth/token", None, 401, "testclient"),
        ("wang.wei", "POST", "/api/v1/auth/token", None, 200, "testclient"),
        (
            "wang.wei",
            "POST",
            "/api/v1/intactness/devices/{device_id}/out-of-service",
            "device_id=d1",
            403,
            "testclient",
        ),
        ("wang.wei", "POST", "/api/v1/alerts/{alert_id}/ack", "alert_id=7", 503, "testclient"),
        (None, "POST", "/api/v1/work-orders", None, 401, "testclient"),
        ("audit", "POST", "/api/v1/auth/token", None, 200, "testclient"),
    ]
    assert page["total"] == 6
    mine = client.get("/api/v1/audit", params={"actor": "audit"}, headers=auditor).json()
    assert mine["total"] == 1
    assert client.get("/api/v1/audit", headers=operator).status_code == 403


def test_the_audit_log_cannot_be_changed(client: TestClient, ctx: AppContext) -> None:
    client.post("/api/v1/work-orders", json={})
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), ctx.engine.begin() as connection:
            connection.execute(text(statement))
    with ctx.sessions() as session:
        assert session.scalars(select(AuditRecord.status)).all() == [401]


# ---- the crew's calendar feed (a phone cannot send a token) ---------------------------------


def _feed_path(client: TestClient) -> tuple[str, str]:
    answer = client.get("/api/v1/auth/calendar-feed", headers=bearer(client))
    assert answer.status_code == 200, answer.text
    url = urlsplit(answer.json()["url"])
    return url.path, parse_qs(url.query)["feed"][0]


def test_the_feed_url_reads_the_calendar_without_a_header(client: TestClient) -> None:
    path, feed = _feed_path(client)
    assert path == "/api/v1/inspections.ics"
    answer = client.get(path, params={"assignee": "me", "feed": feed})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/calendar")
    Calendar.from_ical(answer.content)


def test_the_feed_token_opens_nothing_else_and_no_guess_works(client: TestClient) -> None:
    _path, feed = _feed_path(client)
    assert client.get("/api/v1/alerts", params={"feed": feed}).status_code == 401
    assert (
        client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {feed}"}).status_code == 401
    )
    for bad in ("", "x", feed[:-2] + "zz", "<script>", "a" * 5000):
        assert client.get("/api/v1/inspections.ics", params={"feed": bad}).status_code == 401


def test_a_password_change_ends_the_feed(client: TestClient) -> None:
    path, feed = _feed_path(client)
    headers = bearer(client)
    body = {"current_password": PASSWORD, "new_password": "another long password"}
    assert client.post("/api/v1/auth/password", json=body, headers=headers).status_code == 204
    assert client.get(path, params={"feed": feed}).status_code == 401
