package sys

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OpenPath opens path as an O_PATH descriptor of a directory (a branch
// root, a work directory).
func OpenPath(path string) (int, error) {
	var fd int
	err := retry(func() error {
		var err error
		fd, err = unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// Access checks the caller's access to path (the access(2) mode bits).
func Access(path string, mode uint32) error {
	if err := unix.Access(path, mode); err != nil {
		return &os.PathError{Op: "access", Path: path, Err: err}
	}
	return nil
}

// Fdatasync flushes the data of fd.
func Fdatasync(fd int) error {
	return os.NewSyscallError("fdatasync", retry(func() error { return unix.Fdatasync(fd) }))
}

// Ftruncate sets the size of fd.
func Ftruncate(fd int, size int64) error {
	return os.NewSyscallError("ftruncate", retry(func() error { return unix.Ftruncate(fd, size) }))
}

// Fstatfs reports the filesystem of fd (O_PATH descriptors work).
func Fstatfs(fd int, st *unix.Statfs_t) error {
	return os.NewSyscallError("fstatfs", retry(func() error { return unix.Fstatfs(fd, st) }))
}

// Pread reads at an offset.
func Pread(fd int, p []byte, off int64) (int, error) {
	var n int
	err := retry(func() error {
		var err error
		n, err = unix.Pread(fd, p, off)
		return err
	})
	return n, os.NewSyscallError("pread", err)
}

// Seek moves the offset of fd (SEEK_DATA and SEEK_HOLE included).
func Seek(fd int, off int64, whence int) (int64, error) {
	n, err := unix.Seek(fd, off, whence)
	return n, os.NewSyscallError("lseek", err)
}

// fdPath names the object of descriptor fd (also O_PATH) through its /proc
// magic link, for calls that have no f* form usable with O_PATH.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// ChmodFD changes the mode of the object of fd (also O_PATH).
func ChmodFD(fd int, mode uint32) error {
	err := retry(func() error { return unix.Chmod(fdPath(fd), mode) })
	if err != nil {
		return &os.PathError{Op: "chmod", Path: fdPath(fd), Err: err}
	}
	return nil
}

// UtimensFD sets the times of the object of fd (also O_PATH).
func UtimensFD(fd int, ts []unix.Timespec) error {
	err := retry(func() error { return unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH) })
	if err != nil {
		return &os.PathError{Op: "utimensat", Path: fdPath(fd), Err: err}
	}
	return nil
}

// Unmount detaches the mount at path (flags: 0 or MNT_DETACH).
func Unmount(path string, flags int) error {
	if err := unix.Unmount(path, flags); err != nil {
		return &os.PathError{Op: "umount2", Path: path, Err: err}
	}
	return nil
}

// FchownFD changes the owner of the object of fd (also O_PATH, also a
// symlink); -1 leaves an id unchanged.
func FchownFD(fd, uid, gid int) error {
	err := retry(func() error { return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH) })
	if err != nil {
		return &os.PathError{Op: "fchownat", Path: fdPath(fd), Err: err}
	}
	return nil
}

// Reopen opens the object of fd (an O_PATH descriptor) again with flags,
// through its /proc magic link: the same object, with the usual access
// checks.
func Reopen(fd int, flags int) (int, error) {
	var nfd int
	err := retry(func() error {
		var err error
		nfd, err = unix.Open(fdPath(fd), flags|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: fdPath(fd), Err: err}
	}
	return nfd, nil
}
