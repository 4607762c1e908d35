"""Mosquitto credentials and access rules from the device register (`parkguard mqtt-auth`).

- Each device has its own user (its device id) and secret. The secret is generated, shown once
  and stored only as a Mosquitto ``$7$`` hash (PBKDF2-SHA512, the format ``mosquitto_passwd``
  writes) in ``mqtt_credentials``; ``rotate`` replaces it.
- ``export DIR`` writes ``DIR/passwd`` and ``DIR/acl`` for Mosquitto's ``password_file`` and
  ``acl_file`` from what is stored: no secret is needed to export, so the files can be rebuilt
  at every start. A device may publish only under ``parkguard/{site}/{device_id}/#`` and may
  read nothing. The collector (``parkguard.collector``) reads every topic under ``parkguard/``
  and writes the alerts topics; the API (``parkguard.api``) reads and writes the alerts topics
  (and reads ``$SYS/broker/uptime``, which the compose health check of the broker uses).
  Their passwords come from ``PARKGUARD_MQTT_COLLECTOR_PASSWORD`` and
  ``PARKGUARD_MQTT_API_PASSWORD`` (the same ones their ``PARKGUARD_MQTT_URL`` carries).
- Service user names contain a dot, which no device id may, so a device can never be one.
  A device whose id is a topic word of ours (``alerts``) is refused: its ``#`` would cover
  ``parkguard/{site}/alerts``.

After ``export`` or ``rotate``, Mosquitto reloads the files on SIGHUP.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import hmac
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, delete, insert, select

from core.contract import TOPIC_ROOT
from core.models import Device
from core.models_spool import MqttCredential

COLLECTOR_USER = "parkguard.collector"
API_USER = "parkguard.api"
RESERVED_DEVICE_IDS = frozenset({"alerts"})
ITERATIONS = 1000
SALT_BYTES = 12
SECRET_BYTES = 24
FILE_MODE = 0o640


class MqttAuthError(Exception):
    """One sentence saying what is wrong (unknown device, missing service password...)."""


class ServicePasswords(BaseSettings):
    """The services' broker passwords, from ``PARKGUARD_MQTT_COLLECTOR_PASSWORD`` and
    ``PARKGUARD_MQTT_API_PASSWORD``."""

    model_config = SettingsConfigDict(env_prefix="PARKGUARD_MQTT_", extra="ignore")
    collector_password: SecretStr | None = None
    api_password: SecretStr | None = None

    def by_user(self) -> dict[str, str]:
        out = {}
        for user, secret, variable in (
            (COLLECTOR_USER, self.collector_password, "COLLECTOR_PASSWORD"),
            (API_USER, self.api_password, "API_PASSWORD"),
        ):
            if secret is None or not secret.get_secret_value():
                raise MqttAuthError(f"PARKGUARD_MQTT_{variable} is not set.")
            out[user] = secret.get_secret_value()
        return out


# ---- hashes in mosquitto_passwd's format ------------------------------------------------------


def hash_password(secret: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``$7$ITERATIONS$SALT$HASH``: PBKDF2-HMAC-SHA512, 64-byte hash, base64 (as Mosquitto 2)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(secret: str, encoded: str) -> bool:
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac(
            "sha512", secret.encode(), base64.b64decode(salt), int(iterations), len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


# ---- issuing secrets --------------------------------------------------------------------------


def issue(engine: Engine, device_id: str) -> str:
    """Give the device a new secret (replacing any old one); return it: it is not stored."""
    with engine.begin() as c:
        if c.execute(select(Device.id).where(Device.id == device_id)).first() is None:
            raise MqttAuthError(f"device {device_id!r} is not in the register.")
        secret = new_secret()
        c.execute(delete(MqttCredential).where(MqttCredential.device_id == device_id))
        c.execute(
            insert(MqttCredential),
            [{"device_id": device_id, "password_hash": hash_password(secret), "issued_ms": _now()}],
        )
    return secret


def issue_missing(engine: Engine) -> dict[str, str]:
    """New secrets for every registered device that has none; device id -> secret."""
    with engine.begin() as c:
        have = set(c.execute(select(MqttCredential.device_id)).scalars())
        devices = [d for d in c.execute(select(Device.id).order_by(Device.id)).scalars()]
        issued = {d: new_secret() for d in devices if d not in have}
        if issued:
            now = _now()
            c.execute(
                insert(MqttCredential),
                [
                    {"device_id": d, "password_hash": hash_password(s), "issued_ms": now}
                    for d, s in issued.items()
                ],
            )
    return issued


def _now() -> int:
    return int(time.time() * 1000)


# ---- the files --------------------------------------------------------------------------------


@dataclass
class Export:
    passwd: Path
    acl: Path
    devices: int = 0
    without_secret: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def service_acl() -> str:
    alerts = f"{TOPIC_ROOT}/+/alerts"
    return (
        f"user {COLLECTOR_USER}\n"
        f"topic read {TOPIC_ROOT}/#\n"
        f"topic write {alerts}\n\n"
        f"user {API_USER}\n"
        f"topic readwrite {alerts}\n"
        "topic read $SYS/broker/uptime\n"  # the broker's health check logs in as the API
    )


def export(engine: Engine, directory: Path, services: Mapping[str, str]) -> Export:
    """Write ``passwd`` and ``acl`` in ``directory`` (each replaced atomically)."""
    with engine.connect() as c:
        devices = c.execute(select(Device.id, Device.site_id).order_by(Device.id)).all()
        query = select(MqttCredential.device_id, MqttCredential.password_hash)
        hashes = {device: hashed for device, hashed in c.execute(query)}
    directory.mkdir(parents=True, exist_ok=True)
    result = Export(directory / "passwd", directory / "acl")
    users = [f"{user}:{hash_password(password)}" for user, password in sorted(services.items())]
    acl = [
        "# Written by `parkguard mqtt-auth export` from the device register; do not edit.",
        "# Anything not granted here is denied. Devices read nothing.",
        "",
        service_acl(),
    ]
    for device_id, site_id in devices:
        if device_id in RESERVED_DEVICE_IDS:
            result.refused.append(device_id)
            continue
        if device_id not in hashes:
            result.without_secret.append(device_id)
            continue
        users.append(f"{device_id}:{hashes[device_id]}")
        acl.append(f"user {device_id}\ntopic write {TOPIC_ROOT}/{site_id}/{device_id}/#\n")
        result.devices += 1
    _replace(result.passwd, "\n".join(users) + "\n")
    _replace(result.acl, "\n".join(acl))
    return result


def _replace(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---- the command ------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = sub.add_parser("mqtt-auth", help="Mosquitto passwords and ACLs from the register")
    actions = auth.add_subparsers(dest="mqtt_auth_command", required=True, metavar="ACTION")
    out = actions.add_parser(
        "export",
        help="write DIR/passwd and DIR/acl (service passwords from "
        "PARKGUARD_MQTT_COLLECTOR_PASSWORD and PARKGUARD_MQTT_API_PASSWORD)",
    )
    out.add_argument("directory", type=Path)
    out.add_argument(
        "--issue-missing",
        action="store_true",
        help="first give every device without a secret a new one, printed once as CSV "
        "(device_id,site_id,password) on standard output",
    )
    out.set_defaults(run=_export_command)
    rotate = actions.add_parser(
        "rotate", help="give DEVICE a new secret, printed once; export again to apply it"
    )
    rotate.add_argument("device_id")
    rotate.set_defaults(run=_rotate_command)


def _engine() -> Engine:
    from core.db import make_engine, upgrade
    from core.settings import load_settings

    url = load_settings().database_url
    upgrade(url)
    return make_engine(url)


def _export_command(args: argparse.Namespace) -> int:
    try:
        services = ServicePasswords().by_user()
    except MqttAuthError as exc:
        print(f"parkguard mqtt-auth: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    engine = _engine()
    try:
        if args.issue_missing:
            issued = issue_missing(engine)
            with engine.connect() as c:
                sites = {d: s for d, s in c.execute(select(Device.id, Device.site_id))}
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["device_id", "site_id", "password"])
            for device_id, secret in issued.items():
                writer.writerow([device_id, sites[device_id], secret])
            sys.stdout.flush()
        result = export(engine, args.directory, services)
    finally:
        engine.dispose()
    print(  # noqa: T201
        f"parkguard mqtt-auth: wrote {result.passwd} and {result.acl}: {result.devices} devices, "
        f"{len(result.without_secret)} without a secret (cannot connect; use --issue-missing "
        f"or rotate), {len(result.refused)} refused for a reserved id {result.refused}. "
        "Send Mosquitto SIGHUP to reload.",
        file=sys.stderr,
    )
    return 0


def _rotate_command(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        secret = issue(engine, args.device_id)
    except MqttAuthError as exc:
        print(f"parkguard mqtt-auth: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        engine.dispose()
    print(secret)  # noqa: T201
    print(  # noqa: T201
        f"parkguard mqtt-auth: new secret for {args.device_id} (shown once). "
        "Run `parkguard mqtt-auth export DIR` and send Mosquitto SIGHUP to apply it.",
        file=sys.stderr,
    )
    return 0
