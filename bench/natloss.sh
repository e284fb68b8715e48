#!/usr/bin/env bash
# Loss robustness of natprobe in the NAT lab (issue 4): every lab case of
# e2e/natlab with 20% random UDP loss each way on the router, natprobe run
# RUNS times per case against turnd and coturn (RFC 5780 mode), reporting the
# share of exactly correct classifications and the median classification
# time. NATDISCOVERY=1 also runs coturn's turnutils_natdiscovery (a
# single-try client) as the reference. Needs root, iproute2, nftables and
# coturn (e2e/setup.sh). Not part of go test: loss from nft's numgen cannot
# be seeded, so this is measured, not asserted.
#
#   sudo bench/natloss.sh                    # the standard run: speed, then loss
#   RUNS=20 LOSS=30 bench/natloss.sh --cases eim-apdf-pp,apdm-apdf
#
# The standard run (no RUNS or LOSS given) measures both figures of
# docs/nat.md: the median classification time at 0% loss (10 runs per case
# and server, 320 runs), then correctness at 20% loss each way (42 runs per
# case and server, 1,344 runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PARALLEL="${PARALLEL:-4}"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/natprobe" ./cmd/natprobe
go build -o "$bin/turnd" ./cmd/turnd
go build -o "$bin/natloss" ./bench/natloss
extra=()
if [ "${NATDISCOVERY:-0}" = 1 ]; then extra+=(--natdiscovery); fi
measure() { # loss runs [args...]
	local loss="$1" runs="$2"
	shift 2
	"$bin/natloss" --natprobe "$bin/natprobe" --turnd "$bin/turnd" --runs "$runs" --loss "$loss" \
		--parallel "$PARALLEL" "${extra[@]}" "$@"
}
if [ -z "${RUNS:-}" ] && [ -z "${LOSS:-}" ]; then
	echo "== speed: 0% loss"
	measure 0 10 "$@"
	echo
	echo "== correctness: 20% loss each way"
	measure 20 42 "$@"
else
	measure "${LOSS:-20}" "${RUNS:-10}" "$@"
fi
