"""Generate the demo park's device register (devices.csv) from its site.yaml.

    python examples/demo-park/generate_devices.py [--output PATH]

Deterministic: the same site.yaml gives the same devices.csv, byte for byte (a test checks that
the committed file is up to date). Devices are laid out per zone the way a fire-safety designer
would: detectors on a grid under the ceiling, call points along the walls, extinguishers every
15 m or so with an agent that fits the room (CO2 by switchgear, water-based in offices, foam for
flammable liquids), environment monitors in warehouses, gas and vapour monitors and tagged
containers in the hazardous-goods store, a fire alarm panel and power monitors per building,
hydrant pressure monitors at each floor's most unfavourable hydrant and along the fire lanes.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from core.catalogue import load_catalogue
from core.site import point_in_polygon

HERE = Path(__file__).resolve().parent
HEADER = [
    "id",
    "type",
    "zone",
    "label",
    "in_service_date",
    "x",
    "y",
    "agent",
    "size_kg",
    "manufacture_date",
    "next_maintenance_date",
    "hazardous",
    "un_number",
]
# When the register was last brought up to date: services due before it were done.
REGISTER_DATE = date(2026, 11, 1)
COMMISSIONED = {
    "A": date(2019, 6, 15),
    "B": date(2020, 9, 1),
    "C": date(2021, 4, 20),
    "D": date(2022, 3, 10),
    "H": date(2023, 5, 18),
    None: date(2019, 6, 15),  # outdoors
}
ABBR = {
    "smoke_detector": "SD",
    "heat_detector": "HD",
    "manual_call_point": "MCP",
    "fire_alarm_panel": "FAP",
    "extinguisher": "EXT",
    "hydrant_pressure": "HYD",
    "fire_lane": "FLM",
    "warehouse_env": "ENV",
    "hazmat_store": "HAZ",
    "asset_tag": "TAG",
    "power_monitor": "PWR",
}
EXTINGUISHER_MODELS = {
    ("dry_powder", 4): "手提式干粉灭火器 MF/ABC4",
    ("dry_powder", 8): "手提式干粉灭火器 MF/ABC8",
    ("dry_powder", 35): "推车式干粉灭火器 MFT/ABC35",
    ("co2", 3): "手提式二氧化碳灭火器 MT/3",
    ("co2", 5): "手提式二氧化碳灭火器 MT/5",
    ("water", 6): "手提式水基型灭火器 MSZ/6",
    ("water", 9): "手提式水基型灭火器 MSZ/9",
    ("foam", 6): "手提式泡沫灭火器 MP/6",
    ("foam", 9): "手提式泡沫灭火器 MP/9",
    ("clean_agent", 4): "手提式洁净气体灭火器 MJ/4",
}


@dataclass(frozen=True)
class Plan:
    """What a zone gets: grid spacings in metres (0 = none) and its extinguishers."""

    smoke: float = 0
    heat: float = 0
    call_points: float = 30
    extinguishers: tuple[tuple[str, int], ...] = ()  # (agent, size) cycled over the grid
    extinguisher_spacing: float = 15
    env: float = 0
    hazmat_monitors: int = 0


PLANS: dict[str, Plan] = {
    "A1-W1": Plan(smoke=11, extinguishers=(("dry_powder", 8),), env=20),
    "A1-W2": Plan(smoke=11, extinguishers=(("dry_powder", 8),), env=20),
    "A1-DOCK": Plan(heat=9, extinguishers=(("dry_powder", 8),)),
    "A1-ELEC": Plan(smoke=8, extinguishers=(("co2", 5),), extinguisher_spacing=8),
    "A2-W1": Plan(smoke=11, extinguishers=(("dry_powder", 8),), env=20),
    "A2-W2": Plan(smoke=11, extinguishers=(("dry_powder", 4),), env=20),
    "A2-OFF": Plan(smoke=8, extinguishers=(("water", 6), ("dry_powder", 4))),
    "B1-SORT": Plan(smoke=10, extinguishers=(("dry_powder", 4),)),
    "B1-RET": Plan(smoke=11, extinguishers=(("dry_powder", 8),), env=20),
    "B1-ELEC": Plan(smoke=8, extinguishers=(("co2", 5),), extinguisher_spacing=10),
    "B2-OFF": Plan(smoke=8, extinguishers=(("water", 6), ("water", 6), ("dry_powder", 4))),
    "B2-CTRL": Plan(smoke=7, extinguishers=(("co2", 3),), extinguisher_spacing=11),
    "B2-IT": Plan(smoke=6, extinguishers=(("co2", 5), ("clean_agent", 4)), extinguisher_spacing=10),
    "B2-MEET": Plan(smoke=8, extinguishers=(("water", 6), ("dry_powder", 4))),
    "C1-HALL": Plan(smoke=8, extinguishers=(("water", 6), ("dry_powder", 4))),
    "C1-CAFE": Plan(smoke=8, extinguishers=(("water", 6),)),
    "C1-KITCH": Plan(heat=6, extinguishers=(("foam", 6),), extinguisher_spacing=10),
    "C1-ELEC": Plan(smoke=6, extinguishers=(("co2", 5),), extinguisher_spacing=10),
    "C2-INC": Plan(smoke=8, extinguishers=(("water", 6), ("dry_powder", 4))),
    "C2-FIN": Plan(smoke=8, extinguishers=(("water", 6),)),
    "D1-W1": Plan(smoke=11, extinguishers=(("dry_powder", 8),), env=20),
    "D1-W2": Plan(smoke=11, extinguishers=(("dry_powder", 8),), env=20),
    "D1-CHG": Plan(heat=8, extinguishers=(("dry_powder", 8), ("co2", 5)), extinguisher_spacing=10),
    "H1-FL": Plan(
        smoke=7, heat=7, extinguishers=(("foam", 9),), extinguisher_spacing=7, hazmat_monitors=2
    ),
    "H1-LI": Plan(
        smoke=7, heat=7, extinguishers=(("water", 9),), extinguisher_spacing=7, hazmat_monitors=1
    ),
    "H1-OX": Plan(
        smoke=7, heat=7, extinguishers=(("water", 9),), extinguisher_spacing=7, hazmat_monitors=1
    ),
    "H1-PREP": Plan(
        smoke=7, extinguishers=(("dry_powder", 8), ("dry_powder", 35)), extinguisher_spacing=10
    ),
    "YARD": Plan(call_points=0, extinguishers=(("dry_powder", 35),), extinguisher_spacing=50),
    "PLAZA": Plan(call_points=0),
}
# Extinguishers close to (or past) a service or scrap date, as a real register has them
# (GB 50444 tables 5.3.3 and 5.4.3): id -> (manufacture date, in-service date if it was a
# later replacement, next service date if it is not the regular one).
AGEING: dict[str, tuple[date, date | None, date | None]] = {
    "A1-W1-EXT001": (date(2016, 12, 20), None, None),  # dry powder: scrap at 10 years
    "A1-DOCK-EXT001": (date(2021, 10, 8), date(2021, 11, 2), date(2026, 10, 8)),  # overdue
    "B1-ELEC-EXT001": (date(2014, 12, 12), None, None),  # CO2: scrap at 12 years
    "B2-OFF-EXT001": (date(2023, 12, 15), date(2024, 1, 5), None),  # water: service at 3 years
    "C1-HALL-EXT001": (date(2020, 12, 10), None, None),  # water: scrap at 6 years
    "D1-W1-EXT001": (date(2021, 12, 5), None, None),  # dry powder: service at 5 years
}
# Tagged containers: zone -> (count, contents, UN number, hazardous).
TAGS: list[tuple[str, int, str, str, bool]] = [
    ("H1-FL", 6, "香水原液桶 200L", "UN1266", True),
    ("H1-FL", 4, "指甲油周转箱", "UN1263", True),
    ("H1-FL", 3, "气雾剂周转笼", "UN1950", True),
    ("H1-LI", 8, "锂离子电池托盘", "UN3480", True),
    ("H1-OX", 3, "过氧化氢溶液桶 25L", "UN2014", True),
    ("H1-OX", 2, "次氯酸钠溶液桶 25L", "UN1791", True),
    ("H1-PREP", 3, "待入库香水原液桶 200L", "UN1266", True),
    ("A1-DOCK", 2, "待转运锂电池托盘", "UN3480", True),
    ("D1-W1", 3, "已清洗空周转桶", "", False),
]


def _names() -> dict[str, str]:
    return {name: t.zh for name, t in load_catalogue().device_types.items()}


def grid(
    polygon: list[list[float]], spacing: float, phase: float = 0.5
) -> list[tuple[float, float]]:
    """Cell points of a grid of about ``spacing`` metres that fall inside the polygon."""
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    width, height = max(xs) - min(xs), max(ys) - min(ys)
    nx, ny = max(1, round(width / spacing)), max(1, round(height / spacing))
    points = []
    for j in range(ny):
        for i in range(nx):
            x = round(min(xs) + (i + phase) * width / nx, 1)
            y = round(min(ys) + (j + phase) * height / ny, 1)
            if point_in_polygon(x, y, polygon):
                points.append((x, y))
    return points


def along_walls(
    polygon: list[list[float]], spacing: float, inset: float = 0.5
) -> list[tuple[float, float]]:
    """Points every ``spacing`` metres along the walls, ``inset`` metres inside."""
    area2 = sum(
        polygon[i][0] * polygon[(i + 1) % len(polygon)][1]
        - polygon[(i + 1) % len(polygon)][0] * polygon[i][1]
        for i in range(len(polygon))
    )
    turn = 1 if area2 > 0 else -1  # inside is to the left of a counter-clockwise edge
    points = []
    for i, (x1, y1) in enumerate(polygon):
        x2, y2 = polygon[(i + 1) % len(polygon)]
        length = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
        nx, ny = -(y2 - y1) / length * turn, (x2 - x1) / length * turn
        steps = int(length // spacing)
        for k in range(steps):
            t = (k + 0.5) * spacing / length
            x = round(x1 + t * (x2 - x1) + nx * inset, 1)
            y = round(y1 + t * (y2 - y1) + ny * inset, 1)
            if point_in_polygon(x, y, polygon):
                points.append((x, y))
    return points


def centre_line(polygon: list[list[float]], count: int) -> list[tuple[float, float]]:
    """``count`` points spread along the long axis of a rectangular zone (a lane)."""
    xs = [p[0] for p in polygon]
    ys = [p[1] for p in polygon]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 - x0 >= y1 - y0:
        y = round((y0 + y1) / 2, 1)
        return [(round(x0 + (k + 0.5) * (x1 - x0) / count, 1), y) for k in range(count)]
    x = round((x0 + x1) / 2, 1)
    return [(x, round(y0 + (k + 0.5) * (y1 - y0) / count, 1)) for k in range(count)]


def next_service(agent: str, made: date) -> date:
    """The next service date after the register date (GB 50444 table 5.3.3)."""
    water_based = agent in ("water", "foam")
    first, every = (3, 1) if water_based else (5, 2)
    due = made.replace(year=made.year + first)
    while due < REGISTER_DATE:
        due = due.replace(year=due.year + every)
    return due


def shift(start: date, days: int) -> date:
    return date.fromordinal(start.toordinal() + days)


class Register:
    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []
        self.counters: dict[tuple[str, str], int] = {}
        self.zh = _names()

    def add(
        self,
        zone: dict[str, Any],
        device_type: str,
        point: tuple[float, float],
        label: str | None = None,
        **attributes: Any,
    ) -> str:
        key = (zone["id"], device_type)
        self.counters[key] = self.counters.get(key, 0) + 1
        device_id = f"{zone['id']}-{ABBR[device_type]}{self.counters[key]:03d}"
        started = attributes.pop("in_service_date", None) or COMMISSIONED[zone.get("building")]
        row = {name: "" for name in HEADER}
        row.update(
            id=device_id,
            type=device_type,
            zone=zone["id"],
            label=f"{device_id} {label or self.zh[device_type]}",
            in_service_date=started.isoformat(),
            x=f"{point[0]:g}",
            y=f"{point[1]:g}",
        )
        for name, value in attributes.items():
            if isinstance(value, bool):
                row[name] = "true" if value else "false"
            elif isinstance(value, date):
                row[name] = value.isoformat()
            else:
                row[name] = f"{value:g}" if isinstance(value, float | int) else str(value)
        self.rows.append(row)
        return device_id

    def extinguisher(
        self, zone: dict[str, Any], point: tuple[float, float], agent: str, size: int
    ) -> None:
        n = self.counters.get((zone["id"], "extinguisher"), 0) + 1
        device_id = f"{zone['id']}-EXT{n:03d}"
        started = COMMISSIONED[zone.get("building")]
        made = shift(started, -(45 + (n * 37) % 150))
        due: date | None = None
        if device_id in AGEING:
            made, replaced, due = AGEING[device_id]
            started = replaced or started
        self.add(
            zone,
            "extinguisher",
            point,
            label=EXTINGUISHER_MODELS[(agent, size)],
            in_service_date=started,
            agent=agent,
            size_kg=size,
            manufacture_date=made,
            next_maintenance_date=due or next_service(agent, made),
        )


def generate(site: dict[str, Any]) -> list[dict[str, str]]:
    register = Register()
    zones = {zone["id"]: zone for zone in site["zones"]}
    for zone in site["zones"]:
        plan = PLANS.get(zone["id"])
        if plan is None:
            continue
        polygon = zone["polygon"]
        if plan.smoke:
            for point in grid(polygon, plan.smoke):
                register.add(zone, "smoke_detector", point)
        if plan.heat:
            for point in grid(polygon, plan.heat, phase=0.3 if plan.smoke else 0.5):
                register.add(zone, "heat_detector", point)
        if plan.call_points:
            for point in along_walls(polygon, plan.call_points):
                register.add(zone, "manual_call_point", point)
        if plan.extinguishers:
            for k, point in enumerate(grid(polygon, plan.extinguisher_spacing, phase=0.25)):
                agent, size = plan.extinguishers[k % len(plan.extinguishers)]
                register.extinguisher(zone, point, agent, size)
        if plan.env:
            for point in grid(polygon, plan.env, phase=0.6):
                register.add(zone, "warehouse_env", point)
        for k, point in enumerate(
            centre_line(polygon, plan.hazmat_monitors) if plan.hazmat_monitors else []
        ):
            label = (
                "危险品仓库监测（门磁、可燃气体、VOC、温度）"
                if k == 0
                else "危险品仓库监测（可燃气体、VOC、温度）"
            )
            register.add(zone, "hazmat_store", point, label=label)

    _panels_and_power(register, zones)
    _hydrants(register, zones, site)
    _fire_lanes(register, zones)
    _tags(register, zones)
    return register.rows


def _panels_and_power(register: Register, zones: dict[str, dict[str, Any]]) -> None:
    panels = {
        "A1-ELEC": (110, 54, "A栋区域火灾报警控制器"),
        "B2-CTRL": (70, 11, "园区集中火灾报警控制器（消防控制室）"),
        "C1-HALL": (2, 20, "C栋区域火灾报警控制器"),
        "D1-W1": (2, 20, "D栋区域火灾报警控制器"),
        "H1-PREP": (27, 2, "H栋区域火灾报警控制器（防爆型）"),
    }
    for zone_id, (x, y, label) in panels.items():
        register.add(
            zones[zone_id],
            "fire_alarm_panel",
            (x, y),
            label=label,
            next_maintenance_date=date(2027, 3, 15),
        )
    power = [
        ("A1-ELEC", 116, 50, "A栋消防电源监控（双电源切换箱）"),
        ("A1-ELEC", 116, 58, "A栋应急照明集中电源"),
        ("B1-ELEC", 96, 46, "消防水泵控制柜电源"),
        ("B1-ELEC", 96, 40, "B栋消防电源监控（双电源切换箱）"),
        ("C1-ELEC", 56, 37, "C栋消防电源监控"),
        ("D1-CHG", 96, 36, "D栋消防电源监控"),
        ("H1-PREP", 28, 18, "H栋消防及防爆风机电源监控"),
    ]
    for zone_id, x, y, label in power:
        register.add(
            zones[zone_id],
            "power_monitor",
            (x, y),
            label=label,
            next_maintenance_date=date(2027, 3, 15),
        )


def _hydrants(register: Register, zones: dict[str, dict[str, Any]], site: dict[str, Any]) -> None:
    # Indoor: the most unfavourable hydrant of each floor (highest, farthest from the riser).
    indoor = [
        ("A-F1", "A1-W2", 119, 47),
        ("A-F2", "A2-W2", 119, 41),
        ("B-F1", "B1-SORT", 99, 19),
        ("B-F2", "B2-MEET", 99, 49),
        ("C-F1", "C1-HALL", 39, 39),
        ("C-F2", "C2-FIN", 59, 39),
        ("D-F1", "D1-W2", 89, 39),
        ("H-F1", "H1-PREP", 29, 19),
    ]
    for floor_id, zone_id, x, y in indoor:
        label = f"{floor_id} 最不利点室内消火栓水压监测"
        register.add(zones[zone_id], "hydrant_pressure", (x, y), label=label)
    # Outdoor hydrants beside the fire lanes.
    for zone_id, count in (("FL-S", 4), ("FL-N", 4), ("FL-C", 2), ("FL-E", 2), ("PLAZA", 1)):
        for point in centre_line(zones[zone_id]["polygon"], count):
            register.add(
                zones[zone_id], "hydrant_pressure", point, label="室外消火栓 SS100 水压监测"
            )


def _fire_lanes(register: Register, zones: dict[str, dict[str, Any]]) -> None:
    for zone_id, count in (("FL-S", 4), ("FL-N", 4), ("FL-C", 3), ("FL-E", 3)):
        polygon = zones[zone_id]["polygon"]
        for point in centre_line(polygon, count):
            # Offset from the hydrants on the same centre line.
            xs = [p[0] for p in polygon]
            along_x = max(xs) - min(xs) > 10
            moved = (point[0] + 3, point[1]) if along_x else (point[0], point[1] + 3)
            register.add(zones[zone_id], "fire_lane", moved, label="消防车道占用监测（雷达+视频）")


def _tags(register: Register, zones: dict[str, dict[str, Any]]) -> None:
    for zone_id, count, contents, un_number, hazardous in TAGS:
        polygon = zones[zone_id]["polygon"]
        already = register.counters.get((zone_id, "asset_tag"), 0)
        points = grid(polygon, 2.5, phase=0.5)
        for k in range(count):
            point = points[(already + k) * 3 % len(points)]
            register.add(
                zones[zone_id],
                "asset_tag",
                point,
                label=f"危险品资产标签 {contents}",
                hazardous=hazardous,
                un_number=un_number,
            )


def render(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=HERE / "site.yaml")
    parser.add_argument("--output", type=Path, default=HERE / "devices.csv")
    args = parser.parse_args(argv)
    site = yaml.safe_load(args.site.read_text(encoding="utf-8"))
    args.output.write_text(render(generate(site)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
