"""Plain builder functions for test data: a site with zones and devices, straight into the DB."""

from __future__ import annotations

from sqlalchemy import Engine, insert

from core.models import Device, DeviceState, Site, Zone


def make_site(
    engine: Engine,
    site_id: str,
    devices: dict[str, str],
    zone_kind: str = "warehouse",
) -> None:
    """A site with one zone holding ``devices`` (id → type), each with an unknown state."""
    zone_id = f"{site_id}-z1"
    with engine.begin() as c:
        c.execute(insert(Site), [{"id": site_id, "name_zh": "测试园区", "name_en": "Test park"}])
        c.execute(
            insert(Zone),
            [
                {
                    "id": zone_id,
                    "site_id": site_id,
                    "kind": zone_kind,
                    "name_zh": "一区",
                    "name_en": "Zone 1",
                    "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]],
                }
            ],
        )
        if devices:
            c.execute(
                insert(Device),
                [
                    {"id": d, "site_id": site_id, "type": t, "zone_id": zone_id, "label": d}
                    for d, t in devices.items()
                ],
            )
            c.execute(
                insert(DeviceState),
                [{"device_id": d, "presence": "unknown", "last_values": {}} for d in devices],
            )
