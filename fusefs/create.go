package fusefs

import (
	"context"
	"errors"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urun-dev/urun/internal/cleanup"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

var (
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeMknoder   = (*node)(nil)
	_ fs.NodeSymlinker = (*node)(nil)
	_ fs.NodeLinker    = (*node)(nil)
)

// whKind says what hides a lower name in the rw branch where an object is
// about to be created.
type whKind int

const (
	whNone    whKind = iota
	whAUFS           // a ".wh.NAME" file beside the name
	whInPlace        // an overlay-format whiteout at the name itself
)

// target is the rw branch directory where a new child is made.
type target struct {
	b    int
	dfd  int
	name string
	wh   whKind
}

func (t *target) Close() { unix.Close(t.dfd) }

// createTarget applies aufs's tdp create policy: the child is made in the
// branch of its parent directory, which is first copied up to an rw branch
// if it lives in a read-only one.
func (n *node) createTarget(ctx context.Context, name string) (*target, error) {
	if isMetaName(name) {
		return nil, unix.EINVAL
	}
	if len(name) > maxNameLen {
		return nil, unix.ENAMETOOLONG
	}
	if n.u.topRW < 0 {
		return nil, unix.EROFS
	}
	if err := n.copyUp(ctx); err != nil {
		return nil, err
	}
	ps, err := n.state()
	if err != nil {
		return nil, err
	}
	b := n.u.rwOf(ps)
	if b < 0 {
		return nil, unix.EROFS
	}
	dfd, err := sys.OpenBeneath(n.u.br[b].fd, n.rel(), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	t := &target{b: b, dfd: dfd, name: name}
	var st unix.Stat_t
	if err := sys.Fstatat(dfd, name, &st); err == nil {
		if !isWhiteoutAt(dfd, name, &st) {
			t.Close()
			return nil, unix.EEXIST
		}
		t.wh = whInPlace
	} else if len(name)+len(whPrefix) <= maxNameLen && exists(dfd, whPrefix+name) {
		t.wh = whAUFS
	}
	return t, nil
}

// owner returns the ids a new object of the caller gets: the caller's, with
// the group of a set-group-ID parent. ok is false where the daemon cannot
// give them (unprivileged, and no stat overrides).
func (n *node) owner(ctx context.Context, t *target) (uid, gid int, ok bool) {
	if !n.u.privileged && !n.u.br[t.b].writeOverride {
		return 0, 0, false
	}
	c, has := fuse.FromContext(ctx)
	if !has {
		return 0, 0, false
	}
	su, uok := stored(n.u.cfg.UIDMap, c.Uid)
	sg, gok := stored(n.u.cfg.GIDMap, c.Gid)
	if !uok || !gok {
		// The caller's ids are outside the mapping: the object keeps the
		// daemon's.
		return 0, 0, false
	}
	uid, gid = int(su), int(sg)
	var pst unix.Stat_t
	if sys.Fstatat(t.dfd, ".", &pst) == nil {
		n.u.overrideStat(t.b, t.dfd, ".", &pst)
		if pst.Mode&unix.S_ISGID != 0 {
			gid = int(pst.Gid)
		}
	}
	return uid, gid, true
}

// make creates a child through mk, which makes the object as name in dirfd.
// Over an in-place whiteout the object is staged and renamed over it; over
// an aufs whiteout the whiteout is removed once the object exists (a new
// directory is first made opaque).
func (n *node) make(ctx context.Context, name string, isDir, chown bool, mk func(dirfd int, name string) error) (_ *target, st unix.Stat_t, err error) {
	t, err := n.createTarget(ctx, name)
	if err != nil {
		return nil, st, err
	}
	var undo cleanup.Stack
	defer undo.Run()
	undo.Add(t.Close)
	u := n.u
	dirfd, at := t.dfd, name
	if t.wh == whInPlace {
		dirfd, at = u.br[t.b].work, u.tmpName()
	}
	if err := mk(dirfd, at); err != nil {
		return nil, st, err
	}
	undo.Add(func() { u.discard(dirfd, at, isDir) })
	if uid, gid, ok := n.owner(ctx, t); ok && chown {
		if err := u.giveOwner(t.b, dirfd, at, uid, gid); err != nil {
			return nil, st, err
		}
	}
	if isDir && t.wh != whNone {
		if err := u.markOpaque(dirfd, at); err != nil {
			return nil, st, err
		}
	}
	if t.wh == whInPlace {
		// Swap the new object with the whiteout (rename cannot put a
		// directory over a file), then drop the whiteout.
		if err := sys.Renameat2(dirfd, at, t.dfd, name, unix.RENAME_EXCHANGE); err != nil {
			return nil, st, err
		}
		if err := sys.Unlinkat(dirfd, at, 0); err != nil {
			u.log.Warn("cannot remove a replaced whiteout from the staging directory", "err", err)
		}
	}
	if t.wh == whAUFS {
		if err := sys.Unlinkat(t.dfd, whPrefix+name, 0); ignoreNotExist(err) != nil {
			u.log.Warn("cannot remove whiteout", "name", name, "err", err)
		}
	}
	// The object is in place: from here on nothing is undone.
	undo.Release()
	if err := sys.Fstatat(t.dfd, name, &st); err != nil {
		t.Close()
		return nil, st, err
	}
	u.overrideStat(t.b, t.dfd, name, &st)
	return t, st, nil
}

// giveOwner gives the new object name in dirfd of branch b its owner: in
// its inode, or in a stat override (with the mode it was made with) where
// branch b keeps them there.
func (u *Union) giveOwner(b, dirfd int, name string, uid, gid int) error {
	var st unix.Stat_t
	if err := sys.Fstatat(dirfd, name, &st); err != nil {
		return err
	}
	if u.storesOverride(b, st.Mode&unix.S_IFMT) {
		if err := u.writeOverride(b, dirfd, name, statOverride{uint32(uid), uint32(gid), st.Mode}); err != nil {
			return err
		}
		return sys.Fchmodat(dirfd, name, u.physicalMode(b, st.Mode))
	}
	if !u.privileged {
		return nil // the daemon's owner, which it cannot change
	}
	return sys.Fchownat(dirfd, name, uid, gid)
}

// markOpaque makes the directory name in dirfd stop the merge with lower
// branches: the overlay.opaque xattr in the overlay format, the
// ".wh..wh..opq" marker in the aufs format.
func (u *Union) markOpaque(dirfd int, name string) error {
	if u.cfg.Whiteouts == FormatOverlay {
		if err := u.dropXattrWhiteouts(dirfd, name); err != nil {
			return err
		}
		return u.setOverlayXattr(dirfd, name, "opaque", "y", 0)
	}
	fd, err := sys.OpenBeneath(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// O_EXCL: an existing marker (mode 0) is not opened again, which an
	// unprivileged daemon may not do.
	f, err := sys.OpenBeneath(fd, whOpaque, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return err
	}
	unix.Close(f)
	return nil
}

func (n *node) childOut(ctx context.Context, t *target, st *unix.Stat_t, out *fuse.EntryOut) *fs.Inode {
	cs := nodeState{valid: true, br: t.b, nameBr: t.b, bino: st.Ino}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		cs.layers = []int{t.b}
	}
	return n.newChildGen(ctx, cs, st, &out.Attr, true)
}

// Create makes and opens a regular file.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	fd := -1
	oflags := int(flags&openFlags)&^unix.O_TRUNC | unix.O_CREAT | unix.O_EXCL
	t, st, err := n.make(ctx, name, false, true, func(dirfd int, name string) error {
		var err error
		fd, err = sys.OpenBeneath(dirfd, name, oflags, mode&07777)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, nil, 0, fs.ToErrno(err)
	}
	defer t.Close()
	ch := n.childOut(ctx, t, &st, out)
	s, _ := asNode(ch).state()
	return ch, n.u.newFile(asNode(ch), fd, s, flags), n.u.openFlags(s.br), 0
}

// Mkdir makes a directory; over a whiteout it is opaque.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, st, err := n.make(ctx, name, true, true, func(dirfd int, name string) error {
		return sys.Mkdirat(dirfd, name, mode&07777)
	})
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	defer t.Close()
	return n.childOut(ctx, t, &st, out), 0
}

