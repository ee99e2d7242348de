package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeUnlinker = (*node)(nil)
	_ fs.NodeRmdirer  = (*node)(nil)
)

// visibleBelow reports whether name in the directory dirRel (of node dir,
// whose cached branch descriptors it uses; may be nil) would still resolve
// from the branches of ps.layers below branch b once the object in b is
// gone.
func (u *Union) visibleBelow(ps nodeState, dirRel string, dir *node, name string, b int) bool {
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
	_, _, err := u.lookupIn(below, dirRel, dir, name)
	return err == nil
}

// inPlaceWhiteout reports whether the whiteout for name sits at the name
// itself (overlay format) rather than beside it (".wh.NAME").
func (u *Union) inPlaceWhiteout(name string) bool {
	return u.cfg.Whiteouts == FormatOverlay || len(name)+len(whPrefix) > maxNameLen
}

// whiteout hides name in the directory dirfd of an rw branch. In the aufs
// format it makes a ".wh.NAME" file beside the name. In the overlay format,
// and for names too long for the aufs prefix, it puts an overlay whiteout at
// the name itself: a 0/0 character device where mknod is allowed, else an
// empty file with the overlay.whiteout xattr (in a directory marked
// opaque=x). An object already at name is replaced atomically. Character
// device whiteouts are hard links of one shared inode, as overlayfs makes
// them: no inode is allocated per whiteout.
func (u *Union) whiteout(b int, dirfd int, name string) error {
	if !u.inPlaceWhiteout(name) {
		fd, err := sys.OpenBeneath(dirfd, whPrefix+name, unix.O_WRONLY|unix.O_CREAT, 0)
		if err != nil {
			return err
		}
		unix.Close(fd)
		return nil
	}
	work := u.br[b].work
	var st unix.Stat_t
	if err := sys.Fstatat(dirfd, name, &st); isNotFound(err) {
		// Nothing to replace: link the whiteout straight at the name.
		err := u.br[b].linkWhiteout(u, dirfd, name)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNoSharedWhiteout) && !errors.Is(err, unix.EEXIST) {
			return err
		}
	}
	tmp := u.tmpName()
	err := u.br[b].linkWhiteout(u, work, tmp)
	if errors.Is(err, errNoSharedWhiteout) {
		err = sys.Mknodat(work, tmp, unix.S_IFCHR, 0)
	}
	if err != nil {
		fd, ferr := sys.OpenBeneath(work, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0)
		if ferr != nil {
			return ferr
		}
		unix.Close(fd)
		if err := u.setOverlayXattr(work, tmp, "whiteout", "y", 0); err != nil {
			u.discard(work, tmp, false)
			return err
		}
		// Mark the directory as holding xattr whiteouts (opaque "x", as
		// overlayfs since Linux 6.8), unless it is already marked.
		if !mayHoldXattrWhiteouts(dirfd) {
			if err := u.setOverlayXattr(dirfd, ".", "opaque", "x", unix.XATTR_CREATE); err != nil {
				u.discard(work, tmp, false)
				return err
			}
		}
	}
	// A directory at name is swapped out in one step and removed from the
	// staging directory afterwards: rename cannot put a file over it.
	if sys.Fstatat(dirfd, name, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := sys.Renameat2(work, tmp, dirfd, name, unix.RENAME_EXCHANGE); err != nil {
			u.discard(work, tmp, false)
			return err
		}
		if err := removeAllAt(work, tmp, true); err != nil {
			u.log.Warn("cannot remove a replaced directory from the staging directory", "err", err)
		}
		return nil
	}
	if err := sys.Renameat2(work, tmp, dirfd, name, 0); err != nil {
		u.discard(work, tmp, false)
		return err
	}
	return nil
}

