"""Tables of access control and accountability: users, console sessions, the token-signing
secret and the audit log. Imported at the end of core.models.

Times are integer epoch milliseconds (UTC). Passwords are stored only as argon2 hashes; a
session row keeps only the SHA-256 of its cookie value, so a copy of the database opens no
session. The audit log is append-only: migration 0007 adds triggers that refuse UPDATE and
DELETE on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models import AutoId, Base

ROLES = ("operator", "maintenance", "manager", "auditor", "admin")
"""operator: the security room; maintenance: technicians; manager: the park's safety manager;
auditor: reads everything, changes nothing; admin: everything, including users."""


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    password_version: Mapped[int] = mapped_column(Integer, default=1)
    """Raised at each password change: tokens issued before it stop working."""
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class AuthSession(Base):
    """A console sign-in: the cookie holds a random value, the row its SHA-256."""

    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    password_version: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64))


class AuthSecret(Base):
    """A generated secret kept across restarts (the token-signing key when
    ``PARKGUARD_SECRET_KEY`` is not set)."""

    __tablename__ = "auth_secrets"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class AuditRecord(Base):
    """One state-changing request: who, what, when, from where, and how it ended."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_actor_at", "actor", "at_ms"),)
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    actor: Mapped[str | None] = mapped_column(String(64))
    """The signed-in user, the name tried at a login, or NULL when nobody signed in."""
    role: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    route: Mapped[str | None] = mapped_column(String(256))
    """The route's template, e.g. ``/api/v1/alerts/{alert_id}/ack``."""
    target: Mapped[str | None] = mapped_column(String(256))
    """The path parameters, e.g. ``alert_id=12``."""
    status: Mapped[int] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
