package fusefs

import (
	"context"
	"errors"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

var _ fs.NodeRenamer = (*node)(nil)

// Rename moves name to newParent/newName. Files are copied up and renamed in
// the rw branch, with a whiteout left at the old name where a lower branch
// still holds it. A directory with lower contents is moved by first copying
// its whole merged tree up and marking it opaque (no EXDEV, at the cost of a
// copy of the tree); see the README.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return fs.ToErrno(n.rename(ctx, name, newParent, newName, flags))
}

func (n *node) rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) error {
	u := n.u
	np, ok := newParent.(*node)
	if !ok {
		return unix.EXDEV
	}
	if isMetaName(name) {
		return unix.ENOENT
	}
	if isMetaName(newName) {
		return unix.EINVAL
	}
	if len(newName) > maxNameLen {
		return unix.ENAMETOOLONG
	}
	if flags&^uint32(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return unix.EINVAL
	}
	if u.topRW < 0 {
		return unix.EROFS
	}
	exchange := flags&unix.RENAME_EXCHANGE != 0

	src, err := n.child(ctx, name)
	if err != nil {
		return err
	}
	_, sa, sst, err := src.stat()
	if err != nil {
		return err
	}
	sa.Close()
	srcDir := sst.Mode&unix.S_IFMT == unix.S_IFDIR

	nps, err := np.state()
	if err != nil {
		return err
	}
	var dst *node
	dstDir := false
	if _, dstSt, derr := u.lookupChild(nps, np.rel(), newName); derr == nil {
		if flags&unix.RENAME_NOREPLACE != 0 {
			return unix.EEXIST
		}
		if dst, err = np.child(ctx, newName); err != nil {
			return err
		}
		if dst == src {
			return nil // two names of one object: nothing to do
		}
		dstDir = dstSt.Mode&unix.S_IFMT == unix.S_IFDIR
		if !exchange {
			switch {
			case srcDir && !dstDir:
				return unix.ENOTDIR
			case !srcDir && dstDir:
				return unix.EISDIR
			case dstDir:
				ds, err := dst.state()
				if err != nil {
					return err
				}
				names, err := u.mergedNames(ds, dst.rel())
				if err != nil {
					return err
				}
				if len(names) > 0 {
					return unix.ENOTEMPTY
				}
			}
		}
	} else if exchange {
		return unix.ENOENT
	} else if !isNotFound(derr) {
		return derr
	}

	// Hold off copy-ups of both objects during the move (see remove).
	unlock := lockNodes(src, dst)
	defer unlock()

	// Bring both ends into the rw branch.
	if err := src.copyUpAll(ctx, srcDir); err != nil {
		return err
	}
	if err := n.linkUpName(ctx, name); err != nil {
		return err
	}
	if err := np.copyUp(ctx); err != nil {
		return err
	}
	if exchange {
		if err := dst.copyUpAll(ctx, dstDir); err != nil {
			return err
		}
		if err := np.linkUpName(ctx, newName); err != nil {
			return err
		}
	}
	ss, err := src.state()
	if err != nil {
		return err
	}
	if nps, err = np.state(); err != nil {
		return err
	}
	t := u.rwOf(ss)
	if t < 0 || t != ss.br {
		// A read-only branch above the rw one holds the object: its old
		// name could not be hidden.
		return unix.EROFS
	}
	if u.rwOf(nps) != t {
		// Several rw branches: the two directories live in different ones.
		return unix.EXDEV
	}
	tb := u.br[t]
	sdir, err := sys.OpenBeneath(tb.fd, n.rel(), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sdir)
	ddir, err := sys.OpenBeneath(tb.fd, np.rel(), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ddir)

	// A moved directory carries its whole tree: nothing from lower branches
	// may merge into it at its new place.
	if srcDir {
		if err := u.markOpaque(sdir, name); err != nil {
			return err
		}
	}
	if exchange && dstDir {
		if err := u.markOpaque(ddir, newName); err != nil {
			return err
		}
	}

	var st unix.Stat_t
	dstWhAUFS, dstWhInPlace := false, false
	if !exchange {
		if sys.Fstatat(ddir, newName, &st) == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink <= 1 {
				defer u.forgetAlias(t, st.Ino)
			}
			switch {
			case st.Mode&unix.S_IFMT == unix.S_IFDIR:
				// An empty-through-the-union directory being replaced:
				// only bookkeeping is left in it.
				if err := removeAllAt(ddir, newName, false); err != nil {
					return err
				}
			case isWhiteoutAt(ddir, newName, &st):
				dstWhInPlace = true
			}
		}
		dstWhAUFS = len(newName)+len(whPrefix) <= maxNameLen && exists(ddir, whPrefix+newName)
	}

	ps, err := n.state()
	if err != nil {
		return err
	}
	leaveWh := !exchange && u.visibleBelow(ps, n.rel(), n, name, t)
	longName := u.inPlaceWhiteout(name)
	if dstWhInPlace {
		// The target name holds a whiteout: swap it with the source (a
		// directory cannot be renamed over a file). The whiteout lands at
		// the old name, where it is kept if a lower branch still holds that
		// name.
		if err := sys.Renameat2(sdir, name, ddir, newName, unix.RENAME_EXCHANGE); err != nil {
			return err
		}
		if !leaveWh || !longName {
			if err := sys.Unlinkat(sdir, name, 0); err != nil {
				u.log.Warn("rename: cannot remove the whiteout swapped out of the target", "err", err)
			}
		}
		if leaveWh && !longName {
			if err := u.whiteout(t, sdir, name); err != nil {
				return err
			}
		}
	} else {
		if leaveWh && !longName {
			if err := u.whiteout(t, sdir, name); err != nil {
				return err
			}
		}
		rflags := uint(flags & (unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE))
		if err := sys.Renameat2(sdir, name, ddir, newName, rflags); err != nil {
			if leaveWh && !longName {
				_ = sys.Unlinkat(sdir, whPrefix+name, 0)
			}
			return err
		}
		if leaveWh && longName {
			if err := u.whiteout(t, sdir, name); err != nil {
				u.log.Warn("rename: cannot leave a whiteout at the old name", "name", name, "err", err)
			}
		}
	}
	if dstWhAUFS {
		_ = sys.Unlinkat(ddir, whPrefix+newName, 0)
	}
	invalidateTree(src)
	if dst != nil {
		invalidateTree(dst)
	}
	return nil
}

