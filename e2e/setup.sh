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
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
# Debian starts coturn's own service on install: the tests run their own instances.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now coturn >/dev/null 2>&1 || true; fi
pkill -x turnserver 2>/dev/null || true
# redis-server: the tests start their own on free loopback ports. A system
# Redis (installed now or before) is left alone: never stopped or disabled.
echo "setup: done"
