#!/usr/bin/env bash
# turnd vs coturn on this machine: the same load through each, alternating
# (A/B, then B/A), a fresh server per phase, medians over rounds.
# Loopback only; every process is started and killed by pid by the Go
# harness (bench/relay/*.go). Needs coturn 4.6 (turnserver, turnutils_uclient,
# turnutils_peer: Debian package coturn, installed by e2e/setup.sh).
#
#   bash bench/relay/run.sh                 # default: 3 rounds, ~8 minutes
#   ROUNDS=1 SECONDS_PER_PHASE=5 bash bench/relay/run.sh   # quick look
#   bash bench/relay/run.sh -loads 10,200,500               # extra flags go to the harness
#
# Prints a markdown table (medians) on stdout; per-round lines on stderr;
# every measurement as JSON lines in $OUT/raw.jsonl. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

for c in turnserver turnutils_uclient turnutils_peer; do
	command -v "$c" >/dev/null || { echo "run.sh: $c not found (Debian package coturn; run e2e/setup.sh as root)" >&2; exit 1; }
done

OUT=${OUT:-$(mktemp -d /tmp/relaybench.XXXXXX)}
mkdir -p "$OUT"
go build -o "$OUT/turnd" ./cmd/turnd
go build -o "$OUT/relaybench" ./bench/relay

# 1000 idle allocations need ~2000 sockets in the harness and the server.
ulimit -n 20000 2>/dev/null || true

{
	echo "# relaybench $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "# kernel $(uname -r); coturn $(turnserver --version 2>/dev/null | head -1 || true); turnd $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/header.txt" >&2

# The harness bounds every phase itself; this is the overall backstop.
timeout --kill-after=10s 30m "$OUT/relaybench" \
	-turnd "$OUT/turnd" \
	-rounds "${ROUNDS:-3}" \
	-seconds "${SECONDS_PER_PHASE:-10}" \
	-raw "$OUT/raw.jsonl" \
	"$@" | tee "$OUT/table.md"

echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/header.txt" >&2
echo "run.sh: results in $OUT" >&2
