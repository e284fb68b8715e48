#!/usr/bin/env bash
# bench/signal/run.sh: the signaling hub against PeerJS server on this
# machine, loopback only, alternating (hub, PeerJS, hub, PeerJS) and bounded
# in time (about 10 minutes with the defaults). Results go to $OUT
# (results.jsonl, report.md, env.txt, server logs); report.md is printed.
#
#   bench/signal/run.sh                        # everything
#   PHASES=relay REPS=1 bench/signal/run.sh    # only the relay runs, once
#
# Knobs (environment): OUT, PHASES ("mem relay"), REPS (3), MEM_COUNTS
# ("10000", capped by the open-file limit), HOLD (25s), DURATION (10s),
# RATES ("1000 5000": fixed offered loads), ROOMS ("2 8": hub room sizes, each
# against PeerJS pairs at the same rate), CONNS (256), WINDOW (4), HUB_PORT
# (28801), ADMIN_PORT (28802), PEERJS_PORT (29000).
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-$(mktemp -d /tmp/bench-signal.XXXXXX)}
PHASES=${PHASES:-"mem relay"}
REPS=${REPS:-3}
MEM_COUNTS=${MEM_COUNTS:-"10000"}
HOLD=${HOLD:-25s}
DURATION=${DURATION:-10s}
ROOMS=${ROOMS:-"2 8"}
CONNS=${CONNS:-256}
RATES=${RATES:-"1000 5000"}
WINDOW=${WINDOW:-4}
# Ports below the ephemeral range (32768-60999), so no outgoing socket of
# another program on the machine can hold them.
HUB_PORT=${HUB_PORT:-28801}
ADMIN_PORT=${ADMIN_PORT:-28802}
PEERJS_PORT=${PEERJS_PORT:-29000}
PEERJS_LIMIT=100000 # PeerJS's concurrent_limit defaults to 5000 clients
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
BIN=$OUT/signal-bench
PJDIR=bench/signal/peerjs

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# --- open files: both servers and the client need one per connection ----
ulimit -n 120000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
MAXCONN=$((NOFILE - 500))
counts=()
for n in $MEM_COUNTS; do
	if ((n > MAXCONN)); then
		log "open-file limit is $NOFILE (hard $(ulimit -Hn); raising it needs CAP_SYS_RESOURCE):" \
			"$n connections do not fit, measuring $((MAXCONN / 1000 * 1000)) instead"
		n=$((MAXCONN / 1000 * 1000))
	fi
	counts+=("$n")
done

# --- build and install ---------------------------------------------------
log "building the load generator"
go build -o "$BIN" ./bench/signal
if [[ ! -d $PJDIR/node_modules/peer ]]; then
	log "installing PeerJS server (npm ci in $PJDIR)"
	(cd "$PJDIR" && npm ci --no-audit --no-fund >/dev/null)
fi

{
	echo "date: $(date -u +%FT%TZ)"
	echo "kernel: $(uname -r)"
	echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
	echo "go: $(go version)"
	echo "gorilla/websocket: $(go list -m -f '{{.Version}}' github.com/gorilla/websocket)"
	# signaling/ may be uncommitted while it is worked on: name the exact sources.
	echo "signaling sources: $(git rev-parse --short HEAD 2>/dev/null || echo no-git)" \
		"sha256 $(cat $(ls signaling/*.go | grep -v _test.go) | sha256sum | cut -c1-16)"
	echo "node: $(node --version)"
	echo "peer: $(node -p "require('./$PJDIR/node_modules/peer/package.json').version")"
	echo "ws: $(node -p "require('./$PJDIR/node_modules/ws/package.json').version")"
	echo "open-file limit: $NOFILE"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

# --- server processes, stopped by pid ------------------------------------
SERVER_PID=""
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

start_server() { # target -> SERVER_PID, ADDR
	case $1 in
	hub)
		"$BIN" hub -addr "127.0.0.1:$HUB_PORT" -admin "127.0.0.1:$ADMIN_PORT" 2>>"$OUT/hub.log" &
		ADDR=127.0.0.1:$HUB_PORT
		;;
	peerjs)
		node "$PJDIR/server.mjs" "$PEERJS_PORT" "$PEERJS_LIMIT" 2>>"$OUT/peerjs.log" &
		ADDR=127.0.0.1:$PEERJS_PORT
		;;
	esac
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	sleep 0.5
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		log "$1 server exited at start:"
		tail -3 "$OUT/$1.log" >&2
		return 1
	fi
}

stop_server() { # pid
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# Each run gets source addresses of its own (127.0.<run>.x), so no port of
# an earlier run can still be in TIME_WAIT for it.
RUN=10
next_src() { RUN=$((RUN + 1)); SRC=127.0.$RUN.1; }

# --- memory per idle connection -----------------------------------------
if [[ " $PHASES " == *" mem "* ]]; then
	for n in "${counts[@]}"; do
		for rep in $(seq "$REPS"); do
			for target in hub peerjs; do
				start_server "$target" || continue
				extra=()
				[[ $target == hub ]] && extra=(-memstats "http://127.0.0.1:$ADMIN_PORT/debug/memstats")
				next_src
				log "mem: $target, $n connections (run $rep)"
				"$BIN" mem -target "$target" -addr "$ADDR" -pid "$SERVER_PID" -n "$n" -hold "$HOLD" \
					-src "$SRC" -src-count 4 -label "run $rep" "${extra[@]}" >>"$RESULTS" ||
					log "mem: $target $n failed (see above)"
				stop_server "$SERVER_PID"
			done
		done
	done
fi

# --- relay throughput and latency ----------------------------------------
if [[ " $PHASES " == *" relay "* ]]; then
	start_server hub || exit 1
	HUB_PID=$SERVER_PID HUB_ADDR=$ADDR
	start_server peerjs || exit 1
	PJ_PID=$SERVER_PID PJ_ADDR=$ADDR
	relay() { # target room mode rate
		local pid=$HUB_PID addr=$HUB_ADDR
		[[ $1 == peerjs ]] && pid=$PJ_PID addr=$PJ_ADDR
		next_src
		log "relay: $1, room $2, $3 ${4:-}"
		"$BIN" relay -target "$1" -addr "$addr" -pid "$pid" -conns "$CONNS" -room "$2" -mode "$3" \
			-window "$WINDOW" -rate "${4:-1000}" -duration "$DURATION" -src "$SRC" >>"$RESULTS" ||
			log "relay: $1 room $2 $3 failed (see above)"
	}
	# Fixed rates, alternating hub and PeerJS; each hub room size is
	# compared with PeerJS pairs at the same rate (PeerJS has no rooms).
	# The closed loop (saturation) is reported, not targeted.
	for rep in $(seq "$REPS"); do
		for rate in $RATES; do
			for room in $ROOMS; do
				relay hub "$room" rate "$rate"
				relay peerjs 2 rate "$rate"
			done
		done
		relay hub 2 sat
		relay peerjs 2 sat
	done
	stop_server "$HUB_PID"
	stop_server "$PJ_PID"
fi

"$BIN" report "$RESULTS" >"$OUT/report.md"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
log "results in $OUT"
cat "$OUT/report.md"
