"""The site register: load a site folder (``site.yaml`` + ``devices.csv``) and import it.

``site.yaml`` describes one park: the site, its buildings with their floors (plan size in
metres), and its zones, each with a kind and a polygon. An indoor zone names its building and
floor and its polygon is in that floor's plan; an outdoor zone (a fire lane, a yard) names
neither and its polygon is in the site plan. Coordinates are metres from the plan's
south-west corner, x to the east, y to the north.

``devices.csv`` is the device register, one device a line, with the header
``id,type,zone,label,in_service_date,x,y`` followed by any of the model attributes
``agent,size_kg,manufacture_date,next_maintenance_date,hazardous``; further columns are kept as
string attributes.

:func:`load_site` validates both files at the edge and returns a :class:`SiteSpec`, or raises
:class:`SiteError` listing every problem of the file (up to :data:`MAX_PROBLEMS`), each naming the
file, the line and the field. :func:`import_site` upserts a spec in one transaction.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import Select, bindparam, insert, select, update
from sqlalchemy.orm import Session
from yaml.composer import ComposerError

from core.catalogue import load_catalogue
from core.contract import ID_PATTERN
from core.db import SessionFactory, session_scope
from core.models import ZONE_KINDS, Building, Device, DeviceState, Floor, Site, Zone

SITE_FILE = "site.yaml"
DEVICES_FILE = "devices.csv"
MAX_PROBLEMS = 20
MAX_SITE_BYTES = 2 * 1024 * 1024
MAX_DEVICES_BYTES = 32 * 1024 * 1024
MAX_DEVICES = 100_000
MAX_TEXT = 200  # the name and label columns are String(200)
MAX_POLYGON_POINTS = 200
MAX_TOTAL_POINTS = 50_000
MAX_PLAN_METRES = 10_000.0
MAX_EXTRA_COLUMNS = 32
EXTINGUISHER_AGENTS = ("water", "foam", "dry_powder", "clean_agent", "co2")
DEVICE_COLUMNS = ("id", "type", "zone", "label", "in_service_date", "x", "y")
ATTRIBUTE_COLUMNS = ("agent", "size_kg", "manufacture_date", "next_maintenance_date", "hazardous")
EXTINGUISHER_ONLY = ("agent", "size_kg")
ASSET_TAG_ONLY = ("hazardous",)

_ID_RE = re.compile(ID_PATTERN)
_COLUMN_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Control characters (NUL cannot even be stored in PostgreSQL), line separators, BOMs and the
# bidirectional overrides that can make a label read differently from what it is.
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_EARLIEST, _LATEST = date(1900, 1, 1), date(2100, 12, 31)


# ---------------------------------------------------------------------------------------------
# Problems and the error


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a site folder, said so that a person can find and fix it."""

    file: str
    message: str
    line: int | None = None
    path: str | None = None  # site.yaml: where in the document, e.g. zones[3].kind
    field: str | None = None  # devices.csv: the column

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" line {self.line}"
        if self.path:
            where += f", {self.path}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"


class SiteError(Exception):
    """A site folder that cannot be loaded or imported; ``str()`` is the message for a person."""

    def __init__(self, problems: Sequence[Problem], truncated: bool = False) -> None:
        self.problems = tuple(problems)
        self.truncated = truncated
        lines = [str(p) for p in self.problems]
        if truncated:
            lines.append(f"(stopped after {len(lines)} problems: fix these and load again)")
        super().__init__("\n".join(lines))


class _Problems:
    """Collects up to MAX_PROBLEMS problems of one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Problem] = []
        self.truncated = False

    @property
    def full(self) -> bool:
        return self.truncated

    def add(
        self,
        message: str,
        *,
        line: int | None = None,
        path: str | None = None,
        field: str | None = None,
    ) -> None:
        if len(self.items) >= MAX_PROBLEMS:
            self.truncated = True
            return
        self.items.append(Problem(self.file, message, line, path, field))

    def fail(self, message: str, *, line: int | None = None) -> SiteError:
        self.add(message, line=line)
        return self.error()

    def error(self) -> SiteError:
        return SiteError(self.items, self.truncated)

    def raise_any(self) -> None:
        if self.items:
            raise self.error()


def _show(value: object, limit: int = 40) -> str:
    """A value quoted for a message: shortened, and with control characters escaped."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


