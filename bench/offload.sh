#!/usr/bin/env bash
# The eBPF program's own run time per packet, per path (BPF_PROG_TEST_RUN
# with Repeat; see docs/offload.md). Root. Prints median, min and max over
# ROUNDS runs of N packets each.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
n=${N:-2000000}
go test -count="$rounds" -run '^$' -bench '^BenchmarkProgram$' -benchtime="${n}x" ./relay/internal/offload/ |
	awk '/^BenchmarkProgram\// {
		name = $1; sub(/^BenchmarkProgram\//, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 1; i <= NF; i++) if ($(i+1) == "ns/packet") v[name] = v[name] " " $i
		if (!(name in seen)) { seen[name] = 1; order[++k] = name }
	}
	END {
		printf "%-14s %8s %8s %8s   (ns/packet over %d runs)\n", "path", "median", "min", "max", '"$rounds"'
		for (j = 1; j <= k; j++) {
			m = split(substr(v[order[j]], 2), a, " ")
			for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
			printf "%-14s %8s %8s %8s\n", order[j], a[int((m + 1) / 2)], a[1], a[m]
		}
	}'
