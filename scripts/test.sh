#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine, then run every check:
# formatting, lint, types, import layers and the tests. CI runs exactly this (.ci/run).
# The tests start their own redis-server, FreeRADIUS and slapd on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v radclient >/dev/null || need_apt+=(freeradius-utils)
[ -x /usr/sbin/freeradius ] || need_apt+=(freeradius)
[ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapadd >/dev/null || need_apt+=(ldap-utils)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff format --check"; .venv/bin/ruff format --check mfa_radius tests bench
echo "== ruff check";          .venv/bin/ruff check mfa_radius tests bench
echo "== mypy --strict";       .venv/bin/mypy
echo "== lint-imports";        .venv/bin/lint-imports
echo "== pytest";              .venv/bin/pytest -q "$@"
