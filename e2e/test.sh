#!/usr/bin/env bash
# The one command that runs every test: installs test dependencies (as root),
# then runs go test over the whole module. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash e2e/setup.sh
# The committed eBPF objects must be exactly what offload.c builds to.
bash relay/internal/offload/gen_check.sh
go vet ./...
"$(go env GOPATH)/bin/golangci-lint" run ./...
go test -race -count=1 -timeout 20m ./... "$@"
# Every fuzz target for 10 s (bench/fuzz.sh runs them for minutes).
FUZZTIME=10s bash bench/fuzz.sh
