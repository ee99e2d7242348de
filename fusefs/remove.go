package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeUnlinker = (*node)(nil)
	_ fs.NodeRmdirer  = (*node)(nil)
)

// visibleBelow reports whether name in the directory dirRel would still
// resolve from the branches of ps.layers below branch b once the object in b
// is gone.
func (u *Union) visibleBelow(ps nodeState, dirRel, name string, b int) bool {
	var below nodeState
	for i, l := range ps.layers {
		if l == b {
			below.layers = ps.layers[i+1:]
			break
		}
	}
	if len(below.layers) == 0 {
		return false
	}
	_, _, err := u.lookupChild(below, dirRel, name)
	return err == nil
}

// whiteout hides name in the directory dirfd of an rw branch: a ".wh.NAME"
// file in the aufs format, or for names too long for its prefix an
// overlay-format whiteout at the name itself (a 0/0 character device where
// mknod is allowed, else an empty file with the overlay.whiteout xattr).
// An object already at name is replaced atomically.
func (u *Union) whiteout(b int, dirfd int, name string) error {
	if len(name)+len(whPrefix) <= maxNameLen {
		fd, err := sys.OpenBeneath(dirfd, whPrefix+name, unix.O_WRONLY|unix.O_CREAT, 0)
		if err != nil {
			return err
		}
		unix.Close(fd)
		return nil
	}
	work := u.br[b].work
	tmp := u.tmpName()
	if err := sys.Mknodat(work, tmp, unix.S_IFCHR, 0); err != nil {
		fd, ferr := sys.OpenBeneath(work, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0)
		if ferr != nil {
			return ferr
		}
		unix.Close(fd)
		attr := "trusted.overlay.whiteout"
		dattr := "trusted.overlay.whiteouts"
		if !u.privileged {
			attr, dattr = "user.overlay.whiteout", "user.overlay.whiteouts"
		}
		if err := sys.Lsetxattr(work, tmp, attr, []byte("y"), 0); err != nil {
			u.discard(work, tmp, false)
			return err
		}
		if err := sys.Lsetxattr(dirfd, ".", dattr, []byte("y"), 0); err != nil {
			u.discard(work, tmp, false)
			return err
		}
	}
	if err := sys.Renameat2(work, tmp, dirfd, name, 0); err != nil {
		u.discard(work, tmp, false)
		return err
	}
	return nil
}

// remove deletes name, an object of this directory, leaving a whiteout
// where a lower branch still holds the name.
func (n *node) remove(ctx context.Context, name string, dir bool) error {
	u := n.u
	if isMetaName(name) {
		return unix.ENOENT
	}
	if u.topRW < 0 {
		return unix.EROFS
	}
	ps, err := n.state()
	if err != nil {
		return err
	}
	rel := n.rel()
	cs, st, err := u.lookupChild(ps, rel, name)
	if err != nil {
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if dir && !isDir {
		return unix.ENOTDIR
	}
	if !dir && isDir {
		return unix.EISDIR
	}
	if isDir {
		names, err := u.mergedNames(cs, joinRel(rel, name))
		if err != nil {
			return err
		}
		if len(names) > 0 {
			return unix.ENOTEMPTY
		}
	}
	needWh := u.visibleBelow(ps, rel, name, cs.br)
	if !u.br[cs.br].rw() {
		// The object is in a read-only branch: hide it from above.
		if err := n.copyUp(ctx); err != nil {
			return err
		}
		if ps, err = n.state(); err != nil {
			return err
		}
		dfd, err := sys.OpenBeneath(u.br[ps.br].fd, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		return u.whiteout(ps.br, dfd, name)
	}
	dfd, err := sys.OpenBeneath(u.br[cs.br].fd, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	longName := len(name)+len(whPrefix) > maxNameLen
	if needWh && longName {
		// The whiteout replaces the object in one rename.
		if isDir {
			if err := removeAllAt(dfd, name, false); err != nil {
				return err
			}
		}
		return u.whiteout(cs.br, dfd, name)
	}
	if needWh {
		// Whiteout first: the object hides it until it is removed, and no
		// lower name shows in between.
		if err := u.whiteout(cs.br, dfd, name); err != nil {
			return err
		}
	}
	if isDir {
		// Only bookkeeping is left inside (whiteouts, opaque marker).
		if err := removeAllAt(dfd, name, true); err != nil {
			return err
		}
		return nil
	}
	return sys.Unlinkat(dfd, name, 0)
}

// Unlink removes a non-directory.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return fs.ToErrno(n.remove(ctx, name, false))
}

// Rmdir removes a directory that is empty through the union.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return fs.ToErrno(n.remove(ctx, name, true))
}