// lockNodes takes the copy-up locks of a and b (which may be nil or a),
// in a fixed order, and returns their release.
func lockNodes(a, b *node) func() {
	if b == nil || b == a {
		a.cuMu.Lock()
		return a.cuMu.Unlock
	}
	first, second := a, b
	if uintptr(unsafe.Pointer(b)) < uintptr(unsafe.Pointer(a)) {
		first, second = b, a
	}
	first.cuMu.Lock()
	second.cuMu.Lock()
	return func() {
		second.cuMu.Unlock()
		first.cuMu.Unlock()
	}
}

// child returns the node of a child name, looking it up if the kernel has
// not.
func (n *node) child(ctx context.Context, name string) (*node, error) {
	if ch := n.GetChild(name); ch != nil {
		return asNode(ch), nil
	}
	ps, err := n.state()
	if err != nil {
		return nil, err
	}
	cs, st, err := n.u.lookupChild(ps, n.rel(), name)
	if err != nil {
		return nil, err
	}
	var attr fuse.Attr
	ci := n.newChild(ctx, cs, &st, &attr)
	n.AddChild(name, ci, true)
	return asNode(ci), nil
}

// invalidateTree makes n and every known descendant resolve again, and
// drops the kernel's cached attributes of them (a tree copied up for a
// rename has new ctimes).
func invalidateTree(n *node) {
	n.invalidate()
	n.NotifyContent(-1, 0)
	for _, ch := range n.Children() {
		invalidateTree(asNode(ch))
	}
}

// copyUpAll copies n up; a directory with its whole merged tree.
func (n *node) copyUpAll(ctx context.Context, dir bool) error {
	if err := n.copyUpLocked(ctx); err != nil {
		return err
	}
	if !dir {
		return nil
	}
	s, err := n.state()
	if err != nil {
		return err
	}
	return n.u.materialize(s, n.rel(), s.br)
}

