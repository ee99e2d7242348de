// Package sys wraps the raw Linux system calls that the union filesystem
// uses to reach branch files: openat2 confined beneath a branch root,
// directory listing with getdents, extended attributes by directory fd, and
// file cloning. Each wrapper retries EINTR and returns an *os.PathError or
// *os.SyscallError whose errno stays matchable with errors.Is.
package sys

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveFlags confine a path walk to the directory it starts from: no
// "..", no absolute paths, no symlinks (a symlink planted in a branch cannot
// lead anywhere) and no magic links.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// chunk is the longest path handed to one openat2 call; longer relative
// paths are walked in pieces so that trees deeper than PATH_MAX work as on
// ext4.
const chunk = 3072

func retry(f func() error) error {
	for {
		err := f()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// OpenBeneath opens rel, a relative path below the directory dirfd, with
// openat2 and RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS. An empty rel or "." opens
// dirfd itself. With O_PATH|O_NOFOLLOW a trailing symlink is opened as such.
func OpenBeneath(dirfd int, rel string, flags int, mode uint32) (int, error) {
	if rel == "" {
		rel = "."
	}
	start := dirfd
	owned := -1
	defer func() {
		if owned >= 0 {
			unix.Close(owned)
		}
	}()
	for len(rel) > chunk {
		cut := strings.LastIndexByte(rel[:chunk], '/')
		if cut <= 0 {
			return -1, &os.PathError{Op: "openat2", Path: rel, Err: unix.ENAMETOOLONG}
		}
		fd, err := openat2(start, rel[:cut], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if owned >= 0 {
			unix.Close(owned)
		}
		owned, start = fd, fd
		rel = strings.TrimLeft(rel[cut:], "/")
	}
	return openat2(start, rel, flags, mode)
}

func openat2(dirfd int, rel string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: resolveFlags}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode)
	}
	var fd int
	err := retry(func() error {
		var err error
		fd, err = unix.Openat2(dirfd, rel, &how)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: rel, Err: err}
	}
	return fd, nil
}

// ProcPath names the entry name of the directory dirfd through /proc, for
// the calls that have no *at form (the l*xattr family). "." names the
// directory itself: the trailing slash makes even the l* calls follow the
// descriptor's magic link.
//
// In the attribute wrappers below an empty name means the descriptor itself
// (which must then not be O_PATH): they use the f*xattr calls.
func ProcPath(dirfd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name == "" || name == "." {
		return p + "/"
	}
	return p + "/" + name
}

// Lgetxattr reads the extended attribute attr of the entry name in dirfd
// without following a trailing symlink. A nil dest asks for the size.
func Lgetxattr(dirfd int, name, attr string, dest []byte) (int, error) {
	var n int
	err := retry(func() error {
		var err error
		if name == "" {
			n, err = unix.Fgetxattr(dirfd, attr, dest)
			return err
		}
		n, err = unix.Lgetxattr(ProcPath(dirfd, name), attr, dest)
		return err
	})
	if err != nil {
		return 0, &os.PathError{Op: "getxattr " + attr, Path: name, Err: err}
	}
	return n, nil
}

// GetxattrAll reads a whole attribute value, growing the buffer as needed.
func GetxattrAll(dirfd int, name, attr string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := Lgetxattr(dirfd, name, attr, buf)
		if err == nil {
			return buf[:n], nil
		}
		if !errors.Is(err, unix.ERANGE) {
			return nil, err
		}
		size, err := Lgetxattr(dirfd, name, attr, nil)
		if err != nil {
			return nil, err
		}
		buf = make([]byte, size+64)
	}
}

// Lsetxattr sets attr on the entry name in dirfd.
func Lsetxattr(dirfd int, name, attr string, data []byte, flags int) error {
	err := retry(func() error {
		if name == "" {
			return unix.Fsetxattr(dirfd, attr, data, flags)
		}
		return unix.Lsetxattr(ProcPath(dirfd, name), attr, data, flags)
	})
	if err != nil {
		return &os.PathError{Op: "setxattr " + attr, Path: name, Err: err}
	}
	return nil
}

// Lremovexattr removes attr from the entry name in dirfd.
func Lremovexattr(dirfd int, name, attr string) error {
	err := retry(func() error {
		if name == "" {
			return unix.Fremovexattr(dirfd, attr)
		}
		return unix.Lremovexattr(ProcPath(dirfd, name), attr)
	})
	if err != nil {
		return &os.PathError{Op: "removexattr " + attr, Path: name, Err: err}
	}
	return nil
}

// Llistxattr lists the attribute names of the entry name in dirfd.
func Llistxattr(dirfd int, name string) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		var n int
		list := func(b []byte) (int, error) {
			if name == "" {
				return unix.Flistxattr(dirfd, b)
			}
			return unix.Llistxattr(ProcPath(dirfd, name), b)
		}
		err := retry(func() error {
			var err error
			n, err = list(buf)
			return err
		})
		if errors.Is(err, unix.ERANGE) {
			size, err := list(nil)
			if err != nil {
				return nil, &os.PathError{Op: "listxattr", Path: name, Err: err}
			}
			buf = make([]byte, size+256)
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: name, Err: err}
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