# ---------------------------------------------------------------------------------------------
# Field types


def _check_id(value: str) -> str:
    if _ID_RE.fullmatch(value):
        return value
    if not value:
        raise ValueError("is empty")
    if len(value) > 64:
        raise ValueError(f"{_show(value)} is {len(value)} characters long; an id has at most 64")
    bad = next(ch for ch in value if not _ID_RE.fullmatch(ch))
    raise ValueError(
        f"{_show(value)} contains {bad!r}; an id uses only letters, digits, '_' and '-'"
    )


def _check_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("is empty")
    if len(value) > MAX_TEXT:
        raise ValueError(f"is {len(value)} characters long; at most {MAX_TEXT} are allowed")
    bad = _BAD_CHARS.search(value)
    if bad:
        raise ValueError(f"contains the control character U+{ord(bad.group()):04X}")
    return value


def _finite(value: object) -> object:
    """Numbers as numbers: no booleans, no NaN or infinity, strings parsed the usual way."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{_show(value)} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return value


def _parse_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value.strip()):
        raise ValueError(f"{_show(value)} is not a date; write it as YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{_show(value)} is not a date in the calendar") from None
    if not _EARLIEST <= parsed <= _LATEST:
        raise ValueError(f"{_show(value)} is not between {_EARLIEST} and {_LATEST}")
    return parsed


def _parse_bool(value: object) -> object:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{_show(value)} is not true or false")


def _check_device_type(value: str) -> str:
    types = load_catalogue().device_types
    if value not in types:
        raise ValueError(f"unknown device type {_show(value)}{_did_you_mean(value, types)}")
    return value


def _check_agent(value: str) -> str:
    if value not in EXTINGUISHER_AGENTS:
        raise ValueError(
            f"{_show(value)} is not an extinguisher agent; use one of "
            + ", ".join(EXTINGUISHER_AGENTS)
        )
    return value


def _check_kind(value: str) -> str:
    if value not in ZONE_KINDS:
        raise ValueError(f"{_show(value)} is not a zone kind; use one of " + ", ".join(ZONE_KINDS))
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{_show(value)} is not an IANA time zone such as Asia/Shanghai") from None
    return value


def _did_you_mean(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


IdStr = Annotated[str, AfterValidator(_check_id)]
Text = Annotated[str, AfterValidator(_check_text)]
Coord = Annotated[float, BeforeValidator(_finite), Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Metres = Annotated[
    float, BeforeValidator(_finite), Field(gt=0, le=MAX_PLAN_METRES, allow_inf_nan=False)
]
IsoDate = Annotated[date, BeforeValidator(_parse_date)]
Point = tuple[Coord, Coord]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Names(_Spec):
    zh: Text
    en: Text


class PlanSize(_Spec):
    width: Metres
    height: Metres


class SiteInfo(_Spec):
    id: IdStr
    name: Names
    timezone: Annotated[str, Field(max_length=64), AfterValidator(_check_timezone)] = (
        "Asia/Shanghai"
    )
    plan: PlanSize | None = Field(
        default=None, description="the site plan in which outdoor zones are drawn"
    )


class FloorSpec(_Spec):
    id: IdStr
    level: Annotated[int, BeforeValidator(_finite), Field(ge=-20, le=300)]
    name: Names
    width: Metres
    height: Metres


class BuildingSpec(_Spec):
    id: IdStr
    name: Names
    floors: Annotated[list[FloorSpec], Field(min_length=1, max_length=300)]


class ZoneSpec(_Spec):
    id: IdStr
    name: Names
    kind: Annotated[str, AfterValidator(_check_kind)]
    building: IdStr | None = None
    floor: IdStr | None = None
    polygon: Annotated[list[Point], Field(min_length=3, max_length=MAX_POLYGON_POINTS)]

    @property
    def outdoor(self) -> bool:
        return self.floor is None

    def contains(self, x: float, y: float) -> bool:
        """Whether (x, y) lies inside this zone's polygon or on its edge."""
        return point_in_polygon(x, y, self.polygon)


