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
# cost. darwin and windows get the whole module; freebsd, whose code paths
# are darwin's except the hub's socket calls, gets every package but
# cmd/turnd, which would compile modernc.org/sqlite a third time (with an
# empty cache that package is most of the step's cost; measured at load
# average 4-7 on the shared 2-core machine: darwin 196 s, windows 107 s,
# freebsd 208 s of which most is sqlite; 5 s for all with a warm cache).
xvet() {
	local goos=$1
	shift
	if ! GOOS=$goos GOARCH=amd64 go vet -gcflags=all='-N -l' "$@"; then
		echo "e2e/test.sh: go vet fails for GOOS=$goos GOARCH=amd64: the suite no longer builds on $goos" >&2
		exit 1
	fi
}
xvet darwin ./...
xvet windows ./...
# (Listed for freebsd: packages that are Linux-only there have no files.)
xvet freebsd $(GOOS=freebsd go list -f '{{if or .GoFiles .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... | grep -v '/cmd/turnd$')
"$(go env GOPATH)/bin/golangci-lint" run ./...
go test -race -count=1 -timeout 20m ./... "$@"
# Every fuzz target for 10 s (bench/fuzz.sh runs them for minutes).
FUZZTIME=10s bash bench/fuzz.sh
