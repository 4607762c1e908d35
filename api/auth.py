"""Signing in and who may do what.

- Users have a role (``core.models_auth.ROLES``) and an argon2 password hash (pwdlib).
- ``POST /api/v1/auth/token`` (OAuth2 password form) gives a bearer token (a JWT signed with
  ``PARKGUARD_SECRET_KEY``, or with a secret generated at first use and kept in the database);
  a password change ends every token issued before it.
- ``POST /api/v1/auth/login`` opens a console session: an HttpOnly, SameSite=Strict cookie
  (Secure over https) whose SHA-256 is kept in the database, and a CSRF token that every
  state-changing request made with the cookie must echo in the ``X-CSRF-Token`` header.
- Failed sign-ins are counted per user name and client address: after ``LOGIN_FAILURES``
  within ``LOGIN_WINDOW_S`` the next attempts answer 429 until the window has passed.
- ``authorize`` is one app-level dependency: it finds the caller and checks the table of
  ``api.policy`` for every route; routes name the acting user with ``api.deps.CurrentUser``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request, Response
from pwdlib import PasswordHash
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from api import policy
from api.context import AppContext
from core.db import SessionFactory, session_scope
from core.models_auth import ROLES, AuthSecret, AuthSession, User

log = logging.getLogger(__name__)

SECRET_ENV = "PARKGUARD_SECRET_KEY"
ADMIN_PASSWORD_ENV = "PARKGUARD_ADMIN_PASSWORD"
METRICS_TOKEN_ENV = "PARKGUARD_METRICS_TOKEN"
SESSION_COOKIE = "parkguard_session"
FEED_SCOPE = "calendar"
FEED_PARAM = "feed"
CSRF_COOKIE = "parkguard_csrf"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_TTL_S = 3600
SESSION_TTL_S = 12 * 3600
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 60.0
PASSWORD_MIN = 10
SECRET_MIN = 32
JWT_ALGORITHM = "HS256"
USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"

Role = Literal["operator", "maintenance", "manager", "auditor", "admin"]


class AuthError(Exception):
    """One sentence saying what is wrong with a user, a password or the secret."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    id: int
    username: str
    role: str
    display_name: str
    via: Literal["token", "session"]
    csrf_token: str | None = None
    """The session's CSRF token (``via == "session"`` only)."""