// Mknod makes a fifo, socket or device node (where the daemon may).
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if mode&unix.S_IFMT == unix.S_IFCHR && dev == 0 {
		// A 0/0 device is a whiteout: it could never be seen (overlayfs
		// refuses it too).
		return nil, syscall.EPERM
	}
	t, st, err := n.make(ctx, name, false, true, func(dirfd int, name string) error {
		return sys.Mknodat(dirfd, name, mode, int(dev))
	})
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	defer t.Close()
	return n.childOut(ctx, t, &st, out), 0
}

// Symlink makes a symbolic link.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t, st, err := n.make(ctx, name, false, true, func(dirfd int, name string) error {
		return sys.Symlinkat(target, dirfd, name)
	})
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	defer t.Close()
	return n.childOut(ctx, t, &st, out), 0
}

// Link makes a hard link to an object, copying the object up first.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if err := tn.copyUp(ctx); err != nil {
		return nil, fs.ToErrno(err)
	}
	ts, src, _, err := tn.stat()
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	defer src.Close()
	// The new name must live in the object's branch.
	if err := n.copyUp(ctx); err != nil {
		return nil, fs.ToErrno(err)
	}
	ps, err := n.state()
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	if n.u.rwOf(ps) != ts.br {
		return nil, syscall.EXDEV
	}
	t, st, err := n.make(ctx, name, false, false, func(dirfd int, name string) error {
		return sys.Linkat(src.fd, src.name, dirfd, name)
	})
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	defer t.Close()
	// The new name is the same inode: hand back the target's node.
	fillAttr(&out.Attr, &st, tn.StableAttr().Ino, false)
	n.u.mapAttr(&out.Attr)
	return tn.EmbeddedInode(), 0
}

// dropXattrWhiteouts removes the xattr whiteouts of the directory name in
// dirfd before it becomes opaque: "y" replaces the "x" marker under which
// such files count as whiteouts, and an opaque directory needs none.
func (u *Union) dropXattrWhiteouts(dirfd int, name string) error {
	fd, err := sys.OpenBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !mayHoldXattrWhiteouts(fd) {
		return nil
	}
	ents, err := sys.ReadDir(fd)
	if err != nil {
		return err
	}
	for _, e := range ents {
		var st unix.Stat_t
		if e.Type == unix.DT_REG && sys.Fstatat(fd, e.Name, &st) == nil && isXattrWhiteout(fd, e.Name, &st, true) {
			if err := sys.Unlinkat(fd, e.Name, 0); ignoreNotExist(err) != nil {
				return err
			}
		}
	}
	return nil
}
