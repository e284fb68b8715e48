#!/usr/bin/env bash
# Soak turnd and signal under legitimate traffic plus bounded attack
# traffic, and check they stay flat and healthy (see bench/soak/main.go).
#
#   bash bench/soak.sh        # 30 minutes
#   bash bench/soak.sh 120    # 120 minutes
#   SOAK_ARGS="-flows 16 -attack-rate 10" bash bench/soak.sh 10
#
# Needs Debian's coturn for turnutils_uclient (e2e/setup.sh installs it);
# without it the uclient flows are skipped with a note. Exits non-zero when
# a check fails; server logs stay in the directory it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
bin=$(mktemp -d "${TMPDIR:-/tmp}/rtcsuite-soak-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/turnd" ./cmd/turnd
go build -o "$bin/signal" ./cmd/signal
go build -o "$bin/soak" ./bench/soak
# Sample so that every run has enough points to judge flatness.
sample=$((minutes * 60 / 40))
(( sample < 3 )) && sample=3
# shellcheck disable=SC2086 # SOAK_ARGS is a list of flags
"$bin/soak" -turnd "$bin/turnd" -signal "$bin/signal" -duration "${minutes}m" -sample "${sample}s" ${SOAK_ARGS:-}