class _SiteDocument(_Spec):
    site: SiteInfo
    buildings: Annotated[list[BuildingSpec], Field(max_length=1000)] = []
    zones: Annotated[list[ZoneSpec], Field(min_length=1, max_length=10_000)]


class DeviceSpec(BaseModel):
    """One line of devices.csv: the device and its model attributes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: IdStr
    type: Annotated[str, AfterValidator(_check_device_type)]
    zone: IdStr
    label: Text
    in_service_date: IsoDate | None = None
    x: Coord | None = None
    y: Coord | None = None
    agent: Annotated[str, AfterValidator(_check_agent)] | None = None
    size_kg: Annotated[float, BeforeValidator(_finite), Field(gt=0, le=500)] | None = None
    manufacture_date: IsoDate | None = None
    next_maintenance_date: IsoDate | None = None
    hazardous: Annotated[bool, BeforeValidator(_parse_bool)] | None = None
    extra: dict[str, Text] = Field(default_factory=dict)

    @property
    def attributes(self) -> dict[str, Any]:
        """The model attributes as stored in Device.attributes (JSON; dates as ISO strings)."""
        out: dict[str, Any] = dict(self.extra)
        if self.agent is not None:
            out["agent"] = self.agent
        if self.size_kg is not None:
            out["size_kg"] = self.size_kg
        if self.manufacture_date is not None:
            out["manufacture_date"] = self.manufacture_date.isoformat()
        if self.next_maintenance_date is not None:
            out["next_maintenance_date"] = self.next_maintenance_date.isoformat()
        if self.hazardous is not None:
            out["hazardous"] = self.hazardous
        return out


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """A validated site folder."""

    site: SiteInfo
    buildings: tuple[BuildingSpec, ...]
    zones: tuple[ZoneSpec, ...]
    devices: tuple[DeviceSpec, ...]

    def zone(self, zone_id: str) -> ZoneSpec:
        for zone in self.zones:
            if zone.id == zone_id:
                return zone
        raise KeyError(zone_id)

    def floors(self) -> Iterator[tuple[BuildingSpec, FloorSpec]]:
        for building in self.buildings:
            for floor in building.floors:
                yield building, floor


# ---------------------------------------------------------------------------------------------
# Geometry


def point_in_polygon(x: float, y: float, polygon: Sequence[Sequence[float]]) -> bool:
    """Whether (x, y) lies inside the polygon or on its boundary (even-odd rule)."""
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i][0], polygon[i][1]
        x2, y2 = polygon[(i + 1) % n][0], polygon[(i + 1) % n][1]
        if _on_segment(x, y, x1, y1, x2, y2):
            return True
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def polygon_area(polygon: Sequence[Sequence[float]]) -> float:
    """The polygon's area (shoelace), positive for either orientation."""
    n = len(polygon)
    twice = sum(
        polygon[i][0] * polygon[(i + 1) % n][1] - polygon[(i + 1) % n][0] * polygon[i][1]
        for i in range(n)
    )
    return abs(twice) / 2


def _on_segment(px: float, py: float, x1: float, y1: float, x2: float, y2: float) -> bool:
    cross = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    scale = max(abs(x2 - x1), abs(y2 - y1), 1.0)
    if abs(cross) > 1e-9 * scale * scale:
        return False
    return min(x1, x2) - 1e-9 <= px <= max(x1, x2) + 1e-9 and (
        min(y1, y2) - 1e-9 <= py <= max(y1, y2) + 1e-9
    )


def _segments_cross(a: Point, b: Point, c: Point, d: Point) -> bool:
    """Whether segments ab and cd touch or cross."""

    def orient(p: Point, q: Point, r: Point) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    o1, o2, o3, o4 = orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b)
    if ((o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)) and (
        (o3 > 0 and o4 < 0) or (o3 < 0 and o4 > 0)
    ):
        return True
    return (
        (o1 == 0 and _on_segment(c[0], c[1], *a, *b))
        or (o2 == 0 and _on_segment(d[0], d[1], *a, *b))
        or (o3 == 0 and _on_segment(a[0], a[1], *c, *d))
        or (o4 == 0 and _on_segment(b[0], b[1], *c, *d))
    )


