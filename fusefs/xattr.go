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
	if n.u.cfg.NoXattrs {
		return 0, syscall.ENOTSUP
	}
	if isPrivateXattr(attr) {
		return 0, syscall.ENODATA
	}
	a, err := n.xattrTarget(ctx, false)
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
	if n.u.cfg.NoXattrs {
		return syscall.ENOTSUP
	}
	if isPrivateXattr(attr) {
		return syscall.EPERM
	}
	a, err := n.xattrTarget(ctx, true)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer a.Close()
	return fs.ToErrno(sys.Lsetxattr(a.fd, a.name, attr, data, int(flags)))
}

// Removexattr copies the object up and removes the attribute there.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.u.cfg.NoXattrs {
		return syscall.ENOTSUP
	}
	if isPrivateXattr(attr) {
		return syscall.ENODATA
	}
	// Refuse early, without a copy-up, when there is nothing to remove.
	if a, err := n.xattrTarget(ctx, false); err == nil {
		_, gerr := sys.Lgetxattr(a.fd, a.name, attr, nil)
		a.Close()
		if errors.Is(gerr, unix.ENODATA) {
			return syscall.ENODATA
		}
	}
	a, err := n.xattrTarget(ctx, true)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer a.Close()
	return fs.ToErrno(sys.Lremovexattr(a.fd, a.name, attr))
}

// Listxattr lists the object's attributes without the union's own.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.u.cfg.NoXattrs {
		return 0, syscall.ENOTSUP
	}
	a, err := n.xattrTarget(ctx, false)
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

// xattrTarget locates the object for an attribute call, copied up first
// when write is set. Once the name is gone (unlinked while open), an open
// descriptor of the object stands in: "/proc/self/fd/N/" then names the
// object itself.
func (n *node) xattrTarget(ctx context.Context, write bool) (at, error) {
	var err error
	if write {
		err = n.copyUpMeta(ctx)
	}
	var a at
	if err == nil {
		_, a, _, err = n.stat()
	}
	if isNotFound(err) {
		if fd := n.anyFD(); fd >= 0 {
			return at{fd: fd, name: "", own: true}, nil
		}
	}
	return a, err
}
