"""The Flux we generate, and the Flux of the dashboards, pass the Flux language server's
semantic check (syntax, types, builtin signatures), when its npm package is at hand:
``npm install --prefix .cache/flux-lsp @influxdata/flux-lsp-node@0.8.40`` (or point
PARKGUARD_TEST_FLUX_LSP at a node_modules folder holding it). Skipped otherwise: this is an
extra check beside test_influx_text, not a service CI is required to have."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from core.readings_influx import BucketsQuery, PointsQuery, buckets_flux, points_flux
from tests.conftest import ROOT

MODULES = Path(os.environ.get("PARKGUARD_TEST_FLUX_LSP", ROOT / ".cache/flux-lsp/node_modules"))
PACKAGE = MODULES / "@influxdata" / "flux-lsp-node"
GRAFANA = {  # what Grafana puts in place of its variables
    "v.defaultBucket": '"readings"',
    "v.timeRangeStart": "-1h",
    "v.timeRangeStop": "now()",
    "v.windowPeriod": "1m",
    "${device_type}": "extinguisher",
    "${device:json}": '["ext-1", "ext-2"]',
}
CHECK = """
const flux = require(process.argv[process.argv.length - 1]);
const samples = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = {};
for (const [name, text] of Object.entries(samples)) out[name] = new flux.Flux(text).is_valid();
console.log(JSON.stringify(out));
"""


def samples() -> dict[str, str]:
    out = {}
    for i, (device, metric) in enumerate(
        [("ext-1", "pressure_mpa"), ('d") |> drop() //\n', 'm"${x}\\'), ("设备", "a b")]
    ):
        q = PointsQuery("readings", "extinguisher", device, metric, 1, 2, 10)
        out[f"points {i}"] = points_flux(q)
        out[f"buckets {i}"] = buckets_flux(BucketsQuery(**asdict(q), every_ms=60_000))
    for path in (ROOT / "dashboards" / "json").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                if "query" in target:
                    text = target["query"]
                    for variable, value in GRAFANA.items():
                        text = text.replace(variable, value)
                    out[f"{path.stem}: {panel['title']}"] = text
    out["a broken one (must fail)"] = 'from(bucket: "x") |> range(start: '
    return out


def test_generated_and_dashboard_flux_pass_the_semantic_check() -> None:
    node = shutil.which("node")
    if node is None or not PACKAGE.is_dir():
        pytest.skip("node and @influxdata/flux-lsp-node are not installed")
    given = samples()
    result = subprocess.run(
        [node, "-e", CHECK, "--", str(PACKAGE)],
        input=json.dumps(given),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    verdicts = json.loads(result.stdout)
    assert verdicts.pop("a broken one (must fail)") is False
    assert verdicts == {name: True for name in given if "broken" not in name}