// materialize copies into rw branch t every object of the merged directory
// rel (state s) that does not live in t yet, recursively. Copied objects keep
// their inode numbers.
func (u *Union) materialize(s nodeState, rel string, t int) error {
	if len(s.layers) == 1 && s.layers[0] == t {
		return nil
	}
	ents, err := u.mergedEntries(s, rel)
	if err != nil {
		return err
	}
	tb := u.br[t]
	tdir, err := sys.OpenBeneath(tb.fd, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(tdir)
	for _, e := range ents {
		cs, st, err := u.lookupChild(s, rel, e.Name)
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return err
		}
		crel := joinRel(rel, e.Name)
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		copied := cs.br != t
		if !copied && cs.meta {
			// Moved away from its data's path: give it its data.
			if err := u.completeAt(cs, rel, e.Name, t, tdir); err != nil {
				return err
			}
		}
		if copied {
			if err := u.copyInto(cs, rel, e.Name, &st, t, tdir); err != nil {
				return err
			}
			if isDir {
				cs.layers = append([]int{t}, cs.layers...)
			}
			cs.br = t
		}
		if isDir {
			if err := u.materialize(cs, crel, t); err != nil {
				return err
			}
		}
		if copied && isDir {
			// Filling the copy changed its times; an unprivileged daemon
			// also staged it writable.
			if !u.privileged {
				if err := sys.Fchmodat(tdir, e.Name, u.physicalMode(t, st.Mode)); err != nil {
					return err
				}
			}
			ts := []unix.Timespec{{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec}, {Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec}}
			if err := sys.Utimensat(tdir, e.Name, ts); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyInto copies the object name of directory rel, found in branch cs.br,
// into the directory tdir of rw branch t, atomically, keeping its inode
// number.
func (u *Union) copyInto(cs nodeState, rel, name string, st *unix.Stat_t, t, tdir int) error {
	b := u.br[cs.br]
	var src at
	if cs.plink != "" {
		src = at{fd: b.plink, name: cs.plink}
	} else {
		fd, err := sys.OpenBeneath(b.fd, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		src = at{fd: fd, name: name, own: true}
	}
	defer src.Close()
	tb := u.br[t]
	tmp := u.tmpName()
	if err := u.copyObject(src, st, t, tmp); err != nil {
		return err
	}
	var nst unix.Stat_t
	if err := sys.Fstatat(tb.work, tmp, &nst); err != nil {
		u.discard(tb.work, tmp, st.Mode&unix.S_IFMT == unix.S_IFDIR)
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if err := u.asWritable(tdir, func() error { return sys.Renameat2(tb.work, tmp, tdir, name, unix.RENAME_NOREPLACE) }); err != nil {
		u.discard(tb.work, tmp, isDir)
		if errors.Is(err, unix.EEXIST) {
			// A copy-up of this object finished meanwhile: its copy is
			// whole (renamed into place), use it.
			return nil
		}
		return err
	}
	u.setAlias(t, nst.Ino, u.inoFor(cs.br, st.Ino))
	return nil
}

// linkUpName gives name, a lower name of an indexed hard link whose object
// is already in an rw branch, its own entry there: a hard link to the
// index entry.
func (n *node) linkUpName(ctx context.Context, name string) error {
	u := n.u
	ps, err := n.state()
	if err != nil {
		return err
	}
	cs, _, err := u.lookupChild(ps, n.rel(), name)
	if err != nil || cs.plink == "" || cs.nameBr == cs.br {
		return err
	}
	if err := n.copyUp(ctx); err != nil {
		return err
	}
	if ps, err = n.state(); err != nil {
		return err
	}
	if ps.br != cs.br {
		return unix.EXDEV
	}
	b := u.br[cs.br]
	dfd, err := sys.OpenBeneath(b.fd, n.rel(), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := u.asWritable(dfd, func() error { return sys.Linkat(b.plink, cs.plink, dfd, name) }); err != nil {
		return err
	}
	if ref, ok := u.plinkOf(cs.br, cs.bino); ok {
		ref.pending.Add(-1)
	}
	return nil
}
