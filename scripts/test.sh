#!/usr/bin/env bash
# Install everything the tests need and run them all: lint, types, pytest.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Debian packages: the real broker and database the tests talk to.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)  # InfluxDB v2 write API, for the readings tests
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
[ -x /usr/bin/chromium ] || missing+=(chromium)  # Debian's browser, driven by Playwright in tests/console
command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)  # the compliance PDF read back as text and image
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi

# Services, started if they are not running.
if ! port_open 1883; then
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
if ! port_open 5432; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
for _ in $(seq 1 50); do port_open 5432 && port_open 1883 && break; sleep 0.2; done
if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
  as_root su postgres -c "psql -c \"create database test\"" >/dev/null 2>&1 || true
fi

# Python environment.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
