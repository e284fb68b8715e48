#!/usr/bin/env bash
# The whole traversal matrix of issue 12: 28 pairs of lab NATs (7 cases),
# each with natprobe on both LANs, `natprobe predict`, and two pion peers in
# four modes (STUN, STUN+TURN/UDP, TURN/TCP+TLS, IPv6), 15 s per cell at
# most, then the four Chromium cells (TestTraversalBrowsers). Fails when any
# cell disagrees with the prediction; on success it regenerates
# docs/traversal.md. Needs root, iproute2, nftables, conntrack
# (e2e/setup.sh). Takes several minutes; CI runs a subset (go test
# -run TestTraversalMatrix ./e2e/).
#
#   sudo bench/traversal.sh            # regenerates docs/traversal.md
#   OUT=/tmp/m.json bench/traversal.sh # also keeps the cells as JSON
set -euo pipefail
cd "$(dirname "$0")/.."
export TRAVERSAL_FULL=1
export TRAVERSAL_DOC="$PWD/docs/traversal.md"
if [ -n "${OUT:-}" ]; then export TRAVERSAL_JSON="$OUT"; fi
log="$(mktemp /tmp/traversal-XXXXXX.log)"
start=$(date +%s)
# The matrix writes the doc; the browser cells then append their section.
go test -count=1 -timeout 30m -run 'TestTraversalMatrix$' -v ./e2e/ >"$log" 2>&1 || { grep -E 'traversal_test|^(--- |ok|FAIL)' "$log"; exit 1; }
go test -count=1 -timeout 10m -run 'TestTraversalBrowsers$' -v ./e2e/ >>"$log" 2>&1 || { grep -E 'traversal_|^(--- |ok|FAIL)' "$log"; exit 1; }
grep -E 'traversal_|^(--- |ok|FAIL)' "$log"
echo "traversal: wall time $(( $(date +%s) - start )) s; log $log"
