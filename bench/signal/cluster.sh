#!/usr/bin/env bash
# bench/signal/cluster.sh: the cost of the hub's cluster path. One hub node
# (in memory, the default) against two and three nodes on one Redis, at
# fixed offered loads, rooms of 2 whose members sit on different nodes, so
# every signal crosses nodes through Redis. CPU time per delivered message
# is summed over every node and redis-server. On one machine this measures
# what the cluster path costs, not how far it scales out: all nodes and
# Redis share the same two cores.
#
#   bench/signal/cluster.sh                     # REPS=3, rates 1000 5000
#   REPS=1 RATES=1000 bench/signal/cluster.sh
#
# Knobs (environment): OUT, REPS (3), RATES ("1000 5000"), NODES ("1 2 3"),
# CONNS (256), DURATION (10s), REDIS_PORT (28839). Hub nodes bind free ports.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-$(mktemp -d /tmp/bench-cluster.XXXXXX)}
REPS=${REPS:-3}
RATES=${RATES:-"1000 5000"}
NODES=${NODES:-"1 2 3"}
CONNS=${CONNS:-256}
DURATION=${DURATION:-10s}
REDIS_PORT=${REDIS_PORT:-28839} # below the ephemeral range
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
BIN=$OUT/signal-bench
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
command -v redis-server >/dev/null || { log "redis-server missing (Debian package redis-server)"; exit 1; }

go build -o "$BIN" ./bench/signal
{
	echo "date: $(date -u +%FT%TZ)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc)"
	echo "redis: $(redis-server --version)"
	echo "go: $(go version)"
} >"$OUT/env.txt"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 50); do
	redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
	sleep 0.1
done

stop() { # pid...
	local p
	for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

RUN=40
for rep in $(seq "$REPS"); do
	for rate in $RATES; do
		for n in $NODES; do # alternating: 1, 2, 3 nodes, then again
			RUN=$((RUN + 1))
			addrs=() pids=()
			for i in $(seq "$n"); do
				extra=()
				((n > 1)) && extra=(-redis "redis://127.0.0.1:$REDIS_PORT" -node-id "bench$i")
				hlog=$OUT/hub-$RUN-$i.log
				"$BIN" hub -addr 127.0.0.1:0 -admin 127.0.0.1:0 -room-capacity 2 "${extra[@]}" 2>"$hlog" &
				pids+=($!)
				PIDS+=($!)
				addr=""
				for _ in $(seq 100); do
					addr=$(grep -o 'ws://[0-9.:]*' "$hlog" | head -1 | sed 's|ws://||') || true
					[[ -n $addr ]] && break
					sleep 0.1
				done
				addrs+=("$addr")
			done
			cpu_pids=$(IFS=,; echo "${pids[*]}")
			((n > 1)) && cpu_pids="$cpu_pids,$REDIS_PID"
			log "cluster: $n node(s), $rate msgs/s (run $rep)"
			"$BIN" relay -target hub -addr "$(IFS=,; echo "${addrs[*]}")" -pid "$cpu_pids" -conns "$CONNS" -room 2 \
				-mode rate -rate "$rate" -duration "$DURATION" -src "127.0.$RUN.1" -label "nodes=$n" >>"$RESULTS" ||
				log "cluster: $n nodes at $rate failed (see above)"
			stop "${pids[@]}"
		done
	done
done

"$BIN" cluster-report "$RESULTS" | tee "$OUT/report.md"
log "results in $OUT"
