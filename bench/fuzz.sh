#!/usr/bin/env bash
# Runs every fuzz target in the module, one after another, for a while each.
#
#   bash bench/fuzz.sh                # 3 minutes per target
#   bash bench/fuzz.sh 10             # 10 minutes per target
#   FUZZTIME=10s bash bench/fuzz.sh   # any -fuzztime value (CI uses 10s)
#
# Targets are found in the *_test.go files of every package (go list ./...),
# so new ones are picked up without editing this script. Each package's
# test binary is built once with the fuzzing instrumentation `go test -fuzz`
# uses (linking it again for every target cost more than the fuzzing in CI),
# then run once per target from the package directory, so the seed corpus
# in testdata/fuzz is used and a failing input is written there. The script
# goes on with the other targets and exits non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -gt 0 ]]; then
	FUZZTIME="${1}m"
fi
FUZZTIME="${FUZZTIME:-3m}"
module=$(go list -m)
cache="$(go env GOCACHE)/fuzz"
bin=$(mktemp -d "${TMPDIR:-/tmp}/rtcsuite-fuzz.XXXXXX")
trap 'rm -rf "$bin"' EXIT

failed=()
count=0
while read -r pkg dir; do
	targets=$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]+)\(.*/\1/p' "$dir"/*_test.go 2>/dev/null || true)
	[[ -n "$targets" ]] || continue
	exe="$bin/$(basename "$dir").test"
	if ! go test -c -gcflags="${module}/...=-d=libfuzzer" -o "$exe" "$pkg"; then
		failed+=("$pkg (build)")
		continue
	fi
	for target in $targets; do
		count=$((count + 1))
		echo "== fuzz $pkg $target for $FUZZTIME"
		if ! (cd "$dir" && "$exe" -test.run '^$' -test.fuzz "^${target}\$" -test.fuzztime "$FUZZTIME" \
			-test.fuzzcachedir "$cache/$pkg"); then
			failed+=("$pkg $target")
		fi
	done
	rm -f "$exe"
done < <(go list -f '{{.ImportPath}} {{.Dir}}' ./...)

echo "== fuzzed $count targets for $FUZZTIME each"
if [[ ${#failed[@]} -gt 0 ]]; then
	printf 'FAILED: %s\n' "${failed[@]}"
	exit 1
fi
