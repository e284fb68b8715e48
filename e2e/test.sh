#!/usr/bin/env bash
# The one command that runs every test: installs test dependencies (as root),
# then runs go test over the whole module. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/setup.sh
# The committed eBPF objects must be exactly what offload.c builds to.
bash relay/internal/offload/gen_check.sh
go vet ./...
# The suite must build on the platforms users run it on (README, "Platforms"):
# vet compiles every package and test there. Linux-only code belongs in a
# _linux.go file or behind //go:build linux. Vet reads only the compiler's
# type information, so -N -l (no optimisation) cuts a cold build cache's
# cost (measured: 5 s for the three with a warm cache; 511 s with an empty
# one, modernc.org/sqlite the largest part, at load average 4-7 on the
# shared 2-core machine).
for goos in darwin windows freebsd; do
	if ! GOOS=$goos GOARCH=amd64 go vet -gcflags=all='-N -l' ./...; then
		echo "e2e/test.sh: go vet ./... fails for GOOS=$goos GOARCH=amd64: the suite no longer builds on $goos" >&2
		exit 1
	fi
done
"$(go env GOPATH)/bin/golangci-lint" run ./...
go test -race -count=1 -timeout 20m ./... "$@"
# Every fuzz target for 10 s (bench/fuzz.sh runs them for minutes).
FUZZTIME=10s bash bench/fuzz.sh
