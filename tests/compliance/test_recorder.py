"""The condition recorder: the collector's batches in, exact value spans and event spans out,
and the last values looked at as a safety net."""

from __future__ import annotations

import time

from sqlalchemy import Engine, select

from compliance.recorder import ConditionRecorder
from core.catalogue import load_catalogue
from core.contract import Event, Telemetry
from core.db import SessionFactory
from core.ingest import CommittedBatch
from core.models_compliance import ConditionSpan
from tests.compliance import builders as b
from tests.compliance.builders import HOUR, MAY, MIN

CAT = load_catalogue()


def telemetry(device: str, ts: int, **metrics: float | bool) -> Telemetry:
    return Telemetry(device, "park", ts, ts // 1000, dict(metrics))


def spans(sessions: SessionFactory) -> list[tuple[str, str, int, int | None]]:
    with sessions() as s:
        rows = s.scalars(select(ConditionSpan).order_by(ConditionSpan.start_ms))
        return [(r.device_id, r.key, r.start_ms, r.end_ms) for r in rows]


def test_batches_become_spans_at_the_readings_times(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"e1": "extinguisher", "h1": "hydrant_pressure"})
    recorder = ConditionRecorder(engine, CAT, clock=lambda: MAY + HOUR)
    recorder.on_batch(
        CommittedBatch(
            telemetry=[
                telemetry("e1", MAY + MIN, pressure_mpa=0.7),
                telemetry("h1", MAY + MIN, pressure_mpa=0.5),
            ]
        )
    )
    recorder.on_batch(CommittedBatch(telemetry=[telemetry("e1", MAY + 9 * MIN, pressure_mpa=1.1)]))
    recorder.on_batch(CommittedBatch())  # nothing new: not even queued
    b.event(engine, "h1", MAY + 2 * MIN, "tamper")
    recorder.on_batch(
        CommittedBatch(events=[Event("h1", "park", MAY + 2 * MIN, 1, "tamper", None)])
    )
    recorder.run_once()
    assert spans(sessions) == [
        ("e1", "pressure_mpa", MAY + MIN, MAY + 9 * MIN),
        ("h1", "tamper", MAY + 2 * MIN, None),
    ]
    assert (recorder.stats.batches, recorder.stats.readings, recorder.stats.events_read) == (
        3,
        3,
        1,
    )
    assert recorder.stats.db_errors == recorder.stats.dropped == 0


def test_the_worker_writes_what_is_queued_before_it_stops(
    engine: Engine, sessions: SessionFactory
) -> None:
    b.make_park(engine, {"s1": "smoke_detector"})
    recorder = ConditionRecorder(engine, CAT, interval_s=0.05)
    recorder.start()
    recorder.on_batch(CommittedBatch(telemetry=[telemetry("s1", MAY, fault=True)]))
    time.sleep(0.2)
    recorder.on_batch(CommittedBatch(telemetry=[telemetry("s1", MAY + MIN, fault=False)]))
    recorder.stop()
    assert spans(sessions) == [("s1", "fault", MAY, MAY + MIN)]
    assert recorder.stats.looks >= 1


def test_a_full_queue_drops_and_counts(engine: Engine) -> None:
    recorder = ConditionRecorder(engine, CAT, queue_max=1)
    batch = CommittedBatch(telemetry=[telemetry("s1", MAY, fault=True)])
    recorder.on_batch(batch)
    recorder.on_batch(batch)
    assert recorder.stats.dropped == 1
