#!/usr/bin/env bash
# Installs turnd and signal as systemd services, as root:
#
#   sudo deploy/install.sh            # both
#   sudo deploy/install.sh turnd      # or only one of them
#
# What it does (idempotent; an existing config is never overwritten):
#   * builds the binaries (with the git revision stamped for --version) into
#     $PREFIX/bin (PREFIX defaults to /usr/local), or installs prebuilt ones
#     given as TURND_BIN=... SIGNAL_BIN=...;
#   * creates the system groups and users `turnd` and `signal` (no login, no home);
#   * creates /etc/turnd and /etc/signal (root:GROUP 0750) with tls/ inside,
#     and writes turnd.conf / signal.conf from the examples with fresh random
#     secrets (the TURN REST secret is the same in both, so the hub's
#     credentials work on the relay);
#   * installs the units into /etc/systemd/system and the Let's Encrypt
#     deploy hook into $PREFIX/lib/rtcsuite/certbot-deploy-hook.
#
# DESTDIR=/some/dir stages everything below that directory instead (users and
# groups go into DESTDIR/etc/passwd and DESTDIR/etc/group through useradd
# --prefix); the tests install this way. Afterwards:
#   systemctl daemon-reload && systemctl enable --now turnd signal
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr/local}"
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(turnd signal)

if [ "$(id -u)" != 0 ]; then
	echo "install.sh: run as root (it creates users and writes /etc)" >&2
	exit 1
fi

prefix_args=()
[ -z "$DESTDIR" ] || prefix_args=(--prefix "$DESTDIR")

random_secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# A secret shared by turnd (static-auth-secret) and signal (turn-secret):
# reuse the one already installed, else make one.
shared_secret=""
if [ -f "$DESTDIR/etc/turnd/turnd.conf" ]; then
	shared_secret="$(sed -n 's/^static-auth-secret=//p' "$DESTDIR/etc/turnd/turnd.conf" | head -1)"
fi
if [ -z "$shared_secret" ] && [ -f "$DESTDIR/etc/signal/signal.conf" ]; then
	shared_secret="$(sed -n 's/^turn-secret=//p' "$DESTDIR/etc/signal/signal.conf" | head -1)"
fi
[ -n "$shared_secret" ] || shared_secret="$(random_secret)"

install_binary() { # name
	local name=$1 var prebuilt
	var="$(echo "$name" | tr a-z A-Z)_BIN"
	prebuilt="${!var:-}"
	install -d -m 0755 "$DESTDIR$PREFIX/bin"
	if [ -n "$prebuilt" ]; then
		install -m 0755 "$prebuilt" "$DESTDIR$PREFIX/bin/$name"
		return
	fi
	local rev ldflags
	rev="$(git -C "$root" rev-parse HEAD 2>/dev/null || true)"
	ldflags=""
	[ -z "$rev" ] || ldflags="-X github.com/rtcsuite/rtcsuite/internal/buildinfo.revision=$rev"
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$DESTDIR$PREFIX/bin/$name" "./cmd/$name")
}

ensure_user() { # name
	local name=$1
	if ! grep -q "^$name:" "$DESTDIR/etc/group" 2>/dev/null; then
		groupadd "${prefix_args[@]}" --system "$name"
	fi
	if ! grep -q "^$name:" "$DESTDIR/etc/passwd" 2>/dev/null; then
		useradd "${prefix_args[@]}" --system --gid "$name" --no-create-home \
			--home-dir /nonexistent --shell /usr/sbin/nologin --comment "rtcsuite $name" "$name"
	fi
}

install_config() { # name example secret-line...
	local name=$1 example=$2
	shift 2
	local conf="$DESTDIR/etc/$name/$name.conf"
	install -d -m 0750 -o root -g "$(gid_of "$name")" "$DESTDIR/etc/$name" "$DESTDIR/etc/$name/tls"
	if [ -e "$conf" ]; then
		echo "install.sh: keeping existing $conf"
		return
	fi
	local tmp
	tmp="$(mktemp "$DESTDIR/etc/$name/.$name.conf.XXXXXX")"
	cp "$example" "$tmp"
	local kv
	for kv in "$@"; do # key=value: replace the placeholder line of key
		sed -i "s|^${kv%%=*}=change-me-to-a-long-random-string\$|$kv|" "$tmp"
	done
	chown root:"$(gid_of "$name")" "$tmp"
	chmod 0640 "$tmp"
	mv "$tmp" "$conf"
	echo "install.sh: wrote $conf (secrets generated)"
}

# gid_of prints a group's id from DESTDIR/etc/group (names in a staged
# group file are unknown to the host's chown).
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$DESTDIR/etc/group"; }

for name in "${what[@]}"; do
	case "$name" in
	turnd)
		install_binary turnd
		ensure_user turnd
		install_config turnd "$here/turnd.conf.example" "static-auth-secret=$shared_secret"
		;;
	signal)
		install_binary signal
		ensure_user signal
		install_config signal "$here/signal.conf.example" "turn-secret=$shared_secret" "jwt-secret=$(random_secret)"
		;;
	*)
		echo "install.sh: unknown component $name (turnd or signal)" >&2
		exit 2
		;;
	esac
	install -d -m 0755 "$DESTDIR/etc/systemd/system"
	install -m 0644 "$here/$name.service" "$DESTDIR/etc/systemd/system/$name.service"
done
install -d -m 0755 "$DESTDIR$PREFIX/lib/rtcsuite"
install -m 0755 "$here/certbot-deploy-hook" "$DESTDIR$PREFIX/lib/rtcsuite/certbot-deploy-hook"

if [ -z "$DESTDIR" ]; then
	echo "install.sh: done. Next: edit /etc/turnd/turnd.conf (realm, external-ip) and /etc/signal/signal.conf (turn-url),"
	echo "  then: systemctl daemon-reload && systemctl enable --now ${what[*]}"
fi
