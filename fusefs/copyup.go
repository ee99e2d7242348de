package fusefs

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// copyUp makes sure the node's object lives in an rw branch, copying it
// (and first its parent directories) up from a read-only branch. The copy is
// made in the rw branch's staging directory, given its owner, mode,
// extended attributes and times, and only then renamed into place: a crash
// leaves either no copy or a whole one.
func (n *node) copyUp(ctx context.Context) error { return n.copyUpFor(ctx, false) }

// copyUpFor is copyUp, for a change of metadata only when meta (see
// copyUpWith): then a metacopy file in an rw branch needs nothing more.
func (n *node) copyUpFor(ctx context.Context, meta bool) error {
	u := n.u
	if u.topRW < 0 {
		return unix.EROFS
	}
	s, err := n.state()
	if err != nil {
		return err
	}
	if u.rwOf(s) >= 0 && (meta || !s.meta) {
		return nil
	}
	n.cuMu.Lock()
	defer n.cuMu.Unlock()
	return n.copyUpWith(ctx, meta)
}

// rwOf returns the rw branch where an object can be changed: for a
// directory the topmost rw branch among its merged ones, for another object
// its own branch if that is rw; -1 if there is none.
func (u *Union) rwOf(s nodeState) int {
	if s.layers != nil {
		for _, b := range s.layers {
			if u.br[b].rw() {
				return b
			}
		}
		return -1
	}
	if u.br[s.br].rw() {
		return s.br
	}
	return -1
}

// copyUpLocked is copyUp with n.cuMu held: namespace operations on n (unlink,
// rename) hold it across their own change so that a copy-up cannot undo it.
func (n *node) copyUpLocked(ctx context.Context) error {
	return n.copyUpWith(ctx, false)
}