// whiteoutAbsent is whiteout for a name known to be absent from the
// directory dirfd of rw branch b: an in-place whiteout is then linked
// straight at the name, without looking first.
func (u *Union) whiteoutAbsent(b int, dirfd int, name string) error {
	if u.inPlaceWhiteout(name) {
		err := u.br[b].linkWhiteout(u, dirfd, name)
		if err == nil || (!errors.Is(err, errNoSharedWhiteout) && !errors.Is(err, unix.EEXIST)) {
			return err
		}
	}
	return u.whiteout(b, dirfd, name)
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
	// Hold off copy-ups of the object while it is removed: one finishing
	// after the removal would bring it back.
	var cs nodeState
	var isDir bool
	if ch := n.GetChild(name); ch != nil {
		cn := asNode(ch)
		cn.cuMu.Lock()
		defer cn.cuMu.Unlock()
		// The kernel looked the name up just before: without Reval the
		// node's state is current (the union is the only writer), unless
		// the object has several names, whose entries may lie in
		// different branches.
		cn.mu.Lock()
		if cn.st.valid && cn.st.plink == "" && !u.cfg.Reval {
			cs, isDir = cn.st, cn.isDir()
		}
		cn.mu.Unlock()
	}
	if !cs.valid {
		var st unix.Stat_t
		if cs, st, err = u.lookupIn(ps, rel, n, name); err != nil {
			return err
		}
		isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
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
	// The name's own entry decides (for an indexed hard link the object
	// may be in the rw branch while this name is still a lower one).
	b := cs.nameBr
	needWh := u.visibleBelow(ps, rel, n, name, b)
	if !u.br[b].rw() {
		// The name is in a read-only branch: hide it from above.
		if err := n.copyUp(ctx); err != nil {
			return err
		}
		if ps, err = n.state(); err != nil {
			return err
		}
		t := u.rwOf(ps)
		if t < 0 || t > b {
			// No rw branch above the name's: it cannot be hidden.
			return unix.EROFS
		}
		dfd, release, err := u.dirFD(n, t, rel)
		if err != nil {
			return err
		}
		defer release()
		// The name is not in t: the lookup would have found it there.
		if err := u.whiteoutAbsent(t, dfd, name); err != nil {
			return err
		}
		if ref, ok := u.plinkOf(cs.br, cs.bino); ok && cs.plink != "" {
			ref.pending.Add(-1)
		}
		return nil
	}
	dfd, release, err := u.dirFD(n, b, rel)
	if err != nil {
		return err
	}
	defer release()
	// The branch object goes away (its last name, for a file): its inode
	// number may be reused by a new object.
	var bst unix.Stat_t
	if sys.Fstatat(dfd, name, &bst) == nil && (isDir || bst.Nlink <= 1) {
		defer u.forgetAlias(b, bst.Ino)
	}
	if needWh && u.inPlaceWhiteout(name) {
		// The whiteout replaces the object in one rename.
		if err := u.whiteout(b, dfd, name); err != nil {
			return err
		}
		if isDir {
			n.dropChildFDs(name)
		}
		return nil
	}
	if needWh {
		// Whiteout first: the object hides it until it is removed, and no
		// lower name shows in between.
		if err := u.whiteout(b, dfd, name); err != nil {
			return err
		}
	}
	if isDir {
		// Only bookkeeping is left inside (whiteouts, opaque marker).
		if err := removeAllAt(dfd, name, true); err != nil {
			return err
		}
		n.dropChildFDs(name)
		return nil
	}
	return sys.Unlinkat(dfd, name, 0)
}

// dropChildFDs closes the cached descriptors of the removed directory
// name: a directory made at the name later may reuse its inode number, and
// with it its node.
func (n *node) dropChildFDs(name string) {
	if ch := n.GetChild(name); ch != nil {
		asNode(ch).dropFDs()
	}
}

// Unlink removes a non-directory.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return fs.ToErrno(n.remove(ctx, name, false))
}

// Rmdir removes a directory that is empty through the union.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return fs.ToErrno(n.remove(ctx, name, true))
}

// setOverlayXattr sets the overlay attribute key on name in dirfd: in the
// trusted namespace where the daemon may (root in the initial user
// namespace), else in the user namespace, as overlayfs's userxattr.
func (u *Union) setOverlayXattr(dirfd int, name, key, val string, flags int) error {
	if u.privileged {
		err := sys.Lsetxattr(dirfd, name, "trusted.overlay."+key, []byte(val), flags)
		if err == nil || !errors.Is(err, unix.EPERM) {
			return err
		}
	}
	return sys.Lsetxattr(dirfd, name, "user.overlay."+key, []byte(val), flags)
}
