#!/usr/bin/env bash
# Build a small image from Debian's busybox-static, without network access,
# and import it into urun's image store.
#
#   scripts/demo-image.sh [URUN [NAME]]     (URUN_FLAGS: urun's global flags)
#
# URUN defaults to bin/urun beside this script's repo, NAME to
# localhost/demo:latest. The image: /bin/busybox with a symlink per applet,
# /etc/passwd and /etc/group (root, nobody), the usual empty directories;
# CMD ["/bin/sh"] and a default PATH.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
urun=${1:-$script_dir/../bin/urun}
name=${2:-localhost/demo:latest}

die() { printf 'demo-image: error: %s\n' "$*" >&2; exit 1; }

[ -x /bin/busybox ] || die "/bin/busybox missing: install busybox-static (make deps)"
/bin/busybox --list >/dev/null 2>&1 || die "/bin/busybox does not run"
[ -x "$urun" ] || die "$urun missing: run make build"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev,home,run,var/tmp}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .

# URUN_FLAGS: global flags for urun (for example --root DIR).
# shellcheck disable=SC2086
"$urun" ${URUN_FLAGS:-} import -q \
	--change 'CMD ["/bin/sh"]' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	"$work/rootfs.tar" "$name"
