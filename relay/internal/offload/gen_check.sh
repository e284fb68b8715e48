#!/usr/bin/env bash
# Regenerates the committed bpf2go output (offload_bpf{el,eb}.{go,o}) from
# offload.c with Debian's clang and fails if anything differs: the committed
# objects are exactly what the source builds to. Needs clang, llvm and
# libbpf-dev (e2e/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")"
# Without the toolchain (a laptop, not root) the check skips with a message;
# under RTCSUITE_REQUIRE_ALL=1 (CI) a missing tool is a failure.
missing() {
	if [ "${RTCSUITE_REQUIRE_ALL:-}" = 1 ]; then
		echo "gen_check: $1" >&2
		exit 1
	fi
	echo "gen_check: skipped: $1" >&2
	exit 0
}
for tool in clang llvm-strip; do
	command -v "$tool" >/dev/null || missing "$tool not found (Debian clang/llvm)"
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing "libbpf-dev headers missing"
tmp=$(mktemp -d /tmp/ebpf-gencheck.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
files=(offload_bpfel.go offload_bpfel.o offload_bpfeb.go offload_bpfeb.o)
for f in "${files[@]}"; do cp "$f" "$tmp/$f"; done
go generate ./
status=0
for f in "${files[@]}"; do
	if ! cmp -s "$f" "$tmp/$f"; then
		echo "gen_check: $f differs from what offload.c builds to with $(clang --version | head -1)" >&2
		status=1
	fi
done
if [ "$status" != 0 ]; then
	for f in "${files[@]}"; do cp "$tmp/$f" "$f"; done # leave the tree as it was
	echo "gen_check: run 'go generate ./relay/internal/offload/' and commit the result" >&2
	exit 1
fi
echo "gen_check: committed eBPF objects match offload.c"
