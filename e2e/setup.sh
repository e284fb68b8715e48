#!/usr/bin/env bash
# Installs what the test suite needs from Debian, idempotently: coturn (interop
# client and reference server), chromium (browser tests), nftables and iproute2
# (NAT lab), redis-server (cluster tests). Safe to run again; does nothing when everything is present.
# Needs root to install; without root it only reports what is missing.
set -euo pipefail

need=()
command -v turnserver        >/dev/null 2>&1 || need+=(coturn)
command -v chromium          >/dev/null 2>&1 || need+=(chromium)
command -v nft               >/dev/null 2>&1 || need+=(nftables)
command -v ip                >/dev/null 2>&1 || need+=(iproute2)
command -v openssl           >/dev/null 2>&1 || need+=(openssl)
command -v conntrack         >/dev/null 2>&1 || need+=(conntrack)
command -v redis-server      >/dev/null 2>&1 || need+=(redis-server)
# The deploy recipe test (e2e TestDeployRecipe): unit checks, users, capabilities.
command -v systemd-analyze   >/dev/null 2>&1 || need+=(systemd)
command -v useradd           >/dev/null 2>&1 || need+=(passwd)
command -v setpriv           >/dev/null 2>&1 || need+=(util-linux)
# eBPF offload (relay/internal/offload): gen_check.sh rebuilds the program, the
# netns test turns checksum offload off with ethtool.
command -v clang             >/dev/null 2>&1 || need+=(clang)
command -v llvm-strip        >/dev/null 2>&1 || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ]       || need+=(libbpf-dev)
command -v ethtool           >/dev/null 2>&1 || command -v /usr/sbin/ethtool >/dev/null 2>&1 || need+=(ethtool)

# golangci-lint, pinned: the test command lints with it. Built from the Go
# module proxy into GOPATH/bin; no root needed.
lint_version=v2.15.0
gobin="$(go env GOPATH)/bin"
if ! "$gobin/golangci-lint" version 2>/dev/null | grep -q "version ${lint_version#v} "; then
	echo "setup: installing golangci-lint $lint_version"
	GOFLAGS= go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$lint_version"
fi

if [ ${#need[@]} -eq 0 ]; then
	echo "setup: all test dependencies present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "setup: missing ${need[*]}; run as root to install (tests needing them will skip)" >&2
	exit 0
fi
echo "setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian starts a package's services on install. The tests run their own
# servers on their own ports, so keep services that this run installs from
# starting (policy-rc.d, honoured by invoke-rc.d and deb-systemd-invoke) and
# never touch a service that was already there: on a production host a
# running coturn is somebody's relay.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
for p in "${need[@]}"; do
	# Installed by this run: leave it disabled at boot too.
	if [ "$p" = coturn ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable coturn >/dev/null 2>&1 || true
	fi
done
# redis-server: the tests start their own on free loopback ports. A system
# Redis (installed now or before) is left alone: never stopped or disabled.
echo "setup: done"
