#!/usr/bin/env bash
# Time from "second page opens" to "data channel open" in headless Chromium,
# direct and relay-only, against an in-process hub and relay on loopback.
# Prints the median, min and max over RUNS iterations per mode (default 9).
# Needs Debian's chromium (e2e/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-9}"
exec go test -count=1 -run '^$' -bench 'BrowserConnect' -benchtime "${RUNS}x" ./e2e/ "$@"
