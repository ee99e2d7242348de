#!/usr/bin/env bash
# Prepare the host for the rootless test phase. Run as root; idempotent.
#
#   scripts/rootless-setup.sh [REPO_DIR]
#
# - creates the unprivileged user $URUN_TEST_USER (default urun-test)
# - gives it a /etc/subuid and /etc/subgid range
# - makes /dev/fuse usable by everyone and fusermount3 setuid root
# - enables unprivileged user namespaces where a sysctl gates them
# - enables user_allow_other in /etc/fuse.conf
# - copies REPO_DIR (default: this script's repo) to $URUN_TEST_DIR/src
#   owned by the user, and seeds a module cache the user can read at
#   $URUN_TEST_DIR/gomod (from root's module cache, falling back to GOPROXY)
set -euo pipefail

TEST_USER=${URUN_TEST_USER:-urun-test}
TEST_DIR=${URUN_TEST_DIR:-/var/tmp/urun-test}
SUBID_START=100000
SUBID_COUNT=65536

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "${1:-$script_dir/..}" && pwd)

log() { printf 'rootless-setup: %s\n' "$*"; }
die() { printf 'rootless-setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -f "$REPO/go.mod" ] || die "$REPO does not look like the repo (no go.mod)"

# --- user -------------------------------------------------------------------
if ! getent passwd "$TEST_USER" >/dev/null; then
	log "creating user $TEST_USER"
	useradd -m -s /bin/bash "$TEST_USER"
fi
TEST_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
TEST_GROUP=$(id -gn "$TEST_USER")

# --- subordinate ids --------------------------------------------------------
# Newer useradd may already have allocated a range; keep it if so.
for f in /etc/subuid /etc/subgid; do
	touch "$f"
	if ! grep -q "^${TEST_USER}:" "$f"; then
		if grep -q ":${SUBID_START}:" "$f"; then
			log "warning: another entry in $f already starts at $SUBID_START"
		fi
		log "adding ${TEST_USER}:${SUBID_START}:${SUBID_COUNT} to $f"
		echo "${TEST_USER}:${SUBID_START}:${SUBID_COUNT}" >>"$f"
	fi
done

# --- /dev/fuse --------------------------------------------------------------
if [ ! -c /dev/fuse ]; then
	modprobe fuse 2>/dev/null || true
fi
if [ ! -c /dev/fuse ]; then
	log "creating /dev/fuse"
	mknod -m 0666 /dev/fuse c 10 229
fi
chmod 0666 /dev/fuse

# --- fusermount3 ------------------------------------------------------------
fusermount=$(command -v fusermount3 || true)
[ -n "$fusermount" ] || fusermount=/usr/bin/fusermount3
[ -x "$fusermount" ] || die "fusermount3 not found (install fuse3: make deps)"
if [ ! -u "$fusermount" ] || [ "$(stat -c %u "$fusermount")" != 0 ]; then
	log "making $fusermount setuid root"
	chown root:root "$fusermount"
	chmod 4755 "$fusermount"
fi

# --- /etc/fuse.conf ---------------------------------------------------------
touch /etc/fuse.conf
if ! grep -Eq '^[[:space:]]*user_allow_other[[:space:]]*$' /etc/fuse.conf; then
	log "enabling user_allow_other in /etc/fuse.conf"
	echo user_allow_other >>/etc/fuse.conf
fi
chmod 0644 /etc/fuse.conf

# --- user namespaces --------------------------------------------------------
set_sysctl() { # path value
	if [ -w "$1" ] && [ "$(cat "$1")" != "$2" ]; then
		log "setting ${1#/proc/sys/} = $2"
		echo "$2" >"$1"
	fi
}
# Debian/Ubuntu kernels gate unprivileged userns behind this knob.
if [ -e /proc/sys/kernel/unprivileged_userns_clone ]; then
	set_sysctl /proc/sys/kernel/unprivileged_userns_clone 1
fi
# Ubuntu 24.04+ AppArmor restriction.
if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
	set_sysctl /proc/sys/kernel/apparmor_restrict_unprivileged_userns 0
fi
if [ -e /proc/sys/user/max_user_namespaces ] &&
	[ "$(cat /proc/sys/user/max_user_namespaces)" -eq 0 ]; then
	set_sysctl /proc/sys/user/max_user_namespaces 15000
fi

# --- working tree for the user ----------------------------------------------
[ ! -L "$TEST_DIR" ] || die "$TEST_DIR is a symlink; refusing"
install -d -m 0755 -o "$TEST_USER" -g "$TEST_GROUP" "$TEST_DIR"
for d in gocache gopath gomod; do
	install -d -m 0755 -o "$TEST_USER" -g "$TEST_GROUP" "$TEST_DIR/$d"
done

# Lazily detach anything a previous, interrupted run left mounted below
# $TEST_DIR so the rm -rf below cannot reach into a FUSE mount.
while read -r mnt; do
	log "detaching stale mount $mnt"
	umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
done < <(awk -v p="$TEST_DIR/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)

log "copying $REPO -> $TEST_DIR/src"
rm -rf --one-file-system "$TEST_DIR/src"
install -d -m 0755 -o "$TEST_USER" -g "$TEST_GROUP" "$TEST_DIR/src"
tar -C "$REPO" \
	--exclude=./.git --exclude=./.cache --exclude=./results \
	-cf - . | tar -C "$TEST_DIR/src" -xf -
chown -R "$TEST_USER:$TEST_GROUP" "$TEST_DIR/src"

# --- module cache for the user ----------------------------------------------
# Root's module cache may live under /root, which the user cannot read.
# Fill a separate cache, preferring root's cache as a local file proxy.
if command -v go >/dev/null; then
	root_modcache=$(cd "$REPO" && go env GOMODCACHE)
	root_proxy=$(cd "$REPO" && go env GOPROXY)
	log "downloading modules into root's module cache"
	(cd "$REPO" && go mod download)
	log "seeding $TEST_DIR/gomod"
	(cd "$TEST_DIR/src" &&
		GOMODCACHE="$TEST_DIR/gomod" \
		GOPROXY="file://$root_modcache/cache/download,$root_proxy" \
		GOFLAGS=-mod=readonly \
		go mod download)
	chown -R "$TEST_USER:$TEST_GROUP" "$TEST_DIR/gomod"
	chmod -R a+rX "$TEST_DIR/gomod"
else
	log "warning: go not in PATH; not seeding $TEST_DIR/gomod"
fi

log "ready: user=$TEST_USER home=$TEST_HOME src=$TEST_DIR/src"
