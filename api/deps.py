"""Dependencies routes declare by type: ``ctx: CtxDep``, ``session: SessionDep``,
``device: DeviceDep``, ``user: CurrentUser`` (or ``CurrentUserName``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from api.auth import Principal, current_user
from api.context import AppContext
from api.schemas import ErrorPublic
from core.contract import ID_PATTERN
from core.models import Device

ID = f"^{ID_PATTERN}$"
"""The contract's id pattern (devices, sites, zones) for path and query parameters."""


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    """A session for one request, closed afterwards; a route that writes commits it itself."""
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_device(
    device_id: Annotated[
        str, Path(pattern=ID, description="Device id: 1-64 letters, digits, '_' or '-'.")
    ],
    session: SessionDep,
) -> Device:
    """The device named in the path, or a 404 naming the id."""
    device = session.get(Device, device_id)
    if device is None:
        raise HTTPException(404, f"no device with id {device_id!r}")
    return device


DeviceDep = Annotated[Device, Depends(get_device)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No device has this id."}
}
"""The 404 of routes that take DeviceDep, for their OpenAPI ``responses``."""


CurrentUser = Annotated[Principal, Depends(current_user)]
"""The signed-in caller (username, role). ``api.auth.authorize`` has already checked, for
every route, that there is one and that its role may call the route (``api.policy``)."""


def current_username(user: CurrentUser) -> str:
    return user.username


CurrentUserName = Annotated[str, Depends(current_username)]
"""The signed-in caller's user name, for the journals and records that name who acted."""
