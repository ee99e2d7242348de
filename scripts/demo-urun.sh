#!/usr/bin/env bash
# Demo: a rootless container with urun on a root filesystem made locally
# from Debian's busybox-static package.
#
#   scripts/demo-urun.sh     (as root: prepares the unprivileged user
#                             urun-test and runs the container as it;
#                             as a user: runs as yourself)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
URUN=${URUN:-$repo/bin/urun}
[ -x "$URUN" ] || { echo "demo: $URUN not found; run 'make build'" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin"

if [ -t 1 ]; then bold=$'\033[1m' off=$'\033[0m'; else bold='' off=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }

if [ "$(id -u)" -eq 0 ]; then
	user=${URUN_TEST_USER:-urun-test}
	step "preparing the unprivileged user $user (subuid/subgid ranges, /dev/fuse)"
	URUN_TEST_USER=$user "$repo/scripts/rootless-setup.sh" "$repo" >/dev/null
	dir=${URUN_TEST_DIR:-/var/tmp/urun-test}
	install -d -o "$user" "$dir/demo"
	install -m 0755 "$URUN" "$dir/demo/urun"
	install -m 0755 "$0" "$dir/demo/demo-urun.sh"
	install -m 0755 "$repo/scripts/demo-image.sh" "$dir/demo/demo-image.sh"
	[ ! -x "$repo/bin/ufs" ] || install -m 0755 "$repo/bin/ufs" "$dir/demo/ufs"
	echo "    running the rest as $user"
	exec runuser -u "$user" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME="$(getent passwd "$user" | cut -d: -f6)" URUN="$dir/demo/urun" TMPDIR=/tmp \
		"$dir/demo/demo-urun.sh"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/urun-demo.XXXXXX")
# The store's files belong to subordinate ids: remove them from inside.
trap '"$URUN" --root "$work/data" unshare rm -rf "$work/data" 2>/dev/null; rm -rf "$work"' EXIT
rootfs=$work/rootfs

step "building a root filesystem from Debian's busybox-static package"
mkdir -p "$rootfs"/{bin,etc,root,tmp}
if (cd "$work" && apt-get download busybox-static >/dev/null 2>&1); then
	dpkg-deb -x "$work"/busybox-static_*.deb "$work/deb"
	cp "$work/deb/bin/busybox" "$rootfs/bin/busybox"
	echo "    from $(basename "$work"/busybox-static_*.deb)"
else
	cp "$(dpkg -L busybox-static | grep '/bin/busybox$' | head -1)" "$rootfs/bin/busybox"
	echo "    from the installed busybox-static package"
fi
for applet in $("$rootfs/bin/busybox" --list); do
	[ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/tmp:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nalice:x:1000:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

step "urun run --rm --rootfs ROOTFS echo hello   (as $(id -un), uid $(id -u))"
"$URUN" --root "$work/data" run --rm --rootfs "$rootfs" echo hello

step "who am I inside, and where"
"$URUN" --root "$work/data" run --rm --rootfs "$rootfs" --hostname demo sh -c \
	'echo "hostname: $(hostname)"; echo "id: $(id)"; echo "uid_map:"; cat /proc/self/uid_map; echo "pid 1: $(cat /proc/1/comm)"; grep CapEff /proc/self/status'

step "an image made locally from busybox-static, imported into urun's store"
URUN_FLAGS="--root $work/data" "$(dirname "$0")/demo-image.sh" "$URUN" localhost/demo:latest | tail -1 | sed 's/^/    image id: /'
"$URUN" --root "$work/data" images

step "urun demo echo hello   (the short form of: urun run localhost/demo:latest echo hello)"
"$URUN" --root "$work/data" run --rm demo echo hello
"$URUN" --root "$work/data" rmi localhost/demo:latest >/dev/null

step "exit codes travel back"
set +e
"$URUN" --root "$work/data" run --rm --rootfs "$rootfs" sh -c 'exit 42'
echo "    exit status: $?"
set -e
echo
echo "demo: done"
