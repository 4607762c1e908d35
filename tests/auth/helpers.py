"""Test helpers for signing in.

``trust_user_header`` stands in for ``api.auth.Auth.authenticate`` in the router tests (see the
autouse fixture in tests/conftest.py): the caller is whoever ``X-ParkGuard-User`` names
(default ``operator``; a name no user could have answers 422), with the role in
``X-ParkGuard-Role`` (default ``admin``), so those
tests name their actors in headers as before sign-in existed. The policy (``api.policy``) is
still enforced on that role. Tests of sign-in itself (tests/auth, tests/console, or marked
``real_auth``) use the real thing.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request

from api.auth import Auth, Principal

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

TEST_PASSWORD = "correct horse battery staple"


def trust_user_header(_auth: Auth, request: Request) -> Principal | None:
    name = request.headers.get("X-ParkGuard-User") or "operator"
    if not _NAME.match(name):  # as a real user name could not be
        raise HTTPException(
            422, f"X-ParkGuard-User must be 1-64 letters, digits or any of _ . @ - ({name[:40]!r})"
        )
    role = request.headers.get("X-ParkGuard-Role") or "admin"
    return Principal(id=0, username=name, role=role, display_name=name, via="token")


def token_for(auth: Auth, username: str, role: str) -> dict[str, str]:
    """A user of this role (made if missing) and the Authorization header of a token of it."""
    if username not in {u.username for u in auth.users()}:
        auth.add_user(username, role, TEST_PASSWORD)
    principal = auth.check_credentials(username, TEST_PASSWORD)
    assert principal is not None
    return {"Authorization": f"Bearer {auth.issue_token(principal)}"}
