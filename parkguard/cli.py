"""The `parkguard` command: serve, or the roles api, collect and scheduler apart; demo, import,
db, health and the rest."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from core.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from parkguard.runtime import Runtime

EXAMPLE_SITE = Path(__file__).resolve().parent.parent / "examples" / "demo-park"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("amqtt", "transitions", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.run(args))
    except SettingsError as exc:
        print(f"parkguard: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parkguard",
        description="ParkGuard: fire- and safety-facility monitoring. "
        "Configuration comes from PARKGUARD_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the collector and the API")
    serve.set_defaults(run=_serve)

    api = sub.add_parser(
        "api", help="run the API alone (no collector, rules or scheduler jobs in this process)"
    )
    api.set_defaults(run=_api)

    collect = sub.add_parser(
        "collect", help="run the collector with the rules and the plans (no API)"
    )
    collect.set_defaults(run=_collect)

    scheduler = sub.add_parser(
        "scheduler", help="run the maintenance scheduler and the monthly report job alone"
    )
    scheduler.set_defaults(run=_scheduler)

    demo = sub.add_parser("demo", help="run everything on the example park with embedded defaults")
    demo.set_defaults(run=_demo)

    imp = sub.add_parser("import", help="load a site folder (site.yaml, devices.csv)")
    imp.add_argument("site_dir", type=Path)
    imp.set_defaults(run=_import)

    from parkguard.simulate import add_parser as add_simulate

    add_simulate(sub)

    from parkguard.mqtt_auth import add_parser as add_mqtt_auth

    add_mqtt_auth(sub)

    from parkguard.report import add_parser as add_report

    add_report(sub)

    from parkguard.users import add_parser as add_user

    add_user(sub)

    from parkguard.health import add_parser as add_health

    add_health(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    up.set_defaults(run=_db_upgrade)
    return parser


def _serve(_args: argparse.Namespace) -> int:
    return run_server(load_settings())


def _api(_args: argparse.Namespace) -> int:
    return run_server(load_settings(), api_only=True)


def _collect(_args: argparse.Namespace) -> int:
    from parkguard.runtime import Runtime

    runtime = Runtime(load_settings())
    # the API runs apart: follow the journals for the changes people make there
    return _run_until_signal(runtime, lambda: runtime.start_ingest(follow=True))


def _scheduler(_args: argparse.Namespace) -> int:
    from parkguard.runtime import Runtime

    runtime = Runtime(load_settings())
    return _run_until_signal(runtime, runtime.start_scheduler)


def _run_until_signal(runtime: Runtime, start: Callable[[], object]) -> int:
    """Start a role without the API and keep it until SIGTERM or Ctrl-C."""
    import threading

    from parkguard.runtime import settle_heap

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    try:
        start()
        settle_heap()
        stop.wait()
    except _start_errors() as exc:
        print(f"parkguard: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        runtime.stop()
    return 0


def _start_errors() -> tuple[type[Exception], ...]:
    """What a bad site folder raises at start-up: said in one sentence, not a traceback."""
    from core.site import SiteError
    from maintenance.errors import PlanError
    from rules.plans import PlanFileError
    from rules.spec import RuleFileError

    return (SiteError, RuleFileError, PlanFileError, PlanError)


def _demo(_args: argparse.Namespace) -> int:
    settings = load_settings()
    if settings.site is None:
        settings = settings.model_copy(update={"site": EXAMPLE_SITE})
    return run_server(settings, pick_free_ports=True, demo=True)


def _import(args: argparse.Namespace) -> int:
    from core.db import make_engine, upgrade
    from core.site import SiteError
    from parkguard.runtime import import_site_folder

    settings = load_settings(site=args.site_dir)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        import_site_folder(engine, settings)
    except SiteError as exc:
        print(f"parkguard import: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        engine.dispose()
    return 0


def _db_upgrade(_args: argparse.Namespace) -> int:
    from core.db import upgrade

    upgrade(load_settings().database_url)
    return 0


def run_server(
    settings: Settings, pick_free_ports: bool = False, demo: bool = False, api_only: bool = False
) -> int:
    """Serve the API: with ingest, rules and scheduler jobs in this process (``serve``,
    ``demo``), or alone (``api_only``: ``parkguard api``)."""
    import uvicorn

    from api.auth import AuthError
    from parkguard.broker import pick_port
    from parkguard.runtime import Runtime, settle_heap

    log = logging.getLogger("parkguard")
    if pick_free_ports:
        port = pick_port(settings.api_host, settings.api_port)
        if port != settings.api_port:
            log.warning("port %d is taken; the API uses %d", settings.api_port, port)
        settings = settings.model_copy(update={"api_port": port})
    runtime = Runtime(settings)
    try:
        app = runtime.start_api() if api_only else runtime.start()
        if demo:
            runtime.start_fleet()
    except _start_errors() as exc:
        print(f"parkguard: {exc}", file=sys.stderr)  # noqa: T201
        runtime.stop()
        return 1
    url = f"http://{settings.api_host}:{settings.api_port}/"
    try:  # the first admin (PARKGUARD_ADMIN_PASSWORD, or printed once by the demo)
        from parkguard.users import bootstrap_admin

        assert runtime.engine is not None
        bootstrap_admin(runtime.engine, demo=demo, url=url)
    except AuthError as exc:
        print(f"parkguard: {exc}", file=sys.stderr)  # noqa: T201
        runtime.stop()
        return 1
    log.info("ParkGuard is serving at %s", url)
    settle_heap()
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="info")
    )

    def _terminate(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn has shut down already and hands Ctrl-C back: a clean stop
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
