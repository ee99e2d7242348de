#!/usr/bin/env bash
# Install the Debian packages the build and the test suite need, or the
# packages named as arguments.
# Idempotent: only runs apt-get when something is actually missing.
set -euo pipefail

# fuse3:      fusermount3 (setuid helper) and /etc/fuse.conf
# uidmap:     newuidmap/newgidmap for rootless user namespaces
# util-linux: runuser, mountpoint, unshare, nsenter
# attr:       getfattr/setfattr (xattr tests and debugging)
# e2fsprogs:  mkfs.ext4/chattr for scratch filesystems
# gcc, libc6-dev: cgo toolchain needed by `go test -race`
# docker-registry: the registry the image tests pull from (on 127.0.0.1)
# busybox-static: the root filesystem of urun's demo and tests, and of test images
# golang-github-containers-common, golang-github-containers-image:
#             registries.conf, short-name aliases, policy.json for urun pull
# podman, runc, fuse-overlayfs: TestPodman (cmd/ufs) runs rootless podman
#             with ufs as its mount_program, compared with fuse-overlayfs,
#             on an image made from busybox-static
# libgpgme-dev, libbtrfs-dev, pkg-config: the C headers containers/image and
#             containers-storage compile against when go runs without the
#             Makefile's build tags (a plain `go vet ./...`, `go build ./...`)
PACKAGES=(fuse3 uidmap util-linux attr e2fsprogs gcc libc6-dev
	libgpgme-dev libbtrfs-dev pkg-config
	docker-registry busybox-static
	golang-github-containers-common golang-github-containers-image
	podman runc fuse-overlayfs)
# Other packages may be named instead (make deps-bench: the benchmark peers).
if [ "$#" -gt 0 ]; then
	PACKAGES=("$@")
fi

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${PACKAGES[@]}"; do
	installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps: all packages present (${PACKAGES[*]})"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: re-run as root (e.g. 'sudo make deps') or run:" >&2
	echo "      sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