class LoginLimiter:
    """Failed sign-ins per (user name, client address) within a sliding window."""

    def __init__(
        self,
        failures: int = LOGIN_FAILURES,
        window_s: float = LOGIN_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, username: str, ip: str) -> int:
        """Seconds until this pair may try again; 0 when it may now."""
        now = self.clock()
        with self._lock:
            times = self._recent((username.casefold(), ip), now)
            if len(times) < self.failures:
                return 0
            return max(1, int(times[0] + self.window_s - now + 0.999))

    def failed(self, username: str, ip: str) -> None:
        now = self.clock()
        with self._lock:
            key = (username.casefold(), ip)
            self._recent(key, now).append(now)
            if len(self._seen) > 10_000:  # forget pairs whose window has passed
                for old in [k for k, v in self._seen.items() if v[-1] <= now - self.window_s]:
                    del self._seen[old]

    def succeeded(self, username: str, ip: str) -> None:
        with self._lock:
            self._seen.pop((username.casefold(), ip), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times


class Auth:
    """Users, passwords, tokens and sessions over the relational store."""

    def __init__(
        self,
        sessions: SessionFactory,
        secret_key: str | None = None,
        clock: Callable[[], float] = time.time,
        metrics_token: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.metrics_token = metrics_token
        """``PARKGUARD_METRICS_TOKEN``: the bearer token a scraper reads ``/metrics`` with."""
        self.clock = clock
        self.hasher = PasswordHash.recommended()
        self.limiter = LoginLimiter()
        self._secret_key = secret_key
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None

    @classmethod
    def from_env(cls, sessions: SessionFactory) -> Auth:
        return cls(
            sessions,
            secret_key=os.environ.get(SECRET_ENV) or None,
            metrics_token=os.environ.get(METRICS_TOKEN_ENV) or None,
        )

    # ---- users ------------------------------------------------------------------------------

    def add_user(
        self, username: str, role: str, password: str, display_name: str = ""
    ) -> Principal:
        check_username(username)
        check_role(role)
        check_password(password)
        now = self._now_ms()
        user = User(
            username=username,
            role=role,
            display_name=display_name,
            password_hash=self.hasher.hash(password),
            password_version=1,
            active=True,
            created_ms=now,
            updated_ms=now,
        )
        try:
            with session_scope(self.sessions) as session:
                session.add(user)
        except IntegrityError:
            raise AuthError(f"a user named {username!r} already exists") from None
        return _principal(user, "token")

    def set_password(self, username: str, password: str) -> None:
        """A new password; tokens and sessions opened before it stop working."""
        check_password(password)
        with session_scope(self.sessions) as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise AuthError(f"no user named {username!r}")
            user.password_hash = self.hasher.hash(password)
            user.password_version += 1
            user.updated_ms = self._now_ms()
            session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))

    def update_user(
        self, username: str, *, role: str | None = None, active: bool | None = None
    ) -> User:
        with session_scope(self.sessions) as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise AuthError(f"no user named {username!r}")
            if role is not None:
                check_role(role)
                user.role = role
            if active is not None:
                user.active = active
                if not active:
                    session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
            user.updated_ms = self._now_ms()
            return user

    def users(self) -> list[User]:
        with self.sessions() as session:
            return list(session.scalars(select(User).order_by(User.username)))

    def count_users(self) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(User)) or 0)

    def check_credentials(self, username: str, password: str) -> Principal | None:
        """The active user with this password, or None (taking as long either way)."""
        with self.sessions() as session:
            user = session.scalar(select(User).where(User.username == username))
        if user is None or not user.active:
            self.hasher.verify(password, self._dummy())
            return None
        valid, new_hash = self.hasher.verify_and_update(password, user.password_hash)
        if not valid:
            return None
        if new_hash is not None:  # the library's parameters have grown since: rehash
            with session_scope(self.sessions) as session:
                row = session.get(User, user.id)
                if row is not None:
                    row.password_hash = new_hash
        return _principal(user, "token")

    # ---- bearer tokens ----------------------------------------------------------------------

    def issue_token(self, principal: Principal) -> str:
        return self._encode(principal, {"exp": int(self.clock()) + TOKEN_TTL_S})

    def from_token(self, token: str) -> Principal | None:
        claims = self._decode(token, "exp")
        return self._holder(claims) if claims is not None else None

    def issue_feed_token(self, principal: Principal) -> str:
        """A calendar-feed token: read-only use of the inspections feed by a phone, which
        cannot send headers. It has no expiry (so it is refused as a bearer token) and ends
        with the user's next password change or deactivation."""
        return self._encode(principal, {"scope": FEED_SCOPE})

    def from_feed_token(self, token: str) -> Principal | None:
        claims = self._decode(token, "scope")
        if claims is None or claims["scope"] != FEED_SCOPE or "exp" in claims:
            return None
        return self._holder(claims)

    def _encode(self, principal: Principal, extra: dict[str, Any]) -> str:
        """A signed token naming the user and the password version it was issued under."""
        with self.sessions() as session:
            version = session.get_one(User, principal.id).password_version
        claims = {
            "sub": principal.username,
            "uid": principal.id,
            "pwv": version,
            "iat": int(self.clock()),
            **extra,
        }
        return jwt.encode(claims, self.signing_key(), algorithm=JWT_ALGORITHM)

    def _decode(self, token: str, kind_claim: str) -> dict[str, Any] | None:
        """The claims of a well-signed token that carries ``kind_claim``, else None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.signing_key(),
                algorithms=[JWT_ALGORITHM],
                options={"require": ["sub", "uid", "pwv", "iat", kind_claim]},
            )
        except jwt.PyJWTError:
            return None
        return claims

    def _holder(self, claims: dict[str, Any]) -> Principal | None:
        """The token's user while still active, same name, same password as at issue."""
        with self.sessions() as session:
            user = session.get(User, claims["uid"])
        if user is None or not user.active or user.username != claims["sub"]:
            return None
        if user.password_version != claims["pwv"]:
            return None
        return _principal(user, "token")

    def from_metrics_token(self, request: Request) -> Principal | None:
        """The scraper of ``/metrics`` (Prometheus has no user and cannot sign in): a bearer
        token equal to ``PARKGUARD_METRICS_TOKEN``; None when it is not set or not sent."""
        expected = self.metrics_token
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if expected is None or len(expected) < SECRET_MIN or scheme.lower() != "bearer":
            return None
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return None
        return Principal(0, "metrics", "auditor", "Metrics scraper", "token")

    def check_metrics_token(self) -> None:
        """At start-up: a metrics token that is set must be long enough to be a secret."""
        if self.metrics_token is not None and len(self.metrics_token) < SECRET_MIN:
            raise AuthError(f"{METRICS_TOKEN_ENV} must be at least {SECRET_MIN} characters long")

    def signing_key(self) -> str:
        """``PARKGUARD_SECRET_KEY``, or a secret generated once and kept in the database."""
        if self._secret_key is not None:
            if len(self._secret_key) < SECRET_MIN:
                raise AuthError(f"{SECRET_ENV} must be at least {SECRET_MIN} characters long")
            return self._secret_key
        with self._lock:
            if self._secret_key is None:
                self._secret_key = self._stored_secret()
        return self._secret_key

    def _stored_secret(self) -> str:
        with self.sessions() as session:
            row = session.get(AuthSecret, "jwt")
            if row is not None:
                return row.value
        try:
            with session_scope(self.sessions) as session:
                session.add(
                    AuthSecret(
                        name="jwt", value=secrets.token_urlsafe(48), created_ms=self._now_ms()
                    )
                )
        except IntegrityError:
            pass  # another process generated it first: use theirs
        with self.sessions() as session:
            return session.get_one(AuthSecret, "jwt").value

    # ---- console sessions -------------------------------------------------------------------

    def open_session(self, principal: Principal, client_ip: str | None) -> tuple[str, str]:
        """A new session: (cookie value, CSRF token)."""
        value = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._now_ms()
        with session_scope(self.sessions) as session:
            user = session.get_one(User, principal.id)
            session.execute(delete(AuthSession).where(AuthSession.expires_ms < now))
            session.add(
                AuthSession(
                    id=_digest(value),
                    user_id=principal.id,
                    csrf_token=csrf,
                    password_version=user.password_version,
                    created_ms=now,
                    expires_ms=now + SESSION_TTL_S * 1000,
                    client_ip=client_ip,
                )
            )
        return value, csrf

    def from_session(self, value: str) -> Principal | None:
        now = self._now_ms()
        with self.sessions() as session:
            row = session.get(AuthSession, _digest(value))
            if row is None or row.expires_ms <= now:
                return None
            user = session.get(User, row.user_id)
            if user is None or not user.active or user.password_version != row.password_version:
                return None
            return _principal(user, "session", row.csrf_token)

    def close_session(self, value: str) -> None:
        with session_scope(self.sessions) as session:
            session.execute(delete(AuthSession).where(AuthSession.id == _digest(value)))

    # ---- the caller of a request ------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal | None:
        """The caller by bearer token, else by session cookie; None if neither is valid."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token:
            return self.from_token(token.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return self.from_session(cookie)
        return None

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def ensure_admin(auth: Auth, password: str | None, *, demo: bool) -> str | None:
    """The first user, when there is none: ``admin`` with ``password`` (from
    ``PARKGUARD_ADMIN_PASSWORD``), or, for the demo, a generated password that is returned
    so that the caller prints it once. Returns the generated password, else None."""
    if auth.count_users() > 0:
        return None
    if password:
        auth.add_user("admin", "admin", password, "Administrator")
        log.info("created the first user 'admin' with the password in %s", ADMIN_PASSWORD_ENV)
        return None
    if demo:
        generated = secrets.token_urlsafe(12)
        auth.add_user("admin", "admin", generated, "Administrator")
        return generated
    log.warning(
        "no users yet: set %s to create 'admin' at start-up, or run `parkguard user add`",
        ADMIN_PASSWORD_ENV,
    )
    return None


def check_username(username: str) -> None:
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise AuthError("a user name is 1-64 letters, digits or any of _ . @ -")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AuthError(f"a password needs at least {PASSWORD_MIN} characters")
    if len(password) > 1024:
        raise AuthError("a password has at most 1024 characters")


def _principal(user: User, via: Literal["token", "session"], csrf: str | None = None) -> Principal:
    return Principal(
        id=user.id,
        username=user.username,
        role=user.role,
        display_name=user.display_name,
        via=via,
        csrf_token=csrf,
    )


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---- the app-level dependency ---------------------------------------------------------------


def get_auth(request: Request) -> Auth:
    """The app's Auth (``ctx.extras["auth"]``), made from the environment at first use."""
    ctx: AppContext = request.app.state.ctx
    auth = ctx.extras.get("auth")
    if auth is None:
        auth = ctx.extras.setdefault("auth", Auth.from_env(ctx.sessions))
    assert isinstance(auth, Auth)
    return auth


