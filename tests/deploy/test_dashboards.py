"""Grafana provisioning and dashboards: the JSON is sound, every datasource a panel names is
provisioned, and every SQL query (panels and variables) runs against the real PostgreSQL schema
of a freshly migrated database, with Grafana's macros and variables substituted as Grafana
does. The Flux panels cannot run here (no InfluxDB 2): they are checked for the variables they
use and the measurement/field layout of core.readings_influx."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from core.db import normalise_url
from core.readings_influx import SEQ_FIELD
from tests.builders import make_site
from tests.conftest import ROOT

DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))
PROVISIONING = ROOT / "dashboards" / "provisioning"
# Grafana's SQL macro syntax: $__name(arguments without parentheses)
MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")
FROM_S, TO_S = 1_795_000_000, 1_795_086_400
VARIABLES = {"site": "'demo','s2'", "device": "'ext-1','ext-2'", "device_type": "extinguisher"}
FLUX_VARIABLES = {"v.timeRangeStart", "v.timeRangeStop", "v.windowPeriod", "v.defaultBucket"}


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def datasources() -> dict[str, str]:
    """uid -> type of every provisioned datasource."""
    out = {}
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            assert source["uid"] not in out, f"datasource uid {source['uid']} twice"
            out[source["uid"]] = source["type"]
    return out


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, datasource uid, query) for every panel target and query variable."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel["datasource"]
            body = target.get("rawSql") or target.get("query")
            out.append((f"panel {panel['title']!r}", source["uid"], body))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            out.append(
                (f"variable {variable['name']}", variable["datasource"]["uid"], variable["query"])
            )
    return out


def expand(sql: str) -> str:
    """Grafana's PostgreSQL macros and variables, for a fixed time range."""

    def macro(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if name == "unixEpochFilter":
            return f"{args[0]} >= {FROM_S} AND {args[0]} <= {TO_S}"
        if name == "unixEpochGroupAlias":
            seconds = {"1m": 60, "1h": 3600, "1d": 86400}[args[1]]
            return f'floor(({args[0]}) / {seconds}) * {seconds} AS "time"'
        if name == "timeFilter":
            return f"{args[0]} BETWEEN to_timestamp({FROM_S}) AND to_timestamp({TO_S})"
        raise AssertionError(f"macro $__{name} is not expanded by this test")

    sql = MACRO.sub(macro, sql)
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        sql = sql.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in sql, f"unexpanded macro or variable in:\n{sql}"
    return sql


def test_there_are_the_three_boards() -> None:
    assert {p.stem for p in DASHBOARDS} == {"park-overview", "device-history", "alarm-handling"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_dashboard_is_sound(path: Path) -> None:
    dashboard = load(path)
    known = datasources()
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        for ref in refs:
            assert known.get(ref["uid"]) == ref["type"], (panel["title"], ref)
        assert panel["targets"], f"panel {panel['title']!r} has no query"
    for variable in dashboard["templating"]["list"]:
        ref = variable["datasource"]
        assert known.get(ref["uid"]) == ref["type"], variable["name"]


def test_dashboard_uids_are_unique_and_provisioned_from_their_folder() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "parkguard.yaml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/parkguard"


def test_provisioning_holds_no_secret() -> None:
    for path in (PROVISIONING / "datasources").glob("*.yaml"):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            for value in source.get("secureJsonData", {}).values():
                assert re.fullmatch(r"\$\{[A-Z_]+\}", value), f"{path.name}: a literal secret"


def test_every_sql_query_runs_on_the_migrated_schema(pg_url: str) -> None:
    engine = create_engine(normalise_url(pg_url))
    make_site(engine, "demo", {"ext-1": "extinguisher", "ext-2": "extinguisher"})
    ran = 0
    try:
        with engine.connect() as connection:
            for path in DASHBOARDS:
                for where, uid, query in queries(load(path)):
                    if uid != "parkguard-pg":
                        continue
                    try:
                        connection.execute(text(expand(query).replace(":", r"\:"))).all()
                    except DBAPIError as exc:  # name the panel, then fail
                        pytest.fail(f"{path.stem}, {where}: {exc}")
                    ran += 1
    finally:
        engine.dispose()
    assert ran >= 15


def test_flux_panels_use_grafana_variables_and_the_backend_layout() -> None:
    for path in DASHBOARDS:
        for where, uid, query in queries(load(path)):
            if uid != "parkguard-influx":
                continue
            assert query.lstrip().startswith(("from(", "import ")), where
            assert "from(bucket: v.defaultBucket)" in query, where
            used = set(re.findall(r"\bv\.\w+", query))
            assert used <= FLUX_VARIABLES, (where, used - FLUX_VARIABLES)
            assert set(re.findall(r"\$\{(\w+)", query)) <= set(VARIABLES), where
            assert "r._measurement ==" in query and "r.device" in query, where
            assert f'"{SEQ_FIELD}"' in query, f"{where}: readings or message counts use seq"
