"""``parkguard report``: write a month's compliance report to a file (or stdout).

    parkguard report --period 2026-11 --lang zh --format pdf -o report.pdf

The database is ``PARKGUARD_DATABASE_URL``; with ``PARKGUARD_SITE`` the rules and plans of the
site folder tell the report which rules are fire-lane, gas and hazmat rules and which plans must
be drilled. The condition log is brought up to date first (as the API does), unless ``--as-of``
asks for the record as it stood at a past moment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.settings import load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser(
        "report",
        help="write a month's compliance report (HTML, PDF or a zip of CSV files)",
        description="The compliance report of a calendar month in the park's time zone, clause "
        "by clause of the park standard.",
    )
    report.add_argument("--period", help="the month, YYYY-MM (default: last month)")
    report.add_argument("--lang", choices=("zh", "en"), default="zh")
    report.add_argument("--format", choices=("html", "pdf", "csv"), default="pdf", dest="fmt")
    report.add_argument(
        "--as-of", help="use only what was recorded by this instant (RFC 3339 or epoch ms)"
    )
    report.add_argument(
        "-o", "--output", type=Path, help="the file to write; '-' or absent: standard output"
    )
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from api.routers.intactness import register_scrap_date
    from api.timefmt import parse_time
    from compliance.report import PeriodError, ReportConfig, last_month, month_period, park_timezone
    from compliance.scheduled import prepare, render
    from core.catalogue import load_catalogue
    from core.contract import now_ms
    from core.db import make_engine, session_factory, upgrade

    def fail(message: str) -> int:
        print(f"parkguard report: {message}", file=sys.stderr)  # noqa: T201
        return 2

    settings = load_settings()
    config = ReportConfig()
    if settings.site is not None:
        from rules.plans import PlanFileError, load_site_plans
        from rules.spec import RuleFileError, load_site_rules

        try:
            rules = load_site_rules(settings.site, load_catalogue())
            plans = load_site_plans(settings.site, [r.id for r in rules.rules])
        except (RuleFileError, PlanFileError, OSError) as exc:
            return fail(str(exc))
        config = ReportConfig.from_rules(rules.rules, plans.plans)
    now = now_ms()
    as_of = now
    if args.as_of is not None:
        try:
            as_of = parse_time(args.as_of, "--as-of")
        except ValueError as exc:
            return fail(str(exc))
        if as_of > now:
            return fail("--as-of must not be in the future")
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            tz = park_timezone(session)
            try:
                period = month_period(args.period, tz) if args.period else last_month(now, tz)
            except PeriodError as exc:
                return fail(str(exc))
            if as_of <= period.start_ms:
                return fail(f"period {period.label} has not begun by {args.as_of or 'now'}")
            report = prepare(
                session,
                load_catalogue(),
                period,
                as_of_ms=as_of,
                config=config,
                scrap_date=register_scrap_date,
                record_first=args.as_of is None,
            )
            data = render(report, args.lang, args.fmt)
    finally:
        engine.dispose()
    if args.output is None or str(args.output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            args.output.write_bytes(data)
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    return 0