AuthDep = Annotated[Auth, Depends(get_auth)]


def route_template(request: Request) -> str:
    route = request.scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        return template
    return policy.template_for(request.url.path) or request.url.path


def client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def authorize(request: Request, auth: AuthDep) -> None:
    """Every route's first dependency: public routes pass; others need a valid token or
    session (401), a matching CSRF header when the session cookie is used to change state
    (403), and a role that ``api.policy`` allows (403)."""
    method = request.method
    template = route_template(request)
    if policy.is_public(method, template):
        return
    principal = auth.authenticate(request)
    feed = request.query_params.get(FEED_PARAM)
    if principal is None and feed and (method, template) in policy.FEED_ROUTES:
        principal = auth.from_feed_token(feed)
    if principal is None and (method, template) in policy.METRICS_ROUTES:
        principal = auth.from_metrics_token(request)
    if principal is None:
        raise HTTPException(
            401,
            "sign in first: a bearer token or a console session",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.user = principal
    if principal.via == "session" and method not in policy.SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not principal.csrf_token or not hmac.compare_digest(sent, principal.csrf_token):
            raise HTTPException(403, f"the {CSRF_HEADER} header is missing or wrong")
    roles = policy.allowed_roles(method, template)
    if principal.role not in roles:
        if not roles:
            raise HTTPException(403, f"no role may {method} {template} (not in api.policy)")
        raise HTTPException(
            403,
            f"role {principal.role!r} may not {method} {template}; allowed: "
            + ", ".join(sorted(roles)),
        )


def current_user(request: Request) -> Principal:
    """The caller ``authorize`` found; on an app without it (a router mounted alone), the
    caller is authenticated here (401 without one)."""
    principal = getattr(request.state, "user", None)
    if isinstance(principal, Principal):
        return principal
    principal = get_auth(request).authenticate(request)
    if principal is None:
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
    request.state.user = principal
    return principal


# ---- routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["auth"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class _Public(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class LoginBody(_Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    """The user name."""
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    """The password."""


class PasswordBody(_Body):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    """The password in use now."""
    new_password: Annotated[str, Field(min_length=PASSWORD_MIN, max_length=1024)]
    """The new password: at least 10 characters."""


class UserCreate(_Body):
    username: Annotated[str, Field(pattern=USERNAME_PATTERN)]
    """1-64 letters, digits or any of _ . @ -."""
    role: Role
    """operator, maintenance, manager, auditor or admin."""
    password: Annotated[str, Field(min_length=PASSWORD_MIN, max_length=1024)]
    """At least 10 characters."""
    display_name: Annotated[str, Field(max_length=200)] = ""
    """The name shown (optional)."""


class UserUpdate(_Body):
    role: Role | None = None
    """A new role."""
    active: bool | None = None
    """False stops the user signing in and ends their sessions."""
    password: Annotated[str, Field(min_length=PASSWORD_MIN, max_length=1024)] | None = None
    """A new password (ends the user's tokens and sessions)."""


class TokenPublic(_Public):
    access_token: str
    """Send it as ``Authorization: Bearer <token>``."""
    token_type: Literal["bearer"] = "bearer"
    """Always ``bearer``."""
    expires_in: int
    """Seconds the token stays valid."""


class MePublic(_Public):
    username: str
    """The user name."""
    role: str
    """operator, maintenance, manager, auditor or admin."""
    display_name: str
    """The name shown."""
    via: Literal["token", "session"]
    """How this request was signed in."""
    csrf_token: str | None
    """Echo it in ``X-CSRF-Token`` on state-changing requests made with the session cookie."""


class UserPublic(_Public):
    username: str
    """The user name."""
    role: str
    """operator, maintenance, manager, auditor or admin."""
    display_name: str
    """The name shown."""
    active: bool
    """Whether the user may sign in."""


def _check_login(auth: Auth, request: Request, username: str, password: str) -> Principal:
    ip = client_ip(request)
    request.state.audit_actor = username[:64]
    wait = auth.limiter.retry_after(username, ip)
    if wait:
        raise HTTPException(
            429,
            f"too many failed sign-ins; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    principal = auth.check_credentials(username, password)
    if principal is None:
        auth.limiter.failed(username, ip)
        raise HTTPException(401, "wrong user name or password")
    auth.limiter.succeeded(username, ip)
    request.state.user = principal
    return principal


@router.post("/auth/token", response_model=TokenPublic, summary="A bearer token (OAuth2 password)")
def token(
    request: Request,
    auth: AuthDep,
    username: Annotated[str, Form(min_length=1, max_length=64, description="The user name.")],
    password: Annotated[str, Form(min_length=1, max_length=1024, description="The password.")],
) -> TokenPublic:
    """OAuth2 password flow: form fields ``username`` and ``password``; send the token as
    ``Authorization: Bearer <token>``."""
    principal = _check_login(auth, request, username, password)
    return TokenPublic(access_token=auth.issue_token(principal), expires_in=TOKEN_TTL_S)


@router.post("/auth/login", response_model=MePublic, summary="Open a console session (cookie)")
def login(request: Request, response: Response, auth: AuthDep, body: LoginBody) -> MePublic:
    principal = _check_login(auth, request, body.username, body.password)
    value, csrf = auth.open_session(principal, client_ip(request))
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_TTL_S,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=SESSION_TTL_S,
        path="/",
        secure=secure,
        httponly=False,
        samesite="strict",
    )
    return MePublic(
        username=principal.username,
        role=principal.role,
        display_name=principal.display_name,
        via="session",
        csrf_token=csrf,
    )


CurrentPrincipal = Annotated[Principal, Depends(current_user)]


@router.post("/auth/logout", status_code=204, summary="Close the console session")
def logout(request: Request, response: Response, auth: AuthDep, user: CurrentPrincipal) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        auth.close_session(cookie)
    secure = request.url.scheme == "https"
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(
            name, path="/", secure=secure, httponly=name == SESSION_COOKIE, samesite="strict"
        )


@router.get("/auth/me", response_model=MePublic, summary="Who is signed in")
def me(user: CurrentPrincipal) -> MePublic:
    return MePublic(
        username=user.username,
        role=user.role,
        display_name=user.display_name,
        via=user.via,
        csrf_token=user.csrf_token,
    )


class FeedPublic(_Public):
    url: str
    """The caller's inspections calendar (iCalendar), to subscribe to from a phone; valid until
    the caller's password changes."""


@router.get("/auth/calendar-feed", response_model=FeedPublic, summary="One's calendar feed URL")
def calendar_feed(request: Request, auth: AuthDep, user: CurrentPrincipal) -> FeedPublic:
    """A subscribable URL of the caller's own inspections (``assignee=me``)."""
    token = auth.issue_feed_token(user)
    base = str(request.base_url).rstrip("/")
    return FeedPublic(url=f"{base}/api/v1/inspections.ics?assignee=me&{FEED_PARAM}={token}")


@router.post("/auth/password", status_code=204, summary="Change one's own password")
def change_password(
    request: Request, auth: AuthDep, user: CurrentPrincipal, body: PasswordBody
) -> None:
    """Every token and session of the user ends; sign in again with the new password."""
    _check_login(auth, request, user.username, body.current_password)
    try:
        auth.set_password(user.username, body.new_password)
    except AuthError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/users", response_model=list[UserPublic], summary="Users (admin)")
def list_users(auth: AuthDep) -> list[UserPublic]:
    return [_user_public(u) for u in auth.users()]


@router.post("/users", response_model=UserPublic, status_code=201, summary="Add a user (admin)")
def add_user(auth: AuthDep, body: UserCreate) -> UserPublic:
    try:
        p = auth.add_user(body.username, body.role, body.password, body.display_name)
    except AuthError as exc:
        raise HTTPException(409 if "already exists" in str(exc) else 422, str(exc)) from None
    return UserPublic(username=p.username, role=p.role, display_name=p.display_name, active=True)


@router.post("/users/{username}", response_model=UserPublic, summary="Change a user (admin)")
def update_user(
    auth: AuthDep,
    username: Annotated[str, Path(pattern=USERNAME_PATTERN, description="The user's name.")],
    body: UserUpdate,
) -> UserPublic:
    """A new role, (de)activation, or a new password (which ends the user's sessions)."""
    try:
        if body.password is not None:
            auth.set_password(username, body.password)
        user = auth.update_user(username, role=body.role, active=body.active)
    except AuthError as exc:
        raise HTTPException(404 if str(exc).startswith("no user") else 422, str(exc)) from None
    return _user_public(user)


def _user_public(user: User) -> UserPublic:
    return UserPublic(
        username=user.username, role=user.role, display_name=user.display_name, active=user.active
    )
