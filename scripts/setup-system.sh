#!/usr/bin/env bash
# System packages some features and tests need (Debian/Ubuntu, run as root or with sudo).
# Does nothing where they are already present or where apt is unavailable.
set -euo pipefail
need=()
# (filled in by later features: chromium for browser tests, postgresql for database tests)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if ! command -v apt-get >/dev/null; then echo "please install: ${need[*]}" >&2; exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