// copyUpWith is copyUpLocked; with meta, for a change of metadata only, a
// lower regular file is copied up as a metacopy file (metacopy.go), and
// without it a metacopy file gets its data.
func (n *node) copyUpWith(ctx context.Context, meta bool) error {
	u := n.u
	if u.topRW < 0 {
		return unix.EROFS
	}
	s, err := n.refresh()
	if err != nil {
		return err
	}
	if u.rwOf(s) >= 0 {
		if s.meta && !meta {
			return n.completeData(s)
		}
		return nil
	}
	if n.IsRoot() {
		return unix.EROFS
	}
	name, parent := n.Parent()
	if parent == nil {
		return unix.ENOENT
	}
	pn := asNode(parent)
	if err := pn.copyUp(ctx); err != nil {
		return err
	}
	ps, err := pn.state()
	if err != nil {
		return err
	}
	// aufs's tdp: the copy goes to the rw branch of the parent directory;
	// a file must land above the branch it hides, a directory merges
	// wherever it lands.
	t := u.rwOf(ps)
	if t < 0 || (s.layers == nil && t > s.br) {
		return unix.EROFS
	}
	tb := u.br[t]
	src, err := n.locate(s)
	if err != nil {
		return err
	}
	defer src.Close()
	var st unix.Stat_t
	if err := sys.Fstatat(src.fd, src.name, &st); err != nil {
		return err
	}
	u.overrideStat(s.br, src.fd, src.name, &st)
	dst, err := sys.OpenBeneath(tb.fd, parent.Path(nil), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dst)

	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	origin := devIno{u.br[s.br].dev, st.Ino}
	var ref plinkRef
	linked := false
	if !isDir && st.Nlink > 1 {
		if r, ok := u.plinkOf(s.br, st.Ino); ok && r.b == t {
			// Another name of this object was copied up already: link to it.
			if err := u.asWritable(dst, func() error { return sys.Linkat(tb.plink, r.name, dst, name) }); err != nil {
				return err
			}
			r.pending.Add(-1)
			ref, linked = r, true
		}
	}
	var newIno uint64
	metacopied := false
	if !linked {
		tmp := u.tmpName()
		if meta && s.plink == "" && u.metacopyEligible(&st) {
			if metacopied, err = u.stageMetacopy(src, &st, t, tmp); err != nil {
				return err
			}
		}
		if !metacopied {
			if err := u.copyObject(src, &st, t, tmp); err != nil {
				return err
			}
		}
		var nst unix.Stat_t
		if err := sys.Fstatat(tb.work, tmp, &nst); err != nil {
			u.discard(tb.work, tmp, isDir)
			return err
		}
		newIno = nst.Ino
		if !isDir && st.Nlink > 1 {
			ref = plinkRef{b: t, name: strconv.FormatUint(origin.dev, 16) + "_" + strconv.FormatUint(origin.ino, 16), ino: newIno, pending: new(atomic.Int64)}
			ref.pending.Store(int64(st.Nlink) - 1)
			if err := sys.Linkat(tb.work, tmp, tb.plink, ref.name); err != nil {
				u.log.Warn("hard-link index unavailable; other names of this file will be copied separately", "err", err)
				ref = plinkRef{}
			}
		}
		// Renaming into the parent changes its times: put them back, as
		// overlayfs does.
		var pst unix.Stat_t
		if err := sys.Fstatat(dst, "", &pst); err != nil {
			u.discard(tb.work, tmp, isDir)
			return err
		}
		err := u.asWritable(dst, func() error { return sys.Renameat2(tb.work, tmp, dst, name, unix.RENAME_NOREPLACE) })
		if err != nil {
			u.discard(tb.work, tmp, isDir)
			if ref.name != "" {
				_ = sys.Unlinkat(tb.plink, ref.name, 0)
			}
			if errors.Is(err, unix.EEXIST) {
				// The directory's rename copied its whole tree up
				// meanwhile, this object included: use that copy.
				_, err = n.refresh()
			}
			return err
		}
		u.restoreTimes(dst, &pst)
		if isDir && !u.privileged {
			// Staged writable for the daemon (see copyObject); now the
			// directory's own mode.
			if err := sys.Fchmodat(dst, name, u.physicalMode(t, st.Mode)); err != nil {
				return err
			}
		}
		if ref.name != "" {
			u.inoMu.Lock()
			u.plinks[origin] = ref
			u.plinks[devIno{tb.dev, newIno}] = ref
			u.inoMu.Unlock()
		}
		u.setAlias(t, newIno, n.StableAttr().Ino)
	} else {
		newIno = ref.ino
	}
	ns := nodeState{valid: true, br: t, nameBr: t, bino: newIno}
	if isDir {
		ns.layers = insertLayer(s.layers, t)
		ns.br, ns.nameBr = ns.layers[0], ns.layers[0]
	} else if ref.name != "" {
		ns.plink = ref.name
	} else if metacopied {
		ns.meta, ns.data = true, s.br
	}
	n.setState(ns)
	// The copy has a new ctime (and a directory new times from the moves
	// into it): drop the kernel's cached attributes.
	n.NotifyContent(-1, 0)
	return nil
}

// discard removes a staged object after a failed copy-up.
func (u *Union) discard(dirfd int, name string, isDir bool) {
	if isDir {
		_ = removeAllAt(dirfd, name, true)
		return
	}
	_ = sys.Unlinkat(dirfd, name, 0)
}

