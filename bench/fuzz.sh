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

# fuzz_one runs one target. Go's fuzzing coordinator can end a run with a
# bare "context deadline exceeded" at its own -fuzztime deadline, with no
# failing input: a race in internal/fuzz between the -fuzztime context and
# its child (golang/go#75804, fixed in Go 1.27; this module builds with
# 1.26). That is the engine, not a finding, so such a run is repeated (at
# most twice); drop the repeat once go.mod moves to 1.27. A real failure writes its input under testdata/fuzz
# and says so, and is never repeated.
# show_cached_input prints the cached corpus file a failing run names
# ("failure while testing seed corpus entry: Target/hash"), so the log
# carries the input even when it never reached testdata/fuzz.
show_cached_input() {
	local out=$1 cachedir=$2 entry
	entry=$(sed -nE 's/.*failure while testing seed corpus entry: ([A-Za-z0-9_]+\/[0-9a-f]+).*/\1/p' "$out" | head -n1)
	if [[ -n "$entry" && -f "$cachedir/$entry" ]]; then
		echo "== failing input $entry (copy it to testdata/fuzz/$entry to replay it with go test):"
		cat "$cachedir/$entry"
		echo
	fi
}

fuzz_one() {
	local exe=$1 dir=$2 target=$3 cachedir=$4 out attempt
	for attempt in 1 2 3; do
		out=$(mktemp "$bin/out.XXXXXX")
		if (cd "$dir" && "$exe" -test.run '^$' -test.fuzz "^${target}\$" -test.fuzztime "$FUZZTIME" \
			-test.fuzzcachedir "$cachedir") 2>&1 | tee "$out"; [[ ${PIPESTATUS[0]} -eq 0 ]]; then
			return 0
		fi
		if grep -q 'Failing input written' "$out" || ! grep -q 'context deadline exceeded' "$out"; then
			show_cached_input "$out" "$cachedir"
			return 1
		fi
		if grep -q 'fuzz: minimizing' "$out"; then
			# The deadline cut the minimisation short, so nothing went to
			# testdata/fuzz; the input is in the cache, where the next run
			# replays it first and fails on it.
			echo "== $target: found a failing input but hit the deadline while minimising it; running again to replay it"
		else
			echo "== $target: the fuzzing engine stopped at its deadline without a failing input; running it again"
		fi
	done
	return 1
}

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
		if ! fuzz_one "$exe" "$dir" "$target" "$cache/$pkg"; then
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
