#!/usr/bin/env bash
# turnd (--offload tc and --offload off) vs coturn on a veth/netns topology:
# client ns — veth — relay ns — veth — peer ns (internal/netlab), where
# turnd's eBPF kernel path carries established UDP channels. Alternating
# rounds, a fresh server per phase, medians with min–max. Whole-test CPU
# from schedstat (server, uclient, peer, ksoftirqd) plus the BPF program's
# run time (bpf_stats, enabled by the harness for the run only). Root.
#
#   bash bench/relay/veth.sh                       # 3 rounds, ~10 minutes
#   ROUNDS=1 SECONDS_PER_PHASE=5 bash bench/relay/veth.sh   # quick look
#   bash bench/relay/veth.sh -veth-loads 100 -veth-sat-flows 50,100   # extra flags go to the harness
#
# Prints markdown tables on stdout; per-round lines on stderr; every
# measurement as JSON lines in $OUT/raw.jsonl. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" = 0 ] || { echo "veth.sh: needs root (network namespaces, eBPF)" >&2; exit 1; }
for c in turnserver turnutils_uclient turnutils_peer ip ethtool; do
	command -v "$c" >/dev/null || { echo "veth.sh: $c not found (run e2e/setup.sh as root)" >&2; exit 1; }
done

OUT=${OUT:-$(mktemp -d /tmp/relaybench-veth.XXXXXX)}
mkdir -p "$OUT"
go build -o "$OUT/turnd" ./cmd/turnd
go build -o "$OUT/relaybench" ./bench/relay

ulimit -n 20000 2>/dev/null || true

{
	echo "# relaybench -veth $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "# kernel $(uname -r); coturn $(turnserver --version 2>/dev/null | head -1 || true); turnd $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/header.txt" >&2

timeout --kill-after=10s 40m "$OUT/relaybench" -veth \
	-turnd "$OUT/turnd" \
	-rounds "${ROUNDS:-3}" \
	-seconds "${SECONDS_PER_PHASE:-10}" \
	-raw "$OUT/raw.jsonl" \
	"$@" | tee "$OUT/table.md"

echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/header.txt" >&2
echo "veth.sh: results in $OUT" >&2
