"""Who may do what: the one table the API enforces (``api.auth.authorize``), kept here so that
it can be reviewed at a glance.

- ``PUBLIC``: answered without signing in (health, signing in, the console's own files).
- ``RULES``: (method, route template) → the roles allowed. Every state-changing route
  (POST, PUT, PATCH, DELETE) must be listed; one that is not is refused to everybody, and
  ``tests/auth/test_policy.py`` fails until it is listed, so a router added later cannot slip
  through. A read (GET) that is not listed is open to every signed-in role.

Roles: ``operator`` (security room), ``maintenance`` (technicians), ``manager`` (the park's
safety manager), ``auditor`` (reads everything, changes nothing), ``admin`` (everything).
"""

from __future__ import annotations

import re
from functools import cache

from core.models_auth import ROLES

EVERYONE = frozenset(ROLES)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_ADMIN = frozenset({"admin"})
_ROOM = frozenset({"operator", "manager", "admin"})
"""Handling alarms and emergencies: the security room and those above it."""
_FIELD = frozenset({"maintenance", "manager", "admin"})
"""Inspections, repairs and taking devices out of service."""
_RESPONDERS = frozenset({"operator", "maintenance", "manager", "admin"})
"""A plan's steps are done by the room, the patrol and the technicians alike."""
_OVERSIGHT = frozenset({"manager", "auditor", "admin"})
_MANAGERS = frozenset({"manager", "admin"})

PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/api/v1/health"),
        ("POST", "/api/v1/auth/token"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/"),
        ("GET", "/console"),
        ("GET", "/console/"),
        ("GET", "/console/static/{name}"),
    }
)

RULES: dict[tuple[str, str], frozenset[str]] = {
    # signing in and out, one's own password
    ("POST", "/api/v1/auth/logout"): EVERYONE,
    ("POST", "/api/v1/auth/password"): EVERYONE,
    # users
    ("GET", "/api/v1/users"): _ADMIN,
    ("POST", "/api/v1/users"): _ADMIN,
    ("POST", "/api/v1/users/{username}"): _ADMIN,
    # the audit log
    ("GET", "/api/v1/audit"): _OVERSIGHT,
    # alerts (issue 3)
    ("POST", "/api/v1/alerts/{alert_id}/ack"): _ROOM,
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): _ROOM,
    ("POST", "/api/v1/alerts/{alert_id}/shelve"): _ROOM,
    ("POST", "/api/v1/alerts/{alert_id}/unshelve"): _ROOM,
    # emergency plans and incidents (issue 4)
    ("POST", "/api/v1/plans/{plan_id}/activate"): _ROOM,
    ("POST", "/api/v1/incidents/{incident_id}/steps/{step_id}/complete"): _RESPONDERS,
    ("POST", "/api/v1/incidents/{incident_id}/steps/{step_id}/skip"): _RESPONDERS,
    ("POST", "/api/v1/incidents/{incident_id}/close"): _ROOM,
    # maintenance (issue 5)
    ("POST", "/api/v1/inspections/{task_id}/complete"): _FIELD,
    ("POST", "/api/v1/work-orders"): _RESPONDERS,
    ("POST", "/api/v1/work-orders/{order_id}/close"): _FIELD,
    # intactness: devices out of service on purpose (issue 6)
    ("POST", "/api/v1/intactness/devices/{device_id}/out-of-service"): _FIELD,
    ("POST", "/api/v1/intactness/devices/{device_id}/back-in-service"): _FIELD,
    # the demo's simulated fleet (issue 8): the room plays scenarios
    ("POST", "/api/v1/demo/scenarios/{name}/play"): _ROOM,
    # compliance reports and the training register
    ("POST", "/api/v1/reports/stored"): _MANAGERS,
    ("POST", "/api/v1/training"): _MANAGERS,
}


FEED_ROUTES: frozenset[tuple[str, str]] = frozenset({("GET", "/api/v1/inspections.ics")})
"""Routes a calendar-feed token (``?feed=``, see api.auth) may read: calendar apps cannot send
an Authorization header."""


METRICS_ROUTES: frozenset[tuple[str, str]] = frozenset({("GET", "/metrics")})
"""Routes the metrics token (``PARKGUARD_METRICS_TOKEN``, see api.auth) may read: a scraper
such as Prometheus has no user to sign in with."""


def is_public(method: str, template: str) -> bool:
    return (method, template) in PUBLIC or (method == "HEAD" and ("GET", template) in PUBLIC)


def allowed_roles(method: str, template: str) -> frozenset[str]:
    """The roles that may call this route; empty for a state-changing route not listed."""
    rule = RULES.get((method, template))
    if rule is not None:
        return rule
    if method in SAFE_METHODS:
        return RULES.get(("GET", template), EVERYONE)
    return frozenset()


def template_for(path: str) -> str | None:
    """The template of RULES or PUBLIC that ``path`` matches, the most literal first; for a
    request whose route template the server did not report."""
    for template, pattern in _patterns():
        if pattern.fullmatch(path):
            return template
    return None


@cache
def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    templates = {t for _, t in RULES} | {t for _, t in PUBLIC}
    ordered = sorted(templates, key=lambda t: (t.count("{"), -len(t)))
    return [(t, re.compile(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)))) for t in ordered]
