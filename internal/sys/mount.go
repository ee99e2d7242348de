package sys

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Mount wraps mount(2), retrying EINTR; the error names the target.
func Mount(source, target, fstype string, flags uintptr, data string) error {
	err := retry(func() error { return unix.Mount(source, target, fstype, flags, data) })
	if err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: target, Err: err}
	}
	return nil
}

// MountFD mounts onto the object open at fd (through its /proc/self/fd
// link, so that a path resolved safely once is not resolved again); name
// is used in the error.
func MountFD(source string, fd int, name, fstype string, flags uintptr, data string) error {
	err := retry(func() error { return unix.Mount(source, fdPath(fd), fstype, flags, data) })
	if err != nil {
		return &os.PathError{Op: "mount " + fstype, Path: name, Err: err}
	}
	return nil
}

// OpenInRoot opens rel below dirfd with symlinks resolved as if dirfd were
// the root directory (RESOLVE_IN_ROOT): a container's paths can never
// reach the host's tree.
func OpenInRoot(dirfd int, rel string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	var fd int
	var err error
	// EAGAIN: a mount or rename anywhere on the system raced with the
	// resolution of a ".."; the kernel asks to try again.
	for range 64 {
		err = retry(func() error {
			var err error
			fd, err = unix.Openat2(dirfd, rel, &how)
			return err
		})
		if err != unix.EAGAIN {
			break
		}
	}
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	return fd, nil
}

// FDPath returns the /proc/self/fd path of fd.
func FDPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
