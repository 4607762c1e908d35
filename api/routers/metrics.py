"""``GET /metrics``: the context's Prometheus registry, in the format the scraper asks for."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from api.deps import CtxDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(ctx: CtxDep, request: Request) -> Response:
    """Prometheus text format (OpenMetrics when the ``Accept`` header asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(ctx.registry), media_type=content_type)
