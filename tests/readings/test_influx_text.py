"""Line protocol and Flux text from typed inputs: escaping of hostile strings, the identity of a
point, and the URL of the backend. Plain functions, no server."""

from __future__ import annotations

import re
from dataclasses import asdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.readings import ReadingRow
from core.readings_influx import (
    BucketsQuery,
    InfluxConfig,
    PointsQuery,
    Series,
    buckets_flux,
    flux_string,
    lp_field_value,
    lp_key,
    lp_measurement,
    point_ns,
    points_flux,
    to_lines,
)

HOSTILE = [
    '") |> drop() //',
    'a" or r._field != "',
    "${token}",
    "\\${x}",
    "back\\slash\\",
    "new\nline",
    "tab\tcr\r",
    "nul\x00bell\x07",
    "引号“”和'单引号'",
    "",
]


def flux_unquote(literal: str) -> str:
    """Read a Flux string literal back, by the escapes the Flux spec defines."""
    assert literal.startswith('"') and literal.endswith('"')
    body, out, i = literal[1:-1], bytearray(), 0
    simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", '"': b'"', "$": b"$"}
    while i < len(body):
        char = body[i]
        if char == '"':
            raise AssertionError(f"unescaped quote in {literal!r}")
        if char == "$" and body[i + 1 : i + 2] == "{":
            raise AssertionError(f"live interpolation in {literal!r}")
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        code = body[i + 1]
        if code == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        else:
            out += simple[code]
            i += 2
    return out.decode()


@pytest.mark.parametrize("value", HOSTILE)
def test_a_flux_string_holds_exactly_the_value(value: str) -> None:
    literal = flux_string(value)
    assert flux_unquote(literal) == value
    assert "\n" not in literal and "\r" not in literal


@given(st.text())
def test_any_text_round_trips_through_a_flux_string(value: str) -> None:
    assert flux_unquote(flux_string(value)) == value


def _query(**overrides: object) -> PointsQuery:
    fields: dict[str, object] = {
        "bucket": "readings",
        "measurement": "extinguisher",
        "device": "ext-1",
        "metric": "pressure_mpa",
        "start_ms": 1_795_000_000_000,
        "end_ms": 1_795_000_600_000,
        "limit": 100,
    }
    fields.update(overrides)
    return PointsQuery(**fields)  # type: ignore[arg-type]


STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


@pytest.mark.parametrize("value", HOSTILE[:-1])
@pytest.mark.parametrize("where", ["bucket", "measurement", "device", "metric"])
def test_hostile_inputs_stay_inside_their_string_literals(where: str, value: str) -> None:
    hostile = _query(**{where: value})
    for flux, plain in (
        (points_flux(hostile), points_flux(_query())),
        (buckets_flux(_buckets(hostile)), buckets_flux(_buckets(_query()))),
    ):
        assert flux_string(value) in STRING_LITERAL.findall(flux)
        # with every string literal blanked, the program is the one for a harmless value
        assert STRING_LITERAL.sub('""', flux) == STRING_LITERAL.sub('""', plain)


def _buckets(q: PointsQuery, every_ms: int = 60_000) -> BucketsQuery:
    return BucketsQuery(**asdict(q), every_ms=every_ms)


def test_points_flux_reads_one_device_metric_and_its_seq_in_the_range() -> None:
    flux = points_flux(_query())
    assert flux.splitlines() == [
        'from(bucket: "readings")',
        "  |> range(start: time(v: 1795000000000000000), stop: time(v: 1795000600000000000))",
        '  |> filter(fn: (r) => r._measurement == "extinguisher" and r.device == "ext-1")',
        '  |> filter(fn: (r) => r._field == "pressure_mpa" or r._field == "seq")',
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        '  |> filter(fn: (r) => exists r["pressure_mpa"])',
        '  |> map(fn: (r) => ({_time: r._time, seq: r.seq, v: r["pressure_mpa"]}))',
        "  |> group()",
        '  |> sort(columns: ["_time"])',
        "  |> limit(n: 100)",
    ]


def test_buckets_flux_windows_on_the_epoch_with_typed_numbers() -> None:
    flux = buckets_flux(_buckets(_query(), 300_000))
    assert flux.startswith('import "types"\n')
    assert flux.count("aggregateWindow(every: 300000ms, fn: ") == 4
    for fn in ("count", "min", "max", "mean"):
        assert f"fn: {fn}," in flux
    assert "limit(n: 100)" in flux


@pytest.mark.parametrize(
    "bad",
    [
        {"limit": 0},
        {"limit": "10"},
        {"start_ms": "0"},
        {"end_ms": 1_795_000_000_000},
        {"metric": "seq"},
        {"limit": True},
    ],
)
def test_queries_refuse_untyped_or_empty_inputs(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _query(**bad)
    with pytest.raises(ValueError):
        _buckets(_query(), 0)


def test_line_protocol_escapes_keys_and_strings() -> None:
    assert lp_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert lp_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert lp_field_value('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert lp_field_value("two\nlines\x00") == '"two\ufffdlines\ufffd"'
    assert lp_field_value(True) == "1.0" and lp_field_value(False) == "0.0"
    assert lp_field_value(3) == "3.0"  # a metric is always a float field
    assert lp_field_value(1.2999999999999998) == "1.2999999999999998"
    for bad in ("", "new\nline"):
        with pytest.raises(ValueError):
            lp_key(bad)
    with pytest.raises(ValueError):
        lp_field_value(float("nan"))


def test_a_message_is_one_line_with_seq_in_its_identity() -> None:
    series = {"ext-1": Series("extinguisher", "ext-1", "park", "zone a")}
    rows = [
        ReadingRow("ext-1", "pressure_mpa", 1_795_000_000_123, 42, 1.31),
        ReadingRow("ext-1", "present", 1_795_000_000_123, 42, True),
        ReadingRow("ext-1", "pressure_mpa", 1_795_000_000_123, 1_000_043, 1.3),
        ReadingRow("ghost", "x", 5, 0, "a,b"),
    ]
    assert to_lines(rows, series) == [
        "extinguisher,device=ext-1,site=park,zone=zone\\ a pressure_mpa=1.31,present=1.0,seq=42i "
        "1795000000123000042",
        "extinguisher,device=ext-1,site=park,zone=zone\\ a pressure_mpa=1.3,seq=1000043i "
        "1795000000123000043",
        'unregistered,device=ghost,site=-,zone=- x="a,b",seq=0i 5000000',
    ]
    assert point_ns(1_795_000_000_123, 42) // 1_000_000 == 1_795_000_000_123


def test_the_url_names_server_org_bucket_and_options() -> None:
    config = InfluxConfig.from_url(
        "influxdbs://influx.example:9999/base?org=my%20org&bucket=b&spool_max=10", token="t"
    )
    assert (config.url, config.org, config.bucket, config.token) == (
        "https://influx.example:9999/base",
        "my org",
        "b",
        "t",
    )
    assert config.spool_max == 10 and config.attempts == 3
    assert InfluxConfig.from_url("influxdb://h?org=o&bucket=b").url == "http://h:8086"
    for bad in (
        "influxdb://h?org=o",
        "influxdb://h?bucket=b",
        "influxdb://h?org=o&bucket=b&spool_max=-1",
        "influxdb://h?org=o&bucket=b&colour=red",
        "http://h?org=o&bucket=b",
    ):
        with pytest.raises(ValueError):
            InfluxConfig.from_url(bad)