// Fstatat stats the entry name in dirfd without following a symlink.
func Fstatat(dirfd int, name string, st *unix.Stat_t) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	err := retry(func() error { return unix.Fstatat(dirfd, name, st, flags) })
	if err != nil {
		return &os.PathError{Op: "fstatat", Path: name, Err: err}
	}
	return nil
}

// Dirent is one entry of a branch directory.
type Dirent struct {
	Name string
	Ino  uint64
	Type uint8 // DT_* constant
}

// ReadDir lists the directory open at fd (opened O_RDONLY|O_DIRECTORY),
// without "." and "..".
func ReadDir(fd int) ([]Dirent, error) {
	var out []Dirent
	buf := make([]byte, 32*1024)
	for {
		var n int
		err := retry(func() error {
			var err error
			n, err = unix.Getdents(fd, buf)
			return err
		})
		if err != nil {
			return nil, os.NewSyscallError("getdents", err)
		}
		if n <= 0 {
			return out, nil
		}
		b := buf[:n]
		for len(b) > 0 {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name
			reclen := int(b[16]) | int(b[17])<<8
			ino := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
				uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
			typ := b[18]
			nameb := b[19:reclen]
			if i := indexByte(nameb, 0); i >= 0 {
				nameb = nameb[:i]
			}
			name := string(nameb)
			if name != "." && name != ".." {
				out = append(out, Dirent{Name: name, Ino: ino, Type: typ})
			}
			b = b[reclen:]
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// Mknodat makes a node named name in dirfd.
func Mknodat(dirfd int, name string, mode uint32, dev int) error {
	err := retry(func() error { return unix.Mknodat(dirfd, name, mode, dev) })
	if err != nil {
		return &os.PathError{Op: "mknodat", Path: name, Err: err}
	}
	return nil
}

// Renameat2 renames between two directory fds.
func Renameat2(olddirfd int, oldname string, newdirfd int, newname string, flags uint) error {
	err := retry(func() error { return unix.Renameat2(olddirfd, oldname, newdirfd, newname, flags) })
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// Unlinkat removes name from dirfd (flags: 0 or AT_REMOVEDIR).
func Unlinkat(dirfd int, name string, flags int) error {
	err := retry(func() error { return unix.Unlinkat(dirfd, name, flags) })
	if err != nil {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

// Mkdirat makes the directory name in dirfd.
func Mkdirat(dirfd int, name string, mode uint32) error {
	err := retry(func() error { return unix.Mkdirat(dirfd, name, mode) })
	if err != nil {
		return &os.PathError{Op: "mkdirat", Path: name, Err: err}
	}
	return nil
}

// Symlinkat makes the symlink name in dirfd pointing at target.
func Symlinkat(target string, dirfd int, name string) error {
	err := retry(func() error { return unix.Symlinkat(target, dirfd, name) })
	if err != nil {
		return &os.PathError{Op: "symlinkat", Path: name, Err: err}
	}
	return nil
}

// Linkat makes newname in newdirfd a hard link to oldname in olddirfd.
func Linkat(olddirfd int, oldname string, newdirfd int, newname string) error {
	err := retry(func() error { return unix.Linkat(olddirfd, oldname, newdirfd, newname, 0) })
	if err != nil {
		return &os.LinkError{Op: "linkat", Old: oldname, New: newname, Err: err}
	}
	return nil
}

// Readlinkat reads the target of the symlink name in dirfd.
func Readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		var n int
		err := retry(func() error {
			var err error
			n, err = unix.Readlinkat(dirfd, name, buf)
			return err
		})
		if err != nil {
			return "", &os.PathError{Op: "readlinkat", Path: name, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*2)
	}
}

// Fchownat changes the owner of name in dirfd without following symlinks.
func Fchownat(dirfd int, name string, uid, gid int) error {
	err := retry(func() error { return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return &os.PathError{Op: "fchownat", Path: name, Err: err}
	}
	return nil
}

// Fchmodat changes the mode of name in dirfd without following a symlink:
// the object is opened O_PATH|O_NOFOLLOW beneath dirfd and changed through
// its descriptor, so a symlink planted at name cannot redirect the change.
func Fchmodat(dirfd int, name string, mode uint32) error {
	fd, err := OpenBeneath(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := Fstatat(fd, "", &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &os.PathError{Op: "fchmodat", Path: name, Err: unix.EOPNOTSUPP}
	}
	return ChmodFD(fd, mode)
}

// Utimensat sets the times of name in dirfd without following symlinks.
func Utimensat(dirfd int, name string, ts []unix.Timespec) error {
	err := retry(func() error { return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return &os.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}