def _self_crossing(polygon: Sequence[Point]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that touch or cross, if any."""
    n = len(polygon)
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(a, b, polygon[j], polygon[(j + 1) % n]):
                return i, j
    return None


# ---------------------------------------------------------------------------------------------
# Reading files


def _read_text(folder: Path, name: str, limit: int) -> str:
    problems = _Problems(name)
    path = folder / name
    if not path.exists():
        raise problems.fail(f"file not found in {folder}")
    if not path.is_file():
        raise problems.fail("is not a regular file")
    with path.open("rb") as stream:
        raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise problems.fail(f"the file is larger than {limit // (1024 * 1024)} MiB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise problems.fail(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
            + (" ('CSV UTF-8' in a spreadsheet)" if name.endswith(".csv") else ""),
            line=line,
        ) from None


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases, so a small file cannot expand into a huge one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ComposerError(None, None, "aliases (*name) are not allowed in a site file", mark)
        return super().compose_node(parent, index)


def _compose(text: str, problems: _Problems) -> tuple[Any, yaml.Node]:
    loader = _NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise problems.fail("the file is empty; it needs site, buildings and zones")
        _duplicate_keys(node, problems)
        problems.raise_any()
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise problems.fail(f"not valid YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise problems.fail(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise problems.fail("not a site file: nested too deeply") from None
    finally:
        loader.dispose()


def _duplicate_keys(root: yaml.Node, problems: _Problems) -> None:
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    problems.add(
                        f"duplicate key {_show(name)}",
                        line=key.start_mark.line + 1,
                        path=path or None,
                    )
                seen.add(name)
                stack.append((value, f"{path}.{name}" if path else name))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def _yaml_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _yaml_line(root: yaml.Node, loc: Sequence[int | str]) -> int:
    """The line of the deepest node on ``loc`` (the parent's when the item is missing)."""
    node = root
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((v for k, v in node.value if str(k.value) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if 0 <= part < len(node.value) else None
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1


def _explain(error: Any) -> str:
    """A pydantic error as a sentence, with the offending value where that helps."""
    kind = error["type"]
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        return message[len("Value error, ") :]
    message = message[:1].lower() + message[1:]
    value = error.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        message += f", got {_show(value)}"
    return message


# ---------------------------------------------------------------------------------------------
# site.yaml


def _load_site_yaml(folder: Path) -> tuple[SiteInfo, list[BuildingSpec], list[ZoneSpec]]:
    problems = _Problems(SITE_FILE)
    data, root = _compose(_read_text(folder, SITE_FILE, MAX_SITE_BYTES), problems)
    if not isinstance(data, dict):
        raise problems.fail("expected a mapping with the keys site, buildings and zones", line=1)
    try:
        document = _SiteDocument.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            problems.add(_explain(error), line=_yaml_line(root, loc), path=_yaml_path(loc))
        raise problems.error() from None

    def add(message: str, loc: tuple[int | str, ...]) -> None:
        problems.add(message, line=_yaml_line(root, loc), path=_yaml_path(loc))

    floors: dict[str, tuple[str, FloorSpec]] = {}
    buildings: dict[str, int] = {}
    for b, building in enumerate(document.buildings):
        if building.id in buildings:
            add(f"duplicate building id {building.id!r}", ("buildings", b, "id"))
        buildings[building.id] = b
        for f, floor in enumerate(building.floors):
            if floor.id in floors:
                add(f"duplicate floor id {floor.id!r}", ("buildings", b, "floors", f, "id"))
            floors[floor.id] = (building.id, floor)

    zones: set[str] = set()
    total_points = 0
    for z, zone in enumerate(document.zones):
        if zone.id in zones:
            add(f"duplicate zone id {zone.id!r}", ("zones", z, "id"))
        zones.add(zone.id)
        total_points += len(zone.polygon)
        if total_points > MAX_TOTAL_POINTS:
            add(f"more than {MAX_TOTAL_POINTS} polygon points in all", ("zones", z, "polygon"))
            break
        for message, loc in _zone_problems(zone, document.site, floors, buildings):
            add(message, ("zones", z, *loc))
    problems.raise_any()
    return document.site, list(document.buildings), list(document.zones)


def _zone_problems(
    zone: ZoneSpec,
    site: SiteInfo,
    floors: dict[str, tuple[str, FloorSpec]],
    buildings: dict[str, int],
) -> Iterator[tuple[str, tuple[int | str, ...]]]:
    """A zone's building and floor must exist and agree; its polygon must fit their plan."""
    plan = (site.plan.width, site.plan.height) if site.plan else None
    if zone.floor is not None or zone.building is not None:
        plan = None
        if zone.floor is None or zone.building is None:
            missing = "floor" if zone.floor is None else "building"
            yield (
                "an indoor zone names its building and floor (an outdoor zone neither)",
                (missing,),
            )
        elif zone.building not in buildings:
            hint = _did_you_mean(zone.building, buildings)
            yield f"unknown building {zone.building!r}{hint}", ("building",)
        elif zone.floor not in floors:
            yield f"unknown floor {zone.floor!r}{_did_you_mean(zone.floor, floors)}", ("floor",)
        elif floors[zone.floor][0] != zone.building:
            owner = floors[zone.floor][0]
            yield (
                f"floor {zone.floor!r} is in building {owner!r}, not {zone.building!r}",
                ("floor",),
            )
        else:
            plan = (floors[zone.floor][1].width, floors[zone.floor][1].height)
    if plan is not None:
        width, height = plan
        for i, (x, y) in enumerate(zone.polygon):
            if not (0 <= x <= width and 0 <= y <= height):
                yield (
                    f"({x:g}, {y:g}) lies outside the plan 0..{width:g} x 0..{height:g}",
                    (
                        "polygon",
                        i,
                    ),
                )
                return
    if polygon_area(zone.polygon) <= 0:
        yield "the polygon has no area", ("polygon",)
        return
    crossing = _self_crossing(zone.polygon)
    if crossing is not None:
        yield f"the polygon's edges {crossing[0]} and {crossing[1]} cross", ("polygon",)


# ---------------------------------------------------------------------------------------------
# devices.csv


def _load_devices_csv(folder: Path, zones: dict[str, ZoneSpec]) -> list[DeviceSpec]:
    problems = _Problems(DEVICES_FILE)
    reader = csv.reader(io.StringIO(_read_text(folder, DEVICES_FILE, MAX_DEVICES_BYTES)))
    rows = _csv_rows(reader, problems)
    header_line, header = next(rows, (1, []))
    if not header:
        raise problems.fail(
            "the file is empty; its first line is the header " + ",".join(DEVICE_COLUMNS), line=1
        )
    columns = _check_header(header, header_line, problems)
    problems.raise_any()

    devices: list[DeviceSpec] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        if len(devices) >= MAX_DEVICES:
            problems.add(f"more than {MAX_DEVICES} devices", line=line)
            break
        device = _device(line, row, columns, zones, first_line, problems)
        if device is not None:
            devices.append(device)
        if problems.full:
            break
    problems.raise_any()
    return devices


def _csv_rows(reader: Any, problems: _Problems) -> Iterator[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on; a broken record ends the file."""
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(f"not readable as CSV: {exc}", line=start)
            return
        end = reader.line_num
        if any(cell.strip() for cell in row):
            yield start, [cell.strip() for cell in row]


def _check_header(header: list[str], line: int, problems: _Problems) -> list[str]:
    columns = [name.lower() for name in header]
    seen: set[str] = set()
    extra = 0
    for name in columns:
        if not name:
            continue  # an unnamed column (a trailing comma) must stay empty; see _device
        if name in seen:
            problems.add(f"column {name!r} appears twice", line=line)
        seen.add(name)
        if name in DEVICE_COLUMNS or name in ATTRIBUTE_COLUMNS:
            continue
        extra += 1
        if not _COLUMN_RE.fullmatch(name):
            problems.add(
                f"column name {_show(name)} is not lowercase letters, digits and '_'", line=line
            )
    missing = [name for name in DEVICE_COLUMNS if name not in seen]
    if missing:
        problems.add(
            "missing column(s) "
            + ", ".join(repr(m) for m in missing)
            + "; the header starts with "
            + ",".join(DEVICE_COLUMNS),
            line=line,
        )
    if extra > MAX_EXTRA_COLUMNS:
        problems.add(f"{extra} extra columns; at most {MAX_EXTRA_COLUMNS}", line=line)
    return columns


def _device(
    line: int,
    row: list[str],
    columns: list[str],
    zones: dict[str, ZoneSpec],
    first_line: dict[str, int],
    problems: _Problems,
) -> DeviceSpec | None:
    if len(row) != len(columns):
        hint = (
            " (put a value containing a comma in double quotes)" if len(row) > len(columns) else ""
        )
        problems.add(f"{len(row)} fields, but the header has {len(columns)}{hint}", line=line)
        return None
    before = len(problems.items)
    known: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for name, cell in zip(columns, row, strict=True):
        if not cell:
            continue
        if not name:
            problems.add(f"value {_show(cell)} in a column without a name", line=line)
        elif name in DEVICE_COLUMNS or name in ATTRIBUTE_COLUMNS:
            known[name] = cell
        else:
            extra[name] = cell
    try:
        device = DeviceSpec.model_validate({**known, "extra": extra})
    except ValidationError as exc:
        wrong = set()
        for error in exc.errors():
            loc = error["loc"]
            name = str(loc[1] if loc[0] == "extra" and len(loc) > 1 else loc[0])
            problems.add(_explain(error), line=line, field=name)
            wrong.add(name)
        _note_id(known.get("id"), line, first_line, problems)
        if "zone" not in wrong and known.get("zone") not in zones:
            problems.add(_unknown_zone(known["zone"], zones), line=line, field="zone")
        return None

    _note_id(device.id, line, first_line, problems)
    zone = zones.get(device.zone)
    if zone is None:
        problems.add(_unknown_zone(device.zone, zones), line=line, field="zone")
    if (device.x is None) != (device.y is None):
        given, empty = ("x", "y") if device.y is None else ("y", "x")
        problems.add(f"{given} is given, so {empty} is needed too", line=line, field=empty)
    elif (
        device.x is not None
        and device.y is not None
        and zone is not None
        and not zone.contains(device.x, device.y)
    ):
        problems.add(
            f"position ({device.x:g}, {device.y:g}) lies outside zone {zone.id!r}",
            line=line,
            field="x,y",
        )
    for message, name in _model_attribute_problems(device):
        problems.add(message, line=line, field=name)
    return device if len(problems.items) == before and not problems.full else None


def _unknown_zone(zone_id: str, zones: dict[str, ZoneSpec]) -> str:
    return f"unknown zone {zone_id!r} (not in {SITE_FILE}){_did_you_mean(zone_id, zones)}"


def _note_id(device_id: object, line: int, first_line: dict[str, int], problems: _Problems) -> None:
    if not isinstance(device_id, str) or not device_id:
        return
    if device_id in first_line:
        problems.add(
            f"duplicate device id {_show(device_id)} (first on line {first_line[device_id]})",
            line=line,
            field="id",
        )
    else:
        first_line[device_id] = line


def _model_attribute_problems(device: DeviceSpec) -> Iterator[tuple[str, str]]:
    if device.type == "extinguisher":
        if device.agent is None:
            yield "required for an extinguisher: one of " + ", ".join(EXTINGUISHER_AGENTS), "agent"
        if device.manufacture_date is None:
            yield (
                "required for an extinguisher (its service and scrap ages count from it)",
                ("manufacture_date"),
            )
    else:
        for name in EXTINGUISHER_ONLY:
            if getattr(device, name) is not None:
                yield f"only an extinguisher has {name}; this is a {device.type}", name
    if device.type != "asset_tag":
        for name in ASSET_TAG_ONLY:
            if getattr(device, name) is not None:
                yield f"only an asset_tag has {name}; this is a {device.type}", name
    made, started = device.manufacture_date, device.in_service_date
    if made is not None and started is not None and started < made:
        yield f"{started} is before the manufacture_date {made}", "in_service_date"


def load_site(folder: Path) -> SiteSpec:
    """Read and validate a site folder; raise SiteError naming every problem's file and line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SiteError([Problem(str(folder), "is not a folder (expected a site folder)")])
    site, buildings, zones = _load_site_yaml(folder)
    devices = _load_devices_csv(folder, {zone.id: zone for zone in zones})
    return SiteSpec(site, tuple(buildings), tuple(zones), tuple(devices))


# ---------------------------------------------------------------------------------------------
# Import


@dataclass(frozen=True, slots=True)
class Tally:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did, per kind; devices missing from the register are listed, not deleted."""

    site_id: str
    sites: Tally
    buildings: Tally
    floors: Tally
    zones: Tally
    devices: Tally
    states_created: int
    not_in_register: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return any(t.created or t.updated for t in self.tallies().values())

    def tallies(self) -> dict[str, Tally]:
        return {
            "sites": self.sites,
            "buildings": self.buildings,
            "floors": self.floors,
            "zones": self.zones,
            "devices": self.devices,
        }

    def __str__(self) -> str:
        return "; ".join(self.lines())

    def lines(self) -> list[str]:
        """The summary for a person, one line per kind."""
        out = [f"{kind}: {tally}" for kind, tally in self.tallies().items()]
        if self.not_in_register:
            shown = ", ".join(self.not_in_register[:10])
            more = len(self.not_in_register) - 10
            out.append(
                f"{len(self.not_in_register)} stored device(s) not in {DEVICES_FILE} (kept): "
                + shown
                + (f" and {more} more" if more > 0 else "")
            )
        return out


_CHUNK = 500


def import_site(sessions: SessionFactory, spec: SiteSpec) -> ImportSummary:
    """Upsert the site, buildings, floors, zones and devices of ``spec`` in one transaction.

    Idempotent: a second import of the same spec changes nothing and reports everything
    unchanged. New devices get a DeviceState with presence "unknown". Devices stored for this
    site but missing from the spec are kept and reported in ``not_in_register``. An id that
    belongs to another site raises SiteError and nothing is changed.
    """
    site_id = spec.site.id
    with session_scope(sessions) as session:
        sites = _upsert(session, Site, [_site_row(spec.site)], None, site_id, SITE_FILE)
        buildings = _upsert(
            session,
            Building,
            [_building_row(b, site_id) for b in spec.buildings],
            Building.site_id,
            site_id,
            SITE_FILE,
        )
        floors = _upsert(
            session,
            Floor,
            [_floor_row(f, b.id) for b, f in spec.floors()],
            Building.site_id,
            site_id,
            SITE_FILE,
        )
        zones = _upsert(
            session,
            Zone,
            [_zone_row(z, site_id) for z in spec.zones],
            Zone.site_id,
            site_id,
            SITE_FILE,
        )
        devices = _upsert(
            session,
            Device,
            [_device_row(d, site_id) for d in spec.devices],
            Device.site_id,
            site_id,
            DEVICES_FILE,
        )
        states = _create_states(session, site_id, [d.id for d in spec.devices])
        registered = {d.id for d in spec.devices}
        stored = session.scalars(select(Device.id).where(Device.site_id == site_id))
        missing = tuple(sorted(i for i in stored if i not in registered))
    return ImportSummary(site_id, sites, buildings, floors, zones, devices, states, missing)


def _site_row(site: SiteInfo) -> dict[str, Any]:
    return {
        "id": site.id,
        "name_zh": site.name.zh,
        "name_en": site.name.en,
        "timezone": site.timezone,
    }


def _building_row(building: BuildingSpec, site_id: str) -> dict[str, Any]:
    return {
        "id": building.id,
        "site_id": site_id,
        "name_zh": building.name.zh,
        "name_en": building.name.en,
    }


def _floor_row(floor: FloorSpec, building_id: str) -> dict[str, Any]:
    return {
        "id": floor.id,
        "building_id": building_id,
        "level": floor.level,
        "name_zh": floor.name.zh,
        "name_en": floor.name.en,
        "width": floor.width,
        "height": floor.height,
    }


def _zone_row(zone: ZoneSpec, site_id: str) -> dict[str, Any]:
    return {
        "id": zone.id,
        "site_id": site_id,
        "building_id": zone.building,
        "floor_id": zone.floor,
        "kind": zone.kind,
        "name_zh": zone.name.zh,
        "name_en": zone.name.en,
        "polygon": [[x, y] for x, y in zone.polygon],
    }


def _device_row(device: DeviceSpec, site_id: str) -> dict[str, Any]:
    return {
        "id": device.id,
        "site_id": site_id,
        "type": device.type,
        "zone_id": device.zone,
        "label": device.label,
        "in_service_date": device.in_service_date,
        "attributes": device.attributes,
        "x": device.x,
        "y": device.y,
    }


def _same(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, float) and isinstance(wanted, float):
        return math.isclose(stored, wanted, rel_tol=0, abs_tol=1e-9)
    return bool(stored == wanted)


def _upsert(
    session: Session,
    model: type[Site | Building | Floor | Zone | Device],
    rows: list[dict[str, Any]],
    owner: Any,
    site_id: str,
    file: str,
) -> Tally:
    """Insert new rows, update changed ones; refuse ids that belong to another site.

    The site's own rows come in one query; only ids not among them are looked up (in chunks,
    as literals: a prepared IN list of parameters makes PostgreSQL scan the table per chunk).
    """
    if not rows:
        return Tally()
    names = list(rows[0])
    table = model.__table__
    ids = [row["id"] for row in rows]
    mine: Select[Any] = select(*(table.c[name] for name in names))
    if owner is None:
        mine = mine.where(table.c.id == site_id)
    else:
        if model is Floor:
            mine = mine.join(Building, Building.id == Floor.building_id)
        mine = mine.where(owner == site_id)
    stored = {r["id"]: dict(r) for r in session.execute(mine).mappings()}

    foreign: dict[str, str] = {}
    unknown = [i for i in ids if i not in stored]
    for chunk in _chunks(unknown if owner is not None else [], _CHUNK):
        theirs = select(table.c.id, owner)
        if model is Floor:
            theirs = theirs.join(Building, Building.id == Floor.building_id)
        listed = table.c.id.in_(bindparam("ids", chunk, expanding=True, literal_execute=True))
        foreign.update((str(i), str(s)) for i, s in session.execute(theirs.where(listed)))
    if foreign:
        kind = model.__tablename__.rstrip("s")
        raise SiteError(
            [
                Problem(file, f"{kind} id {i!r} already belongs to site {foreign[i]!r}")
                for i in sorted(foreign)[:MAX_PROBLEMS]
            ],
            truncated=len(foreign) > MAX_PROBLEMS,
        )
    new = [row for row in rows if row["id"] not in stored]
    changed = [
        row
        for row in rows
        if row["id"] in stored and not all(_same(stored[row["id"]][n], row[n]) for n in names)
    ]
    if new:
        session.execute(insert(model), new)
    if changed:
        session.execute(update(model), changed)
    return Tally(len(new), len(changed), len(rows) - len(new) - len(changed))


def _create_states(session: Session, site_id: str, device_ids: list[str]) -> int:
    have = set(
        session.scalars(
            select(DeviceState.device_id)
            .join(Device, Device.id == DeviceState.device_id)
            .where(Device.site_id == site_id)
        )
    )
    rows = [
        {"device_id": i, "presence": "unknown", "last_values": {}, "fault": False}
        for i in device_ids
        if i not in have
    ]
    if rows:
        session.execute(insert(DeviceState), rows)
    return len(rows)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