// copyObject copies the object src (described by st) to name in the
// staging directory of rw branch t, with its data, owner, mode, extended
// attributes and times. On error nothing is left behind.
func (u *Union) copyObject(src at, st *unix.Stat_t, t int, name string) (err error) {
	dirfd := u.br[t].work
	typ := st.Mode & unix.S_IFMT
	defer func() {
		if err != nil {
			u.discard(dirfd, name, typ == unix.S_IFDIR)
		}
	}()
	switch typ {
	case unix.S_IFREG:
		if err := u.copyFile(src, st, dirfd, name); err != nil {
			return err
		}
	case unix.S_IFDIR:
		if err := sys.Mkdirat(dirfd, name, 0o700); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := sys.Readlinkat(src.fd, src.name)
		if err != nil {
			return err
		}
		if err := sys.Symlinkat(target, dirfd, name); err != nil {
			return err
		}
	default:
		if err := sys.Mknodat(dirfd, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	}
	return u.copyMeta(src, st, t, name)
}

func (u *Union) copyFile(src at, st *unix.Stat_t, dirfd int, name string) error {
	sfd, err := sys.OpenBeneath(src.fd, src.name, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	dfd, err := sys.OpenBeneath(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := sys.CopyData(dfd, sfd, st.Size); err != nil {
		return err
	}
	if !u.cfg.NoFsync {
		if err := sys.Fdatasync(dfd); err != nil {
			return err
		}
	}
	return nil
}

// copyMeta gives name in the staging directory of rw branch t the owner,
// mode, extended attributes and times of src. Owners the daemon may not set
// (rootless) are left as they are; the union's private attributes are not
// copied. Where t keeps owners and modes in stat overrides, they go there.
func (u *Union) copyMeta(src at, st *unix.Stat_t, t int, name string) error {
	dirfd := u.br[t].work
	typ := st.Mode & unix.S_IFMT
	override := u.storesOverride(t, typ)
	if override {
		if err := u.writeOverride(t, dirfd, name, statOverride{st.Uid, st.Gid, st.Mode}); err != nil {
			return err
		}
	} else if err := sys.Fchownat(dirfd, name, int(st.Uid), int(st.Gid)); err != nil {
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
			return err
		}
		u.log.Debug("copy-up keeps the daemon's owner", "name", name, "err", err)
	}
	names, err := sys.Llistxattr(src.fd, src.name)
	if err != nil && !errors.Is(err, unix.ENOTSUP) {
		return err
	}
	for _, x := range names {
		if isPrivateXattr(x) {
			continue
		}
		v, err := sys.GetxattrAll(src.fd, src.name, x)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return err
		}
		if err := sys.Lsetxattr(dirfd, name, x, v, 0); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
				u.log.Warn("copy-up drops an attribute the daemon may not set", "attr", x, "err", err)
				continue
			}
			return err
		}
	}
	// The mode after the attributes: an unprivileged daemon may not set
	// user.* attributes on a file without write permission.
	if typ != unix.S_IFLNK {
		mode := u.physicalMode(t, st.Mode)
		if typ == unix.S_IFDIR && !u.privileged {
			// An unprivileged daemon must be able to rename the directory
			// into place and to move children into it: the copy-up sets
			// the directory's own mode once it is in place.
			mode |= 0o700
		}
		if err := sys.Fchmodat(dirfd, name, mode); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{
		{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
	}
	return sys.Utimensat(dirfd, name, ts)
}

// restoreTimes puts back the access and modification times of the
// directory dirfd recorded in st (when st was filled).
func (u *Union) restoreTimes(dirfd int, st *unix.Stat_t) {
	if st.Ino == 0 {
		return
	}
	ts := []unix.Timespec{
		{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec},
		{Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec},
	}
	if err := sys.UtimensFD(dirfd, ts); err != nil {
		u.log.Warn("copy-up: cannot restore the parent directory's times", "err", err)
	}
}

// asWritable runs fn, which changes entries of the directory dirfd. An
// unprivileged daemon copying up into a directory it owns but may not write
// (a read-only lower directory, copied up with its mode) makes it writable
// for the duration of fn.
func (u *Union) asWritable(dirfd int, fn func() error) error {
	err := fn()
	if err == nil || u.privileged || !errors.Is(err, unix.EACCES) {
		return err
	}
	var st unix.Stat_t
	if sys.Fstatat(dirfd, "", &st) != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o300 == 0o300 {
		return err
	}
	if cerr := sys.ChmodFD(dirfd, st.Mode&07777|0o300); cerr != nil {
		return err
	}
	err = fn()
	if cerr := sys.ChmodFD(dirfd, st.Mode&07777); cerr != nil {
		u.log.Warn("copy-up: cannot restore a directory's mode", "err", cerr)
		if err == nil {
			err = cerr
		}
	}
	return err
}

// insertLayer adds branch t to a directory's merged branches, in stack
// order.
func insertLayer(layers []int, t int) []int {
	out := make([]int, 0, len(layers)+1)
	done := false
	for _, b := range layers {
		if !done && t < b {
			out = append(out, t)
			done = true
		}
		out = append(out, b)
	}
	if !done {
		out = append(out, t)
	}
	return out
}
