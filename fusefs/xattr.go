package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// Getxattr reads an attribute from the object's branch; the union's own
// attributes are not visible.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if isPrivateXattr(attr) {
		return 0, syscall.ENODATA
	}
	_, a, _, err := n.stat()
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	defer a.Close()
	sz, err := sys.Lgetxattr(a.fd, a.name, attr, dest)
	if err != nil {
		return uint32(sz), fs.ToErrno(err)
	}
	return uint32(sz), 0
}

// Setxattr copies the object up and sets the attribute there.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if isPrivateXattr(attr) {
		return syscall.EPERM
	}
	if err := n.copyUp(ctx); err != nil {
		return fs.ToErrno(err)
	}
	_, a, _, err := n.stat()
	if err != nil {
		return fs.ToErrno(err)
	}
	defer a.Close()
	return fs.ToErrno(sys.Lsetxattr(a.fd, a.name, attr, data, int(flags)))
}

// Removexattr copies the object up and removes the attribute there.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if isPrivateXattr(attr) {
		return syscall.ENODATA
	}
	// Refuse early, without a copy-up, when there is nothing to remove.
	if _, a, _, err := n.stat(); err == nil {
		_, gerr := sys.Lgetxattr(a.fd, a.name, attr, nil)
		a.Close()
		if errors.Is(gerr, unix.ENODATA) {
			return syscall.ENODATA
		}
	}
	if err := n.copyUp(ctx); err != nil {
		return fs.ToErrno(err)
	}
	_, a, _, err := n.stat()
	if err != nil {
		return fs.ToErrno(err)
	}
	defer a.Close()
	return fs.ToErrno(sys.Lremovexattr(a.fd, a.name, attr))
}

// Listxattr lists the object's attributes without the union's own.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	_, a, _, err := n.stat()
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	defer a.Close()
	names, err := sys.Llistxattr(a.fd, a.name)
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	var buf []byte
	for _, nm := range names {
		if !isPrivateXattr(nm) {
			buf = append(buf, nm...)
			buf = append(buf, 0)
		}
	}
	if len(dest) == 0 {
		return uint32(len(buf)), 0
	}
	if len(buf) > len(dest) {
		return uint32(len(buf)), syscall.ERANGE
	}
	return uint32(copy(dest, buf)), 0
}
