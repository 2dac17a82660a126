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
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
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
echo "== systemd-analyze verify packaging/mfa-radius.service"
# verify refuses a unit whose ExecStart program does not exist, and /usr/bin/mfa-radius exists
# only where the package is installed: it checks a copy whose ExecStart runs this checkout's
# .venv/bin/mfa-radius instead, every other line unchanged. verify reports an unknown
# directive or a bad value ("..., ignoring.") as a warning and still exits 0, so any line that
# names the unit fails the check too (lines about other units on the machine do not).
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
sed "s|^ExecStart=/usr/bin/mfa-radius |ExecStart=$PWD/.venv/bin/mfa-radius |" \
  packaging/mfa-radius.service >"$unit_dir/mfa-radius.service"
grep -q "^ExecStart=$PWD/.venv/bin/mfa-radius serve " "$unit_dir/mfa-radius.service"
verify_out=$(systemd-analyze verify --man=no "$unit_dir/mfa-radius.service" 2>&1) \
  || { printf '%s\n' "$verify_out"; exit 1; }
if grep -F "mfa-radius.service" <<<"$verify_out"; then exit 1; fi
echo "ok"
echo "== pytest";              .venv/bin/pytest -q "$@"
