"""``parkguard simulate``: play a scenario with a site's simulated fleet against any broker.

    parkguard simulate --site examples/demo-park --scenario warehouse-fire --speed 60 --drill
    parkguard simulate --scenario normal-day --devices 500 --rate 7500 --duration 60s
    parkguard simulate --list

The broker is ``--broker mqtt://host:port``, else ``PARKGUARD_MQTT_URL``, else the embedded
demo broker's address (mqtt://127.0.0.1:1883). When a fleet of the site is already running
there (``parkguard demo`` runs one), the scenario is handed to it instead of starting a second
fleet (``--standalone`` to start one anyway). ``--rate`` turns the fleet into a load generator:
the devices send telemetry at that total rate over a few shared connections, and the scenario's
steps go out between those messages. See simulators/scenario.py for the timing.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
EXAMPLE_SITE = Path(__file__).resolve().parent.parent / "examples" / "demo-park"
READY_TIMEOUT_S = 30.0
log = logging.getLogger("parkguard.simulate")


def add_parser(sub: Any) -> None:
    """Add the ``simulate`` command to the ``parkguard`` subcommands."""
    p = sub.add_parser(
        "simulate",
        help="run a site's simulated devices through a scenario against a broker",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "--site", type=Path, help="site folder (default: PARKGUARD_SITE, else the example park)"
    )
    p.add_argument(
        "--scenario",
        default="normal-day",
        help="built-in name or a YAML file (default: normal-day)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="scenario time per real second (60: a 10-minute step takes 10 s)",
    )
    p.add_argument(
        "--devices",
        type=int,
        help="simulate only the register's first N devices (and those the scenario names)",
    )
    p.add_argument("--rate", type=float, help="load: total telemetry messages per second")
    p.add_argument(
        "--duration", help="run this long (e.g. 60s, 10m) instead of the scenario's length"
    )
    p.add_argument("--drill", action="store_true", help="mark the run as a drill (events say so)")
    p.add_argument(
        "--broker",
        help=f"mqtt://user:pass@host:port (default: PARKGUARD_MQTT_URL, else {DEFAULT_BROKER})",
    )
    p.add_argument(
        "--connection",
        choices=("per_device", "multiplexed", "auto"),
        help="a client per device (each with its own last will), a few shared clients (wills "
        "emulated), or auto: per device up to 200 devices (the default; shared with --rate)",
    )
    p.add_argument("--clients", type=int, default=4, help="shared clients when multiplexed")
    p.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1")
    p.add_argument(
        "--standalone",
        action="store_true",
        help="start a fleet of its own even when one of the site is already running (by "
        "default the scenario is handed to that one, e.g. the demo's)",
    )
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from core.settings import load_settings
    from simulators.durations import parse_duration, show
    from simulators.fleet import Fleet, SiteReadError
    from simulators.load import LoadGenerator
    from simulators.scenario import ScenarioError, list_scenarios, load_scenario

    if args.list:
        for name in list_scenarios():
            scenario = load_scenario(name)
            sys.stdout.write(
                f"{name:24} {show(scenario.length_s):>8}  {scenario.title.en} / "
                f"{scenario.title.zh}\n"
            )
        return 0
    settings = load_settings()
    site = args.site or settings.site or EXAMPLE_SITE
    broker = args.broker or settings.mqtt_url or DEFAULT_BROKER
    problem = _check_numbers(args)
    if problem:
        return _fail(problem, 2)
    try:
        duration_s = parse_duration(args.duration) if args.duration else None
        scenario = load_scenario(args.scenario)
        if not (args.standalone or args.rate or args.devices or args.duration):
            handed = _hand_over(args, Path(site), broker, scenario.name)
            if handed is not None:
                return handed
        fleet = Fleet.from_site(
            site,
            broker,
            count=args.devices,
            scenario=scenario,
            speed=args.speed,
            connection=args.connection or ("multiplexed" if args.rate else "auto"),
            clients=args.clients,
            background=args.rate is None,
            protocol=args.protocol,
        )
        playback = fleet.play(scenario, drill=args.drill or None)
    except (ScenarioError, SiteReadError, ValueError) as exc:
        return _fail(str(exc), 2)

    stop = threading.Event()

    def _interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    log.info(
        "simulating %d devices of %s against %s",
        len(fleet.devices),
        site,
        fleet.broker.display(),
    )
    fleet.start()
    try:
        if not _wait(fleet.ready, stop, READY_TIMEOUT_S):
            if stop.is_set():
                return 130
            return _fail(f"could not connect to {fleet.broker.display()} within 30 s", 1)
        load = None
        if args.rate:
            load = LoadGenerator(fleet, args.rate, duration_s)
            load.start()
        until = started + (duration_s if duration_s is not None else playback.length_s)
        while not stop.is_set() and time.monotonic() < until:
            stop.wait(min(0.5, max(0.0, until - time.monotonic())))
        if load is not None:
            load.stop()
            load.wait(5)
    finally:
        fleet.stop()
    _summary(fleet, playback, load if args.rate else None, time.monotonic() - started)
    return 130 if stop.is_set() else 0


def _hand_over(args: argparse.Namespace, site: Path, broker: str, name: str) -> int | None:
    """Give the scenario to a fleet of this site that is already running (the demo's), if
    there is one; None when there is not."""
    from simulators.control import Request, fleet_running, hand_over
    from simulators.fleet import read_site
    from simulators.scenario import list_scenarios
    from simulators.transport import Broker

    address = Broker.from_url(broker, args.protocol)
    site_id = read_site(site).site_id
    if not fleet_running(address, site_id):
        return None
    if name not in list_scenarios() or Path(args.scenario).suffix:
        return _fail(
            f"a fleet of {site_id} is already running at {address.display()} and takes only "
            "built-in scenarios; use --standalone to start a second fleet beside it",
            2,
        )
    hand_over(address, site_id, Request(scenario=name, speed=args.speed, drill=args.drill or None))
    sys.stdout.write(
        f"handed {name}{' (drill)' if args.drill else ''} to the fleet of {site_id} already "
        f"running at {address.display()}\n"
    )
    return 0


def _check_numbers(args: argparse.Namespace) -> str | None:
    if not args.speed > 0:
        return f"--speed must be more than 0, not {args.speed:g}"
    if args.devices is not None and args.devices < 1:
        return f"--devices must be at least 1, not {args.devices}"
    if args.rate is not None and not args.rate > 0:
        return f"--rate must be more than 0 messages/s, not {args.rate:g}"
    if args.clients < 1:
        return f"--clients must be at least 1, not {args.clients}"
    return None


def _wait(event: threading.Event, stop: threading.Event, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if stop.is_set() or time.monotonic() > deadline:
            return False
    return True


def _summary(fleet: Any, playback: Any, load: Any, seconds: float) -> None:
    stats = fleet.stats()
    channels = ", ".join(f"{n} {c}" for c, n in sorted(stats.by_channel.items()))
    lines = [
        f"scenario {playback.scenario.name}{' (drill)' if playback.drill else ''}: "
        f"{len(playback.ran)} of {len(playback.steps)} steps in {seconds:.1f} s",
        f"devices {stats.devices}, published {stats.sent} ({channels}), "
        f"acknowledged {stats.acked}, not sent {stats.suppressed + stats.overflow}",
    ]
    if load is not None:
        report = load.report()
        lines.append(
            f"load: {report.sent} telemetry messages in {report.seconds:.1f} s = "
            f"{report.rate:.0f}/s"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"parkguard simulate: {message}\n")
    return code
