"""``parkguard user add|passwd|list`` and the first admin at start-up.

Passwords are never taken from the command line (it shows in ``ps`` and shell history): they
are asked for twice at the terminal, or read from standard input with ``--password-stdin``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from sqlalchemy import Engine

from api.auth import ADMIN_PASSWORD_ENV, Auth, AuthError, ensure_admin
from core.db import make_engine, session_factory, upgrade
from core.models_auth import ROLES
from core.settings import load_settings

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="manage the users who sign in to the API and console")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--name", default="", help="the name shown (optional)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(run=_add)

    passwd = actions.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    passwd.set_defaults(run=_passwd)

    listing = actions.add_parser("list", help="list the users and their roles")
    listing.set_defaults(run=_list)


def _auth() -> tuple[Auth, Engine]:
    url = load_settings().database_url
    upgrade(url)
    engine = make_engine(url)
    return Auth(session_factory(engine)), engine


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AuthError("the two passwords differ")
    return first


def _add(args: argparse.Namespace) -> int:
    auth, engine = _auth()
    try:
        auth.add_user(args.username, args.role, _password(args.password_stdin), args.name)
    except AuthError as exc:
        print(f"parkguard user add: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        engine.dispose()
    print(f"added {args.username} ({args.role})")  # noqa: T201
    return 0


def _passwd(args: argparse.Namespace) -> int:
    auth, engine = _auth()
    try:
        auth.set_password(args.username, _password(args.password_stdin))
    except AuthError as exc:
        print(f"parkguard user passwd: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        engine.dispose()
    print(f"password of {args.username} changed; their sessions and tokens have ended")  # noqa: T201
    return 0


def _list(_args: argparse.Namespace) -> int:
    auth, engine = _auth()
    try:
        for user in auth.users():
            state = "" if user.active else " (inactive)"
            print(f"{user.username}\t{user.role}\t{user.display_name}{state}")  # noqa: T201
    finally:
        engine.dispose()
    return 0


def bootstrap_admin(engine: Engine, *, demo: bool, url: str) -> None:
    """At start-up: check the signing secret and the metrics token, and create ``admin`` when
    there is no user yet (``PARKGUARD_ADMIN_PASSWORD``, or for the demo a generated password,
    printed once). Raises AuthError (one sentence) when a secret or the password is unusable."""
    auth = Auth.from_env(session_factory(engine))
    auth.signing_key()
    auth.check_metrics_token()
    had_users = auth.count_users() > 0
    generated = ensure_admin(auth, os.environ.get(ADMIN_PASSWORD_ENV) or None, demo=demo)
    if generated is not None:
        print(  # noqa: T201
            f"\nParkGuard demo: sign in at {url} as admin with the password {generated}\n"
            "(shown this once; `parkguard user passwd admin` sets another)\n",
            flush=True,
        )
    elif demo and had_users:
        print(  # noqa: T201
            f"\nParkGuard demo: sign in at {url} (user admin; its password was printed at the "
            "first start, `parkguard user passwd admin` sets another)\n",
            flush=True,
        )
    elif demo:
        print(  # noqa: T201
            f"\nParkGuard demo: sign in at {url} as admin with the password in "
            f"{ADMIN_PASSWORD_ENV}\n",
            flush=True,
        )
