"""Completing tasks: every item answered, a failed item opens a work order, photos checked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.db import session_factory, session_scope
from core.models_maintenance import InspectionPhoto, InspectionTask, WorkOrder
from maintenance.errors import Conflict, InvalidInput, NotFound, PhotoRejected
from maintenance.inspections import (
    Completion,
    TaskFilter,
    complete_task,
    effective_state,
    list_tasks,
)
from maintenance.photos import PhotoStore, check_photo
from maintenance.schedule import generate_tasks
from tests.maintenance.builders import (
    GIF,
    JPEG,
    WEBP,
    at,
    engine_for,
    plans,
    run_in_session,
    small_park,
    tiny_png,
)

NOW = at(2026, 11, 27, 10)
ALL_PASS = {"in_place": "pass", "gauge_green": "pass", "seal_intact": "pass"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = engine_for(db_url)
    small_park(engine)
    run_in_session(engine, generate_tasks, plans(), at(2026, 11, 27, 8))
    yield engine
    engine.dispose()


def task_id(engine: Engine, subject: str = "ext-1") -> int:
    with Session(engine) as session:
        found = session.scalar(select(InspectionTask.id).where(InspectionTask.subject == subject))
        assert found is not None
        return found


def complete(engine: Engine, tid: int, completion: Completion, **kw: object) -> object:
    return run_in_session(engine, complete_task, tid, completion, now=NOW, **kw)


def snapshot(engine: Engine) -> tuple[object, ...]:
    with Session(engine) as session:
        tasks = session.execute(
            select(InspectionTask.id, InspectionTask.state, InspectionTask.answers).order_by(
                InspectionTask.id
            )
        ).all()
        return (
            tuple(tasks),
            session.scalar(select(func.count()).select_from(WorkOrder)),
            session.scalar(select(func.count()).select_from(InspectionPhoto)),
        )


def test_all_pass_records_result_and_opens_no_work_order(engine: Engine) -> None:
    tid = task_id(engine)
    done = complete(engine, tid, Completion(answers=ALL_PASS, note="OK 正常", user="wang"))
    assert done.work_order is None  # type: ignore[attr-defined]
    with Session(engine) as session:
        task = session.get(InspectionTask, tid)
        assert task is not None
        assert (task.state, task.result, task.completed_by) == ("done", "pass", "wang")
        assert task.answers == ALL_PASS
        assert task.completed_at == NOW
        assert task.note == "OK 正常"
        assert effective_state(task, at(2027, 1, 1)) == "done"


def test_failed_item_opens_a_work_order(engine: Engine) -> None:
    tid = task_id(engine, "ext-h")
    answers = {**ALL_PASS, "gauge_green": "fail"}
    done = complete(engine, tid, Completion(answers=answers, note="指针在红区", user="wang"))
    order = done.work_order  # type: ignore[attr-defined]
    assert order is not None
    with Session(engine) as session:
        task = session.get(InspectionTask, tid)
        assert task is not None and task.result == "fail"
        wo = session.get(WorkOrder, order.id)
        assert wo is not None
        assert (wo.source, wo.source_ref, wo.state) == ("inspection", str(tid), "open")
        assert (wo.device_id, wo.zone_id, wo.site_id) == ("ext-h", "store", "park")
        assert "压力表在绿区 / Gauge in the green band" in wo.description
        assert "指针在红区" in wo.description
        assert wo.opened_by == "wang"


def test_fail_result_with_every_item_passed_needs_a_note_and_opens_a_work_order(
    engine: Engine,
) -> None:
    tid = task_id(engine)
    with pytest.raises(InvalidInput, match="needs a note"):
        complete(engine, tid, Completion(answers=ALL_PASS, result="fail"))
    done = complete(engine, tid, Completion(answers=ALL_PASS, result="fail", note="箱体破损"))
    assert done.work_order is not None  # type: ignore[attr-defined]


def test_na_answers_count_as_answered(engine: Engine) -> None:
    tid = task_id(engine)
    done = complete(engine, tid, Completion(answers={**ALL_PASS, "seal_intact": "na"}))
    assert done.task.result == "pass"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("completion", "error", "message"),
    [
        (Completion(answers={"in_place": "pass"}), InvalidInput, "not answered: gauge_green, seal"),
        (Completion(answers={**ALL_PASS, "x": "pass"}), InvalidInput, "not on task \\d+'s check"),
        (
            Completion(answers={**ALL_PASS, "in_place": "ok"}),
            InvalidInput,
            "must be pass, fail or na",
        ),
        (
            Completion(answers={**ALL_PASS, "in_place": "fail"}, result="pass"),
            InvalidInput,
            "result pass contradicts the failed items: in_place",
        ),
        (Completion(answers=ALL_PASS, result="maybe"), InvalidInput, "must be pass or fail"),
        (Completion(answers=ALL_PASS, note="a\x00b"), InvalidInput, "note must not contain"),
        (Completion(answers=ALL_PASS, note="x" * 2001), InvalidInput, "at most 2000"),
        (Completion(answers=ALL_PASS, user="wang wei"), InvalidInput, "user 'wang wei' must be"),
        (Completion(answers=ALL_PASS, photo=GIF), PhotoRejected, "JPEG, PNG or WebP"),
        (Completion(answers=ALL_PASS, photo=b""), PhotoRejected, "photo is empty"),
        (
            Completion(answers=ALL_PASS, photo=JPEG + b"\x00" * (5 * 1024 * 1024)),
            PhotoRejected,
            "at most 5242880 bytes",
        ),
    ],
)
def test_bad_completions_are_refused_and_store_nothing(
    engine: Engine, completion: Completion, error: type[Exception], message: str
) -> None:
    tid = task_id(engine)
    before = snapshot(engine)
    with pytest.raises(error, match=message):
        complete(engine, tid, completion)
    assert snapshot(engine) == before


def test_unknown_task_and_second_completion(engine: Engine) -> None:
    with pytest.raises(NotFound, match="no inspection task with id 999999"):
        complete(engine, 999999, Completion(answers=ALL_PASS))
    tid = task_id(engine)
    complete(engine, tid, Completion(answers=ALL_PASS, user="wang"))
    before = snapshot(engine)
    with pytest.raises(Conflict, match=r"already completed .* by wang; a completion is never"):
        complete(engine, tid, Completion(answers={**ALL_PASS, "in_place": "fail"}, user="li"))
    assert snapshot(engine) == before


def test_two_inspectors_completing_at_once_one_wins(engine: Engine) -> None:
    tid = task_id(engine)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run(user: str) -> None:
        factory = session_factory(engine)
        barrier.wait(timeout=10)
        try:
            with session_scope(factory) as session:
                complete_task(session, tid, Completion(answers=ALL_PASS, user=user), now=NOW)
            outcomes.append("done")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=run, args=(u,)) for u in ("wang", "li")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["conflict", "done"]


@pytest.mark.parametrize(("photo", "content_type"), [(JPEG, "image/jpeg"), (WEBP, "image/webp")])
def test_photo_kept_in_the_database(engine: Engine, photo: bytes, content_type: str) -> None:
    tid = task_id(engine)
    done = complete(engine, tid, Completion(answers=ALL_PASS, photo=photo))
    with Session(engine) as session:
        task = session.get(InspectionTask, tid)
        assert task is not None and task.photo_id is not None
        stored = session.get(InspectionPhoto, task.photo_id)
        assert stored is not None
        assert (stored.content_type, stored.size, stored.path) == (content_type, len(photo), None)
        assert PhotoStore().load(stored) == photo
    assert done is not None


def test_photo_kept_in_a_folder(engine: Engine, tmp_path: Path) -> None:
    store = PhotoStore(folder=tmp_path / "photos")
    tid = task_id(engine)
    png = tiny_png()
    complete(engine, tid, Completion(answers=ALL_PASS, photo=png), photos=store)
    with Session(engine) as session:
        photo = session.scalars(select(InspectionPhoto)).one()
        assert photo.data is None and photo.path is not None and photo.path.endswith(".png")
        assert (tmp_path / "photos" / photo.path).read_bytes() == png
        assert store.load(photo) == png


def test_check_photo_judges_by_content_not_name() -> None:
    assert check_photo(tiny_png()) == "image/png"
    with pytest.raises(PhotoRejected, match="JPEG, PNG or WebP") as caught:
        check_photo(b"%PDF-1.7\n" + b"x" * 100)
    assert not caught.value.too_large
    with pytest.raises(PhotoRejected) as caught:
        check_photo(JPEG, max_bytes=10)
    assert caught.value.too_large


def test_hostile_note_is_stored_verbatim(engine: Engine) -> None:
    tid = task_id(engine)
    note = "<script>alert('x')</script>\n'; DROP TABLE inspection_tasks; --\n\u202egnp.exe"
    complete(engine, tid, Completion(answers=ALL_PASS, note=note))
    with Session(engine) as session:
        task = session.get(InspectionTask, tid)
        assert task is not None and task.note == note.strip()


def test_list_tasks_filters(engine: Engine) -> None:
    with Session(engine) as session:
        total, rows = list_tasks(session, TaskFilter(), NOW)
        assert total == 5
        assert [t.due_at for t in rows] == sorted(t.due_at for t in rows)
        total, rows = list_tasks(session, TaskFilter(assignee="wang"), NOW)
        assert {t.subject for t in rows} == {"ext-1", "ext-2", "ext-h"}
        _, rows = list_tasks(session, TaskFilter(zone_id="store"), NOW)
        assert {t.subject for t in rows} == {"ext-h"}
        _, rows = list_tasks(session, TaskFilter(device_type="extinguisher", limit=2), NOW)
        assert len(rows) == 2
        # the lane patrol is due 18:00 today: overdue from 18:00 even before the sweep ran
        _, rows = list_tasks(session, TaskFilter(states=("overdue",)), at(2026, 11, 27, 18))
        assert [t.plan_id for t in rows] == ["lane"]
        _, rows = list_tasks(session, TaskFilter(states=("open",)), at(2026, 11, 27, 18))
        assert "lane" not in {t.plan_id for t in rows}
        _, rows = list_tasks(
            session, TaskFilter(due_after=at(2026, 11, 27), due_until=at(2026, 11, 28)), NOW
        )
        assert [t.plan_id for t in rows] == ["lane"]
