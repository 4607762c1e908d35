"""``GET /api/v1/devices/{id}/readings``: one metric of a device over time, as stored or
downsampled into buckets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.deps import NOT_FOUND, CtxDep, DeviceDep
from api.schemas import BucketPublic, PointPublic, ReadingsPublic, as_kind
from api.timefmt import parse_duration, parse_time, to_rfc3339
from core.catalogue import Catalogue, Metric
from core.contract import now_ms
from core.models import Device

router = APIRouter(prefix="/api/v1", tags=["devices"])

POINTS_DEFAULT = 1000
POINTS_MAX = 100_000
BUCKETS_MAX = 100_000
EVERY_MIN_MS = 1000
EVERY_MAX_MS = 366 * 86_400_000
DEFAULT_SPAN_MS = 24 * 3_600_000


@router.get(
    "/devices/{device_id}/readings",
    response_model=ReadingsPublic,
    summary="A device's readings of one metric: stored points or downsampled buckets",
    responses=NOT_FOUND,
)
def get_readings(
    device: DeviceDep,
    ctx: CtxDep,
    metric: Annotated[str, Query(description="A metric of the device's type.")],
    start: Annotated[
        str | None,
        Query(
            description="Range start (included): RFC 3339 with an offset, or epoch ms. "
            "Default: 24 hours before end."
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            description="Range end (excluded): RFC 3339 with an offset, or epoch ms. Default: now."
        ),
    ] = None,
    every: Annotated[
        str | None,
        Query(description="Downsample into buckets this long: 30s, 15m, 1h, 1d, or seconds."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=POINTS_MAX, description="At most this many points or buckets.")
    ] = POINTS_DEFAULT,
) -> ReadingsPublic:
    """Without ``every``: the stored points in [start, end), oldest first. With ``every``:
    count, min, max and mean per bucket (aligned to the epoch), for buckets that have points."""
    spec = _metric_of(ctx.catalogue, device, metric)
    end_ms = _time(end, "end") if end is not None else now_ms()
    start_ms = _time(start, "start") if start is not None else max(end_ms - DEFAULT_SPAN_MS, 0)
    if start_ms >= end_ms:
        raise HTTPException(
            422, f"start ({to_rfc3339(start_ms)}) must be before end ({to_rfc3339(end_ms)})"
        )
    answer: dict[str, Any] = {
        "device_id": device.id,
        "metric": metric,
        "kind": spec.kind,
        "unit": spec.unit,
        "start": to_rfc3339(start_ms),
        "end": to_rfc3339(end_ms),
    }
    if every is None:
        points = ctx.readings.points(device.id, metric, start_ms, end_ms, limit + 1)
        return ReadingsPublic(
            **answer,
            every_ms=None,
            points=[
                PointPublic(
                    ts=to_rfc3339(p.ts_ms),
                    ts_ms=p.ts_ms,
                    seq=p.seq,
                    value=as_kind(spec, p.text if spec.kind == "string" else p.value),
                )
                for p in points[:limit]
            ],
            buckets=None,
            truncated=len(points) > limit,
        )
    every_ms = _every(every, start_ms, end_ms)
    buckets = ctx.readings.buckets(device.id, metric, start_ms, end_ms, every_ms, limit + 1)
    return ReadingsPublic(
        **answer,
        every_ms=every_ms,
        points=None,
        buckets=[
            BucketPublic(
                start=to_rfc3339(b.start_ms),
                start_ms=b.start_ms,
                count=b.count,
                min=b.min,
                max=b.max,
                mean=b.mean,
            )
            for b in buckets[:limit]
        ],
        truncated=len(buckets) > limit,
    )


def _metric_of(catalogue: Catalogue, device: Device, metric: str) -> Metric:
    device_type = catalogue.device_types.get(device.type)
    if device_type is None:
        raise HTTPException(422, f"device type {device.type!r} is not in the catalogue")
    spec = device_type.metrics.get(metric)
    if spec is None:
        shown = metric if len(metric) <= 64 else metric[:64] + "…"
        known = ", ".join(sorted(device_type.metrics))
        raise HTTPException(422, f"metric {shown!r} is not one of {device.type}'s metrics: {known}")
    return spec


def _time(value: str, name: str) -> int:
    try:
        return parse_time(value, name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _every(value: str, start_ms: int, end_ms: int) -> int:
    try:
        every_ms = parse_duration(value, "every")
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not EVERY_MIN_MS <= every_ms <= EVERY_MAX_MS:
        raise HTTPException(422, "every must be between 1s and 366d")
    first = start_ms - start_ms % every_ms
    count = -(-(end_ms - first) // every_ms)
    if count > BUCKETS_MAX:
        raise HTTPException(
            422,
            f"every={value} from {to_rfc3339(start_ms)} to {to_rfc3339(end_ms)} would make "
            f"{count} buckets, more than {BUCKETS_MAX}: choose a longer every or a shorter range",
        )
    return every_ms
