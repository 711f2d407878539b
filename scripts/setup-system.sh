#!/usr/bin/env bash
# System packages some features and tests need (Debian/Ubuntu, run as root or with sudo).
# Does nothing where they are already present or where apt is unavailable.
set -euo pipefail
need=()
# PostgreSQL server binaries for the database tests (tests start a throw-away cluster)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then need+=(postgresql); fi
# Chromium for the dashboard's browser tests (Playwright drives it; it never downloads a browser)
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then need+=(chromium); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null; then echo "please install: ${need[*]}" >&2; exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
