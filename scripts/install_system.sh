#!/usr/bin/env bash
# The Debian packages the test suite needs (scripts/test.sh runs this; the demo does not), installed
# idempotently and quietly:
#   chromium    the browser of tests/integration/test_browser.py (Playwright drives /usr/bin/chromium)
#   postgresql  initdb/pg_ctl for the tests that run against a real PostgreSQL
# Run as root (or with sudo). Safe to run again: installed packages are skipped.
set -euo pipefail

PACKAGES=(chromium postgresql)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install_system: all present (${PACKAGES[*]})"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
echo "install_system: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install_system: done ($(command -v chromium || echo 'no chromium'); $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1))"
