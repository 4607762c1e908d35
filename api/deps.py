"""Dependencies routes declare by type: ``ctx: CtxDep``, ``session: SessionDep``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.context import AppContext


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    """A session for one request, closed afterwards; a route that writes commits it itself."""
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
