#!/usr/bin/env bash
# Relay saturation with the batched load generator (bench/relay/batchload.go,
# satload.go): per server, alternating per round, a ramp of offered round
# trips/s until loss passes 1 %; prints the best delivered rate at <= 1 %
# loss with server, generator and echo CPU and socket drops. See
# docs/benchmarks.md, "Saturation with a batched load generator".
#
#   bash bench/relay/satload.sh loopback            # turnd --offload off vs coturn
#   bash bench/relay/satload.sh veth                # root: turnd tc / coturn / turnd off on veth
#   ROUNDS=2 bash bench/relay/satload.sh veth -sat-rates 20000,40000   # extra flags go to the harness
#   bash bench/relay/satload.sh loopback -sat-servers turnd,turnd-alt,coturn -alt-turnd OLD  # A/B in one run
#   bash bench/relay/satload.sh loopback -sat-probe 'python3 bench/relay/satload_probe.py'  # per-step threads
#   bash bench/relay/satload.sh latency             # fixed-rate RTT with kernel receive timestamps (-latload):
#                                                   # 10, 100, 500 flows x 50 pps, turnd --offload off vs coturn
#   bash bench/relay/satload.sh latency -lat-loads 16@60000   # both servers at the same offered rate
#   bash bench/relay/satload.sh latency -lat-loads 500 -lat-probe   # plus p50/p99 outside the slots where a
#                                                   # fixed-work probe saw the CPUs slow down (latprobe.go)
#
# As root the harness and the servers it starts run at nice $NICE (default
# -10; NICE=0 turns it off), in a session of their own whose autogroup gets
# the same nice: with kernel.sched_autogroup_enabled, the CPUs are shared
# between sessions first, so a plain nice would not keep other sessions'
# builds and tests from taking the measured processes' CPU. It is the same
# for every server, so it changes nothing between them.
#
# Writes $OUT/{table.md,raw.jsonl,log.txt,header.txt}.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:?usage: satload.sh loopback|veth|latency [harness flags]}
shift
# latency: the fixed-rate latency phases of latload.go, on loopback.
case $MODE in
latency) RUN=(-latload loopback) ;;
*) RUN=(-satload "$MODE") ;;
esac
for c in turnserver turnutils_peer; do
	command -v "$c" >/dev/null || { echo "satload.sh: $c not found (run e2e/setup.sh as root)" >&2; exit 1; }
done
OUT=${OUT:-$(mktemp -d /tmp/relaybench-satload.XXXXXX)}
mkdir -p "$OUT"
go build -o "$OUT/turnd" ./cmd/turnd
go build -o "$OUT/relaybench" ./bench/relay
{
	echo "# relaybench ${RUN[*]} $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "# kernel $(uname -r); coturn $(turnserver --version 2>/dev/null | head -1 || true); turnd $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/header.txt" >&2
NICE=${NICE:--10}
[ "$(id -u)" = 0 ] || NICE=0
AUTOGROUP=no
[ "$NICE" != 0 ] && [ -e /proc/self/autogroup ] && AUTOGROUP=yes
echo "# nice $NICE (own session and autogroup: $AUTOGROUP)" | tee -a "$OUT/header.txt" >&2
# setsid: a session (so an autogroup) of its own; the inner shell sets the
# group's nice, then becomes the harness.
timeout --kill-after=10s 20m setsid --wait sh -c 'ag=$1 n=$2; shift 2; [ "$ag" = yes ] && echo "$n" >/proc/self/autogroup; exec nice -n "$n" "$@"' \
	sh "$AUTOGROUP" "$NICE" "$OUT/relaybench" "${RUN[@]}" \
	-turnd "$OUT/turnd" \
	-rounds "${ROUNDS:-3}" \
	-raw "$OUT/raw.jsonl" \
	"$@" 2> >(tee "$OUT/log.txt" >&2) | tee "$OUT/table.md"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/header.txt" >&2
echo "satload.sh: results in $OUT" >&2
