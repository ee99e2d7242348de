#!/usr/bin/env bash
# Demo: a three-branch AUFS-style union mounted with ufs.
#
#   UP  (rw)  empty writable upper branch
#   MID (wh)  read-only, but its whiteouts count: .wh.gone hides LOW/gone
#   LOW (ro)  a tiny rootfs
#
# Usage: scripts/demo.sh            (uses bin/ufs; override with UFS=...)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UFS=${UFS:-$repo/bin/ufs}
[ -x "$UFS" ] || { echo "demo: $UFS not found; run 'make build'" >&2; exit 1; }

if [ -t 1 ]; then bold=$'\033[1m' off=$'\033[0m'; else bold='' off=''; fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$off"; }
ok()   { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*" >&2; exit 1; }
show() { printf '    $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }
# tree DIR: every path below DIR, relative and sorted, dirs marked with /
tree() { (cd "$1" && find . -mindepth 1 \( -type d -printf '%P/\n' -o -printf '%P\n' \) | sort | sed 's/^/    /'); }

work=$(mktemp -d "${TMPDIR:-/tmp}/ufs-demo.XXXXXX")
UP=$work/up MID=$work/mid LOW=$work/low MNT=$work/mnt

cleanup() {
	local rc=$?
	if mountpoint -q "$MNT" 2>/dev/null; then
		echo "demo: cleaning up: unmounting $MNT" >&2
		"$UFS" unmount -z "$MNT" 2>/dev/null ||
			fusermount3 -uz "$MNT" 2>/dev/null ||
			umount -l "$MNT" 2>/dev/null || true
	fi
	# --one-file-system: never descend into a mount that refused to go away.
	rm -rf --one-file-system "$work" 2>/dev/null ||
		echo "demo: could not fully remove $work" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "Building branches in $work"
mkdir -p "$UP" "$MID" "$LOW" "$MNT"
mkdir -p "$LOW/etc" "$LOW/bin" "$LOW/usr/share/doc"
cat >"$LOW/etc/os-release" <<'OS'
NAME="Tiny Linux"
ID=tiny
VERSION_ID=1
OS
cat >"$LOW/bin/hello.sh" <<'SH'
#!/bin/sh
echo "hello from the bottom branch"
SH
chmod 0755 "$LOW/bin/hello.sh"
echo "This README lives in the read-only bottom branch." >"$LOW/usr/share/doc/README"
echo "you should never see this" >"$LOW/gone"
mkdir -p "$MID/etc"
echo tiny-host >"$MID/etc/hostname"
: >"$MID/.wh.gone"
echo "UP  (rw):"; tree "$UP"
echo "MID (wh):"; tree "$MID"
echo "LOW (ro):"; tree "$LOW"

step "Mounting: ufs mount -o br=UP=rw:MID=wh:LOW=ro MNT"
# Not through show(): the background server must not inherit a pipe.
printf '    $ %s\n' "$UFS mount -o br=$UP=rw:$MID=wh:$LOW=ro $MNT"
"$UFS" mount -o "br=$UP=rw:$MID=wh:$LOW=ro" "$MNT"
for _ in $(seq 50); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || fail "$MNT is not a mount point"
show findmnt -n -o TARGET,FSTYPE,SOURCE,OPTIONS "$MNT"

step "Merged view"
show ls -la "$MNT" "$MNT/etc"
echo "    all paths:"; tree "$MNT"
sh "$MNT/bin/hello.sh" | sed 's/^/    /'

step "MID/.wh.gone hides LOW/gone"
show ls -l "$LOW/gone"
[ -e "$LOW/gone" ] || fail "LOW/gone missing"
if [ -e "$MNT/gone" ]; then fail "gone is visible through the mount"; fi
ok "MNT/gone does not exist"
if [ -n "$(find "$MNT" -name '.wh.*' -print -quit)" ]; then fail "whiteout names leak into the merged view"; fi
ok "no .wh.* names in the merged view"

step "Deleting a lower file through the mount: rm MNT/usr/share/doc/README"
show rm "$MNT/usr/share/doc/README"
[ ! -e "$MNT/usr/share/doc/README" ] || fail "README still visible"
ok "README gone from the merged view"
show ls -la "$UP/usr/share/doc"
[ -e "$UP/usr/share/doc/.wh.README" ] || fail "no whiteout UP/usr/share/doc/.wh.README"
ok "whiteout .wh.README created in the upper branch"
[ -e "$LOW/usr/share/doc/README" ] || fail "LOW README was removed"
ok "LOW/usr/share/doc/README untouched"

step "Appending to a lower file: echo DEMO=1 >> MNT/etc/os-release"
lower_before=$(cat "$LOW/etc/os-release")
echo DEMO=1 >>"$MNT/etc/os-release"
echo "    merged:"; sed 's/^/      /' "$MNT/etc/os-release"
echo "    upper copy (UP/etc/os-release):"; sed 's/^/      /' "$UP/etc/os-release"
echo "    lower (LOW/etc/os-release):"; sed 's/^/      /' "$LOW/etc/os-release"
[ "$(tail -n1 "$UP/etc/os-release")" = DEMO=1 ] || fail "copy-up missing the appended line"
[ "$(head -n1 "$UP/etc/os-release")" = 'NAME="Tiny Linux"' ] || fail "copy-up lost the original content"
[ "$(cat "$LOW/etc/os-release")" = "$lower_before" ] || fail "lower branch was modified"
ok "copy-up landed in UP; LOW unchanged"

step "Upper branch now holds only the changes"
tree "$UP"

step "Unmounting: ufs unmount MNT"
show "$UFS" unmount "$MNT"
if mountpoint -q "$MNT"; then fail "$MNT still mounted"; fi
ok "unmounted"

step "Done"
