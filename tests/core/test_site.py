"""The site register: loading site.yaml + devices.csv, every kind of bad input, and the import."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from core.catalogue import load_catalogue
from core.db import make_engine, session_factory
from core.models import Building, Device, DeviceState, Floor, Site, Zone
from core.site import (
    EXTINGUISHER_AGENTS,
    MAX_PROBLEMS,
    SiteError,
    SiteSpec,
    import_site,
    load_site,
    point_in_polygon,
    polygon_area,
)
from tests.conftest import DEMO_SITE, ROOT

SITE_YAML = """\
site:
  id: p1
  name: {zh: 测试园区, en: Test park}
  plan: {width: 100, height: 60}
buildings:
  - id: B1
    name: {zh: 一号楼, en: Building 1}
    floors:
      - {id: B1-F1, level: 1, name: {zh: 一层, en: Ground floor}, width: 50, height: 20}
zones:
  - id: Z1
    name: {zh: 仓库, en: Store}
    kind: warehouse
    building: B1
    floor: B1-F1
    polygon: [[0, 0], [30, 0], [30, 20], [0, 20]]
  - id: Z2
    name: {zh: 危险品库, en: Hazmat store}
    kind: hazmat
    building: B1
    floor: B1-F1
    polygon: [[30, 0], [50, 0], [50, 20], [30, 20]]
  - id: LANE
    name: {zh: 消防车道, en: Fire lane}
    kind: fire_lane
    polygon: [[0, 0], [100, 0], [100, 6], [0, 6]]
"""
HEADER = (
    "id,type,zone,label,in_service_date,x,y,"
    "agent,size_kg,manufacture_date,next_maintenance_date,hazardous"
)
ROWS = [
    "sd-1,smoke_detector,Z1,Z1-01 感烟探测器,2024-03-01,5,5,,,,,",
    "ext-1,extinguisher,Z1,Z1-02 干粉灭火器 MF/ABC4,2024-03-01,6,6,"
    "dry_powder,4,2023-11-20,2028-11-20,",
    "tag-1,asset_tag,Z2,危险品标签 香水原液桶,2024-03-01,40,10,,,,,true",
    "fl-1,fire_lane,LANE,南侧车道监测,,50,3,,,,,",
]
NEXT_LINE = len(ROWS) + 2  # the line a row appended to ROWS is on


def make_folder(
    root: Path,
    site: str | None = SITE_YAML,
    rows: list[str] | None = None,
    header: str = HEADER,
) -> Path:
    folder = root / "site"
    folder.mkdir(exist_ok=True)
    if site is not None:
        (folder / "site.yaml").write_text(site, encoding="utf-8")
    lines = [header, *(ROWS if rows is None else rows)]
    (folder / "devices.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def load_error(folder: Path) -> SiteError:
    with pytest.raises(SiteError) as caught:
        load_site(folder)
    return caught.value


def csv_error(root: Path, *rows: str) -> SiteError:
    return load_error(make_folder(root, rows=[*ROWS, *rows]))


def yaml_error(root: Path, old: str, new: str) -> SiteError:
    assert old in SITE_YAML
    return load_error(make_folder(root, site=SITE_YAML.replace(old, new, 1)))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def count(engine: Engine, model: type) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(model)).scalar_one())


# --- geometry ------------------------------------------------------------------------------


def test_point_in_polygon_counts_edges_as_inside_and_handles_concave_shapes() -> None:
    ell = [[0, 0], [10, 0], [10, 4], [4, 4], [4, 10], [0, 10]]
    assert point_in_polygon(2, 2, ell)
    assert point_in_polygon(2, 8, ell)
    assert point_in_polygon(8, 2, ell)
    assert not point_in_polygon(8, 8, ell)  # the cut-out corner
    assert point_in_polygon(0, 5, ell)  # on an edge
    assert point_in_polygon(10, 0, ell)  # on a vertex
    assert not point_in_polygon(-0.1, 5, ell)
    assert polygon_area(ell) == 64
    assert polygon_area(list(reversed(ell))) == 64


# --- the demo park -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> SiteSpec:
    return load_site(DEMO_SITE)


def test_demo_park_has_every_device_type_and_the_required_places(demo: SiteSpec) -> None:
    types = Counter(d.type for d in demo.devices)
    assert len(demo.devices) >= 300
    assert set(types) == set(load_catalogue().device_types)
    kinds = Counter(z.kind for z in demo.zones)
    assert len(demo.buildings) >= 2
    assert kinds["hazmat"] >= 1 and kinds["warehouse"] >= 2
    assert kinds["office"] >= 1 and kinds["public"] >= 1
    lanes = [z for z in demo.zones if z.kind == "fire_lane"]
    assert len(lanes) >= 3 and all(z.outdoor for z in lanes)
    hazmat_buildings = {z.building for z in demo.zones if z.kind == "hazmat"}
    others = {z.building for z in demo.zones if z.kind in ("warehouse", "office", "public")}
    assert hazmat_buildings and hazmat_buildings.isdisjoint(others), "a separate hazmat store"


def test_demo_park_devices_sit_inside_their_zone(demo: SiteSpec) -> None:
    zones = {z.id: z for z in demo.zones}
    for device in demo.devices:
        assert device.x is not None and device.y is not None, device.id
        assert point_in_polygon(device.x, device.y, zones[device.zone].polygon), device.id


def test_demo_park_devices_are_where_they_belong(demo: SiteSpec) -> None:
    zones = {z.id: z for z in demo.zones}
    kind = {d.id: zones[d.zone].kind for d in demo.devices}
    by_type: dict[str, list] = {}
    for device in demo.devices:
        by_type.setdefault(device.type, []).append(device)
    assert all(kind[d.id] == "warehouse" for d in by_type["warehouse_env"])
    assert all(kind[d.id] == "hazmat" for d in by_type["hazmat_store"])
    assert all(kind[d.id] == "fire_lane" for d in by_type["fire_lane"])
    tags = [d for d in by_type["asset_tag"] if d.hazardous]
    in_hazmat = [d for d in tags if kind[d.id] == "hazmat"]
    assert len(in_hazmat) > len(tags) / 2
    buildings = {b.id for b in demo.buildings}
    for device_type in ("fire_alarm_panel", "power_monitor"):
        assert {zones[d.zone].building for d in by_type[device_type]} == buildings
    assert any(zones[d.zone].outdoor for d in by_type["hydrant_pressure"])
    assert any(not zones[d.zone].outdoor for d in by_type["hydrant_pressure"])


def test_demo_park_extinguishers_are_a_believable_register(demo: SiteSpec) -> None:
    extinguishers = [d for d in demo.devices if d.type == "extinguisher"]
    assert all(d.agent and d.size_kg and d.manufacture_date for d in extinguishers)
    agents = Counter(d.agent for d in extinguishers)
    assert {"dry_powder", "co2", "water"} <= set(agents) <= set(EXTINGUISHER_AGENTS)
    electrical = [d for d in extinguishers if "ELEC" in d.zone]
    assert electrical and all(d.agent == "co2" for d in electrical)
    # A few are close to a service or scrap date (GB 50444: water-based scrap at 6 years,
    # dry powder at 10, CO2 at 12).
    scrap_years = {"water": 6, "foam": 6, "dry_powder": 10, "clean_agent": 10, "co2": 12}
    today = time.strftime("%Y-%m-%d")
    soon = [
        d
        for d in extinguishers
        if d.manufacture_date
        and d.agent
        and d.manufacture_date.replace(year=d.manufacture_date.year + scrap_years[d.agent])
        .isoformat()
        .startswith(today[:4])
    ]
    assert soon, "some extinguishers reach their scrap age this year"


def test_demo_park_zones_tile_each_floor(demo: SiteSpec) -> None:
    for building, floor in demo.floors():
        zones = [z for z in demo.zones if z.floor == floor.id]
        assert zones, floor.id
        assert all(z.building == building.id for z in zones)
        area = sum(polygon_area(z.polygon) for z in zones)
        assert area == pytest.approx(floor.width * floor.height), floor.id
        # No overlap: every sample point (off the grid lines) is in exactly one zone.
        for i in range(int(floor.width)):
            for j in range(int(floor.height)):
                inside = [z.id for z in zones if point_in_polygon(i + 0.5, j + 0.5, z.polygon)]
                assert len(inside) == 1, (floor.id, i + 0.5, j + 0.5, inside)


def test_demo_park_register_is_what_the_generator_makes(tmp_path: Path) -> None:
    out = tmp_path / "devices.csv"
    subprocess.run(
        [sys.executable, str(DEMO_SITE / "generate_devices.py"), "--output", str(out)],
        check=True,
        cwd=ROOT,
    )
    assert out.read_bytes() == (DEMO_SITE / "devices.csv").read_bytes(), (
        "run examples/demo-park/generate_devices.py and commit devices.csv"
    )


def test_demo_park_imports_once_and_then_changes_nothing(engine: Engine, demo: SiteSpec) -> None:
    sessions = session_factory(engine)
    first = import_site(sessions, demo)
    assert first.site_id == "cdpark"
    assert first.sites.created == 1
    assert first.buildings.created == len(demo.buildings)
    assert first.floors.created == sum(len(b.floors) for b in demo.buildings)
    assert first.zones.created == len(demo.zones)
    assert first.devices.created == len(demo.devices)
    assert first.states_created == len(demo.devices)
    assert count(engine, Device) == len(demo.devices)
    with engine.connect() as c:
        presences = c.execute(select(DeviceState.presence).distinct()).scalars().all()
        stored = c.execute(
            select(Device.attributes, Device.in_service_date).where(Device.id == "A1-W1-EXT001")
        ).one()
    assert presences == ["unknown"]
    assert stored.attributes["agent"] == "dry_powder"
    assert stored.attributes["manufacture_date"] == "2016-12-20"
    assert stored.in_service_date.isoformat() == "2019-06-15"

    second = import_site(sessions, demo)
    assert not second.changed
    assert second.devices.unchanged == len(demo.devices)
    assert second.zones.unchanged == len(demo.zones)
    assert second.sites.unchanged == 1 and second.states_created == 0
    assert second.not_in_register == ()
    assert count(engine, Device) == len(demo.devices)
    assert count(engine, DeviceState) == len(demo.devices)


# --- importing changes ---------------------------------------------------------------------


def test_reimport_updates_adds_and_reports_but_never_deletes(
    engine: Engine, tmp_path: Path
) -> None:
    sessions = session_factory(engine)
    import_site(sessions, load_site(make_folder(tmp_path)))
    rows = [
        ROWS[0].replace("Z1-01 感烟探测器", "Z1-01 感烟探测器（已迁移）"),
        ROWS[1],
        ROWS[2],
        "sd-2,smoke_detector,Z1,Z1-03 感烟探测器,2025-01-10,12,5,,,,,",
    ]
    summary = import_site(sessions, load_site(make_folder(tmp_path, rows=rows)))
    assert (summary.devices.created, summary.devices.updated, summary.devices.unchanged) == (
        1,
        1,
        2,
    )
    assert summary.states_created == 1
    assert summary.not_in_register == ("fl-1",)
    assert summary.zones.unchanged == 3 and summary.sites.unchanged == 1
    assert "devices: 1 created, 1 updated, 2 unchanged; " in str(summary)
    assert summary.lines()[-1] == "1 stored device(s) not in devices.csv (kept): fl-1"
    with engine.connect() as c:
        assert (
            c.execute(select(Device.label).where(Device.id == "sd-1"))
            .scalar_one()
            .endswith("（已迁移）")
        )
        assert c.execute(select(Device.id).where(Device.id == "fl-1")).scalar_one() == "fl-1"


def test_a_changed_zone_polygon_and_floor_are_updates(engine: Engine, tmp_path: Path) -> None:
    sessions = session_factory(engine)
    import_site(sessions, load_site(make_folder(tmp_path)))
    site = SITE_YAML.replace("width: 50, height: 20", "width: 50, height: 25").replace(
        "[[30, 0], [50, 0], [50, 20], [30, 20]]", "[[30, 0], [50, 0], [50, 25], [30, 25]]"
    )
    summary = import_site(sessions, load_site(make_folder(tmp_path, site=site)))
    assert summary.floors.updated == 1 and summary.zones.updated == 1
    assert summary.zones.unchanged == 2 and summary.devices.unchanged == len(ROWS)
    with engine.connect() as c:
        polygon = c.execute(select(Zone.polygon).where(Zone.id == "Z2")).scalar_one()
        assert polygon[2] == [50, 25]
        assert c.execute(select(Floor.height)).scalar_one() == 25


def test_a_failed_import_leaves_the_store_untouched(engine: Engine, tmp_path: Path) -> None:
    sessions = session_factory(engine)
    import_site(sessions, load_site(make_folder(tmp_path)))
    other = tmp_path / "other"
    other.mkdir()
    other_site = (
        SITE_YAML.replace("id: p1", "id: p2")
        .replace("B1", "OB1")
        .replace("Z1", "OZ1")
        .replace("Z2", "OZ2")
        .replace("LANE", "OLANE")
    )
    import_site(
        sessions,
        load_site(make_folder(other, site=other_site, rows=["x-1,smoke_detector,OZ1,x,,1,1,,,,,"])),
    )
    before = {m.__name__: count(engine, m) for m in (Site, Building, Floor, Zone, Device)}

    # The site's name changes (written first), then a device id turns out to be another site's.
    renamed = SITE_YAML.replace("en: Test park", "en: Renamed park")
    rows = [
        *ROWS,
        "x-1,smoke_detector,Z1,stolen id,,2,2,,,,,",
        "new-1,heat_detector,Z1,h,,3,3,,,,,",
    ]
    spec = load_site(make_folder(tmp_path, site=renamed, rows=rows))
    with pytest.raises(SiteError) as caught:
        import_site(sessions, spec)
    assert "device id 'x-1' already belongs to site 'p2'" in str(caught.value)
    assert {m.__name__: count(engine, m) for m in (Site, Building, Floor, Zone, Device)} == before
    with engine.connect() as c:
        assert c.execute(select(Site.name_en).where(Site.id == "p1")).scalar_one() == "Test park"
        assert c.execute(select(Device.site_id).where(Device.id == "x-1")).scalar_one() == "p2"
        assert c.execute(select(Device.id).where(Device.id == "new-1")).first() is None


def test_twenty_thousand_devices_import_in_seconds(engine: Engine, tmp_path: Path) -> None:
    types = sorted(set(load_catalogue().device_types) - {"extinguisher", "asset_tag"})
    rows = [
        f"d{n:05d},{types[n % len(types)]},Z1,D{n:05d} {types[n % len(types)]},2024-01-01,"
        f"{n % 30},{(n // 30) % 20},,,,,"
        for n in range(20_000)
    ]
    folder = make_folder(tmp_path, rows=rows)
    started = time.perf_counter()
    spec = load_site(folder)
    loaded = time.perf_counter()
    summary = import_site(session_factory(engine), spec)
    imported = time.perf_counter()
    again = import_site(session_factory(engine), spec)
    done = time.perf_counter()
    print(
        f"\n20,000 devices on {engine.dialect.name}: load {loaded - started:.2f} s, "
        f"import {imported - loaded:.2f} s, re-import {done - imported:.2f} s"
    )
    assert summary.devices.created == 20_000 and again.devices.unchanged == 20_000
    assert imported - started < 30 and done - imported < 30


# --- files that are missing or not what they should be ------------------------------------


def test_a_missing_folder_or_file_is_named(tmp_path: Path) -> None:
    assert "is not a folder" in str(load_error(tmp_path / "nowhere"))
    folder = make_folder(tmp_path, site=None)
    assert str(load_error(folder)).startswith("site.yaml: file not found in")
    (folder / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (folder / "devices.csv").unlink()
    assert str(load_error(folder)).startswith("devices.csv: file not found in")
    (folder / "devices.csv").mkdir()
    assert str(load_error(folder)) == "devices.csv: is not a regular file"


def test_non_utf8_files_are_refused_with_their_line(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    text = "\n".join([HEADER, *ROWS, "sd-9,smoke_detector,Z1,九号感烟探测器,,1,1,,,,,"]) + "\n"
    (folder / "devices.csv").write_bytes(text.encode("gbk"))
    error = load_error(folder)
    assert error.problems[0].line == 2  # the first Chinese label
    assert "not UTF-8" in str(error) and "CSV UTF-8" in str(error)
    (folder / "site.yaml").write_bytes(SITE_YAML.encode("gb18030"))
    assert str(load_error(folder)).startswith("site.yaml line 3: not UTF-8")


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    text = "\n".join([HEADER, *ROWS]) + "\n"
    (folder / "devices.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (folder / "site.yaml").write_bytes(b"\xef\xbb\xbf" + SITE_YAML.encode("utf-8"))
    spec = load_site(folder)
    assert [d.id for d in spec.devices] == ["sd-1", "ext-1", "tag-1", "fl-1"]


def test_oversized_files_are_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "site.yaml").write_text(SITE_YAML + "#" * (3 * 1024 * 1024), encoding="utf-8")
    assert "larger than 2 MiB" in str(load_error(folder))


# --- site.yaml -----------------------------------------------------------------------------


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    error = yaml_error(tmp_path, "    kind: hazmat\n", "    kind: hazmat\n   building: [B1\n")
    assert str(error).startswith("site.yaml line 20: not valid YAML")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "kind: hazmat",
            "kind: garage",
            "site.yaml line 19, zones[1].kind: 'garage' is not a zone kind; use one of general, "
            "warehouse, hazmat, fire_lane, office, public",
        ),
        (
            "    kind: hazmat\n",
            "",
            "site.yaml line 17, zones[1].kind: required, but missing",
        ),
        (
            "    kind: hazmat\n",
            "    kind: hazmat\n    colour: red\n",
            "site.yaml line 20, zones[1].colour: unknown key (a typo?)",
        ),
        (
            "id: Z2",
            "id: Z1",
            "site.yaml line 17, zones[1].id: duplicate zone id 'Z1'",
        ),
        (
            "id: Z2",
            "id: Z/2",
            "site.yaml line 17, zones[1].id: 'Z/2' contains '/'; an id uses only letters, "
            "digits, '_' and '-'",
        ),
        (
            "    building: B1\n    floor: B1-F1\n    polygon: [[30",
            "    building: B9\n    floor: B1-F1\n    polygon: [[30",
            "site.yaml line 20, zones[1].building: unknown building 'B9'",
        ),
        (
            "    building: B1\n    floor: B1-F1\n    polygon: [[30",
            "    building: B1\n    polygon: [[30",
            "site.yaml line 17, zones[1].floor: an indoor zone names its building and floor",
        ),
        (
            "[[30, 0], [50, 0], [50, 20], [30, 20]]",
            "[[30, 0], [55, 0], [50, 20], [30, 20]]",
            "site.yaml line 22, zones[1].polygon[1]: (55, 0) lies outside the plan 0..50 x 0..20",
        ),
        (
            "[[30, 0], [50, 0], [50, 20], [30, 20]]",
            "[[30, 0], [50, 20], [50, 0], [30, 10]]",
            "site.yaml line 22, zones[1].polygon: the polygon's edges 0 and 2 cross",
        ),
        (
            "[[30, 0], [50, 0], [50, 20], [30, 20]]",
            "[[30, 0], [40, 0], [50, 0]]",
            "site.yaml line 22, zones[1].polygon: the polygon has no area",
        ),
        (
            "[[30, 0], [50, 0], [50, 20], [30, 20]]",
            "[[30, 0], [50, 0], [50, .nan], [30, 20]]",
            "site.yaml line 22, zones[1].polygon[2][1]: nan is not a finite number",
        ),
        (
            "[[30, 0], [50, 0], [50, 20], [30, 20]]",
            "[[30, 0], [50, 0]]",
            "site.yaml line 22, zones[1].polygon: list should have at least 3 items",
        ),
        (
            "width: 50, height: 20",
            "width: fifty, height: 20",
            "site.yaml line 9, buildings[0].floors[0].width: 'fifty' is not a number",
        ),
        (
            "  plan: {width: 100, height: 60}\n",
            "  plan: {width: 100, height: 60}\n  timezone: Mars/Olympus\n",
            "site.yaml line 5, site.timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "[[0, 0], [100, 0], [100, 6], [0, 6]]",
            "[[0, 0], [120, 0], [100, 6], [0, 6]]",
            "site.yaml line 26, zones[2].polygon[1]: (120, 0) lies outside the plan 0..100 x 0..60",
        ),
        (
            "{zh: 仓库, en: Store}",
            "{zh: 仓库, en: Store, en: Shop}",
            "site.yaml line 12, zones[0].name: duplicate key 'en'",
        ),
        (
            "{zh: 仓库, en: Store}",
            '{zh: "仓\\u202e库", en: Store}',
            "site.yaml line 12, zones[0].name.zh: contains the control character U+202E",
        ),
    ],
)
def test_bad_site_yaml_names_line_path_and_problem(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    error = yaml_error(tmp_path, old, new)
    assert str(error).startswith(expected), str(error)


def test_floor_of_another_building_is_refused(tmp_path: Path) -> None:
    site = SITE_YAML.replace(
        "zones:\n",
        "  - id: B2\n    name: {zh: 二号楼, en: Building 2}\n    floors:\n"
        "      - {id: B2-F1, level: 1, name: {zh: 一层, en: Ground}, width: 10, height: 10}\n"
        "zones:\n",
    ).replace("    floor: B1-F1\n    polygon: [[30", "    floor: B2-F1\n    polygon: [[30")
    error = load_error(make_folder(tmp_path, site=site))
    assert "zones[1].floor: floor 'B2-F1' is in building 'B2', not 'B1'" in str(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "site.yaml: the file is empty"),
        ("- a\n- b\n", "site.yaml line 1: expected a mapping with the keys site, buildings"),
        ("site: &s {id: p1}\nzones: *s\n", "site.yaml line 2: not valid YAML: aliases"),
        ("site: " + "[" * 20_000, "site.yaml: not a site file: nested too deeply"),
        ("site:\n  id: p1\n", "site.yaml line 2, site.name: required, but missing"),
    ],
)
def test_yaml_that_is_not_a_site_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    error = load_error(make_folder(tmp_path, site=text))
    assert str(error).startswith(expected), str(error)


def test_every_yaml_problem_is_reported_at_once(tmp_path: Path) -> None:
    site = SITE_YAML.replace("kind: hazmat", "kind: garage").replace("kind: fire_lane", "kind: x")
    error = load_error(make_folder(tmp_path, site=site))
    assert [p.path for p in error.problems] == ["zones[1].kind", "zones[2].kind"]


# --- devices.csv ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "sd-9,smok,Z1,label,,1,1,,,,,",
            "field 'type': unknown device type 'smok'",
        ),
        (
            "sd-9,smoke_detectr,Z1,label,,1,1,,,,,",
            "field 'type': unknown device type 'smoke_detectr' (did you mean 'smoke_detector'?)",
        ),
        ("sd-9,smoke_detector,Z9,label,,1,1,,,,,", "field 'zone': unknown zone 'Z9'"),
        (
            "sd-9,smoke_detector,Z1,label,2024-02-30,1,1,,,,,",
            "field 'in_service_date': '2024-02-30' is not a date in the calendar",
        ),
        (
            "sd-9,smoke_detector,Z1,label,01/03/2024,1,1,,,,,",
            "field 'in_service_date': '01/03/2024' is not a date; write it as YYYY-MM-DD",
        ),
        (
            "sd-9,smoke_detector,Z1,label,,abc,1,,,,,",
            "field 'x': 'abc' is not a number",
        ),
        ("sd-9,smoke_detector,Z1,label,,nan,1,,,,,", "field 'x': nan is not a finite number"),
        (
            "e-9,extinguisher,Z1,label,,1,1,dry_powder,-4,2024-01-01,,",
            "field 'size_kg': input should be greater than 0, got '-4'",
        ),
        ("sd-9,smoke_detector,Z1,label,,1,,,,,,", "field 'y': x is given, so y is needed too"),
        (
            "sd-9,smoke_detector,Z1,label,,40,1,,,,,",
            "field 'x,y': position (40, 1) lies outside zone 'Z1'",
        ),
        (
            "e-9,extinguisher,Z1,label,,1,1,,4,2024-01-01,,",
            "field 'agent': required for an extinguisher: one of water, foam, dry_powder, "
            "clean_agent, co2",
        ),
        (
            "e-9,extinguisher,Z1,label,,1,1,sand,4,2024-01-01,,",
            "field 'agent': 'sand' is not an extinguisher agent",
        ),
        (
            "e-9,extinguisher,Z1,label,,1,1,co2,4,,,",
            "field 'manufacture_date': required for an extinguisher",
        ),
        (
            "e-9,extinguisher,Z1,label,2020-01-01,1,1,co2,4,2024-01-01,,",
            "field 'in_service_date': 2020-01-01 is before the manufacture_date 2024-01-01",
        ),
        (
            "sd-9,smoke_detector,Z1,label,,1,1,co2,,,,",
            "field 'agent': only an extinguisher has agent; this is a smoke_detector",
        ),
        (
            "t-9,asset_tag,Z2,label,,35,1,,,,,yes",
            "field 'hazardous': 'yes' is not true or false",
        ),
        (
            "sd-9,smoke_detector,Z1,label,,1,1,,,,,true",
            "field 'hazardous': only an asset_tag has hazardous",
        ),
        (
            "sd-1,smoke_detector,Z1,label,,1,1,,,,,",
            "field 'id': duplicate device id 'sd-1' (first on line 2)",
        ),
        (
            "a/b,smoke_detector,Z1,label,,1,1,,,,,",
            "field 'id': 'a/b' contains '/'; an id uses only letters, digits, '_' and '-'",
        ),
        ("a#b,smoke_detector,Z1,label,,1,1,,,,,", "field 'id': 'a#b' contains '#'"),
        (
            "x" * 65 + ",smoke_detector,Z1,label,,1,1,,,,,",
            "field 'id': '" + "x" * 40 + "…' is 65 characters long; an id has at most 64",
        ),
        (
            "sd-9,smoke_detector,Z1," + "长" * 10_000 + ",,1,1,,,,,",
            "field 'label': is 10000 characters long; at most 200 are allowed",
        ),
        (
            'sd-9,smoke_detector,Z1,"two\nlines",,1,1,,,,,',
            "field 'label': contains the control character U+000A",
        ),
        ("sd-9,smoke_detector,Z1,a\x00b,,1,1,,,,,", "contains the control character U+0000"),
        ("sd-9,smoke_detector,Z1,,,1,1,,,,,", "field 'label': required, but missing"),
        (
            "sd-9,smoke_detector,Z1,Hall A, north,,1,1,,,,,",
            "13 fields, but the header has 12 (put a value containing a comma in double quotes)",
        ),
        ("sd-9,smoke_detector,Z1", "3 fields, but the header has 12"),
    ],
)
def test_bad_register_lines_name_line_field_and_problem(
    tmp_path: Path, row: str, expected: str
) -> None:
    error = csv_error(tmp_path, row)
    assert str(error).startswith(f"devices.csv line {NEXT_LINE}"), str(error)
    assert expected in str(error), str(error)
    assert len(str(error)) < 1000, "a hostile value is not echoed in full"


def test_a_huge_field_is_refused_not_read(tmp_path: Path) -> None:
    error = csv_error(tmp_path, "sd-9,smoke_detector,Z1," + "x" * 200_000 + ",,1,1,,,,,")
    assert str(error).startswith(f"devices.csv line {NEXT_LINE}: not readable as CSV: field larger")


def test_missing_and_badly_named_columns_are_named(tmp_path: Path) -> None:
    error = load_error(make_folder(tmp_path, header="id,type,label,x", rows=["a,b,c,d"]))
    assert str(error) == (
        "devices.csv line 1: missing column(s) 'zone', 'in_service_date', 'y'; "
        "the header starts with id,type,zone,label,in_service_date,x,y"
    )
    error = load_error(make_folder(tmp_path, header=HEADER + ",Size (kg),id", rows=[]))
    assert [p.message for p in error.problems] == [
        "column name 'size (kg)' is not lowercase letters, digits and '_'",
        "column 'id' appears twice",
    ]
    error = load_error(make_folder(tmp_path, header="", rows=[]))
    assert str(error).startswith("devices.csv line 1: the file is empty")


def test_optional_and_extra_columns(tmp_path: Path) -> None:
    header = "ID,Type,Zone,Label,In_Service_Date,X,Y,un_number,contents,"
    rows = [
        "tag-1,asset_tag,Z2,香水原液桶标签,2024-03-01,40,10,UN1266,香水原液 200L,",
        "",
        "sd-1,smoke_detector,Z1,Z1-01 感烟探测器,,,,,,",
    ]
    spec = load_site(make_folder(tmp_path, header=header, rows=rows))
    tag, detector = spec.devices
    assert tag.attributes == {"un_number": "UN1266", "contents": "香水原液 200L"}
    assert detector.attributes == {} and detector.x is None and detector.in_service_date is None
    error = load_error(make_folder(tmp_path, header=header, rows=[rows[2] + "oops"]))
    assert str(error) == "devices.csv line 2: value 'oops' in a column without a name"


def test_line_numbers_count_blank_lines_and_multiline_fields(tmp_path: Path) -> None:
    rows = [
        ROWS[0],
        "",
        '"sd-2",smoke_detector,Z1,"quoted, with comma",,1,1,,,,,',
        "sd-3,x,Z1,l,,1,1,,,,,",
    ]
    error = load_error(make_folder(tmp_path, rows=rows))
    assert str(error).startswith("devices.csv line 5, field 'type'")


def test_every_register_problem_is_reported_at_once_up_to_a_limit(tmp_path: Path) -> None:
    error = csv_error(tmp_path, "sd-9,smok,Z9,label,,1,1,,,,,")
    assert [p.field for p in error.problems] == ["type", "zone"]
    error = csv_error(tmp_path, *[f"d{n},smok,Z1,l,,1,1,,,,," for n in range(50)])
    assert len(error.problems) == MAX_PROBLEMS and error.truncated
    assert str(error).endswith("(stopped after 20 problems: fix these and load again)")
    assert [p.line for p in error.problems] == list(range(NEXT_LINE, NEXT_LINE + MAX_PROBLEMS))


# --- anything else -------------------------------------------------------------------------

CSV_PIECES = [
    *("sd-1", "smoke_detector", "extinguisher", "asset_tag", "Z1", "Z2", "LANE", "co2"),
    *("true", "2024-01-01", "12.5", ",", ",", ",", '"', "\n", "\r\n", " ", "-", "nan", "1e999"),
    *("长", "\x00", "\ufeff", "#"),
]
YAML_PIECES = [
    *("site:", "id:", "p1", "name:", "zones:", "buildings:", "floors:", "polygon:", "kind:"),
    *("zh:", "en:", "width:", "level:", "\n", "\n  ", "\n    - ", "- ", "[", "]", "{", "}", ","),
    *("&a", "*a", "!!python/object", "0", "[[0, 0], [1, 0], [1, 1]]", "'", '"', ": ", "? "),
    *("%YAML 1.1\n", "---\n", "\t"),
]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.sampled_from(CSV_PIECES), max_size=14).map("".join), max_size=6))
def test_any_register_text_loads_or_raises_a_site_error(tmp_path: Path, rows: list[str]) -> None:
    try:
        spec = load_site(make_folder(tmp_path, rows=[*ROWS, *rows]))
    except SiteError as error:
        assert error.problems and all(p.file == "devices.csv" for p in error.problems)
    else:
        assert len(spec.devices) >= len(ROWS)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join))
def test_any_site_text_loads_or_raises_a_site_error(tmp_path: Path, noise: str) -> None:
    for text in (noise, SITE_YAML + noise, noise + SITE_YAML):
        try:
            load_site(make_folder(tmp_path, site=text))
        except SiteError as error:
            assert error.problems and all(p.file == "site.yaml" for p in error.problems)
