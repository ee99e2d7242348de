package fusefs

import (
	"context"
	"errors"
	"os"
	"path"
	"strings"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// Metadata-only copy-up (overlayfs's metacopy=on, Config.Metacopy).
//
// A change of the owner, mode, times or extended attributes of a lower
// regular file with one link copies up its metadata only: the upper file
// is sparse, as long as the lower one, and carries the overlay.metacopy
// attribute (trusted.overlay.metacopy, or user.overlay.metacopy for an
// unprivileged daemon), as kernel overlayfs writes it. Its data stays the
// lower file at the same path: lookups go on below a metacopy file to the
// branch holding it (nodeState.data), reads are served from it, and the
// union shows the upper's attributes with the lower's block count. Any
// change of the data (an open for writing, a truncate, a hard link, a
// rename) first completes the copy-up: the lower data and the upper's
// metadata are staged in the work directory, without the metacopy
// attribute, and renamed over the metacopy file, so that a crash leaves
// either the metacopy file or the whole copy. ufs writes no redirect or
// origin attributes: the data of a metacopy file it makes is found by its
// path, which is why a rename completes the copy first. It follows the
// redirect kernel overlayfs gives a metacopy file it renames.

// Extended attributes of overlayfs's metacopy files.
var (
	metacopyXattrs = []string{"trusted.overlay.metacopy", "user.overlay.metacopy"}
	redirectXattrs = []string{"trusted.overlay.redirect", "user.overlay.redirect"}
)

// dataRedirected marks, in nodeState.data, a metacopy file whose data an
// overlay redirect names (nodeState.dataRel), until it is found.
const dataRedirected = -2

// dataBr returns the branch holding the object's data: the lower branch of
// a metacopy file, else the object's own branch.
func (s nodeState) dataBr() int {
	if s.meta {
		return s.data
	}
	return s.br
}

// probeMeta reports whether the regular file st, found first as name in
// branch br, is a metacopy file whose data the lookup must find further
// down; it marks res accordingly. Without metacopy=on only sparse files
// are examined (a metacopy file has no data blocks), so that the common
// lookup costs no extra system call: those found are refused (see
// checkMetaData), as overlayfs refuses them.
func (u *Union) probeMeta(br *branch, dfd int, dirRel, name string, st *unix.Stat_t, res *nodeState) bool {
	if !u.isMetacopy(br, dfd, name, st) {
		return false
	}
	res.meta, res.data = true, -1
	for _, x := range redirectXattrs {
		v, err := sys.GetxattrAll(dfd, name, x)
		if err != nil {
			continue
		}
		// Kernel overlayfs renamed the metacopy file: an absolute
		// redirect is the data's path from the root, a relative one its
		// name in the same directory.
		r := string(v)
		if strings.HasPrefix(r, "/") {
			r = path.Clean(r)[1:]
		} else {
			r = joinRel(dirRel, r)
		}
		res.data, res.dataRel = dataRedirected, r
		return false
	}
	return true
}

// findRedirected looks for the data of the redirected metacopy file res:
// the topmost branch below it holding a regular file at res.dataRel. As
// ufs follows no directory redirects, the path is taken as it is in every
// branch.
func (u *Union) findRedirected(res *nodeState, top *unix.Stat_t) {
	if res.dataRel == "" || res.dataRel == "." || isMetaName(path.Base(res.dataRel)) {
		return
	}
	dir, name := splitRel(res.dataRel)
	for b := res.br + 1; b < len(u.br); b++ {
		fd, err := sys.OpenBeneath(u.br[b].fd, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = sys.Fstatat(fd, name, &st)
		regular := err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && !isWhiteoutAt(fd, name, &st)
		unix.Close(fd)
		if regular {
			res.data = b
			top.Blocks = st.Blocks
			return
		}
		if err == nil {
			return // another object is there: no data
		}
	}
}

// isMetacopy reports whether the object st, name in dfd of branch br, is a
// metacopy file (examined as probeMeta says).
func (u *Union) isMetacopy(br *branch, dfd int, name string, st *unix.Stat_t) bool {
	if !br.rw() || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if !u.cfg.Metacopy && st.Blocks*512 >= st.Size {
		return false
	}
	found := false
	err := u.asReadable(dfd, name, st, func() error {
		for _, x := range metacopyXattrs {
			_, err := sys.Lgetxattr(dfd, name, x, nil)
			if err == nil {
				found = true
				return nil
			}
			if errors.Is(err, unix.EACCES) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		u.log.Warn("cannot tell whether an upper file is a metacopy file", "name", name, "err", err)
	}
	return found
}

// asReadable runs fn, which reads extended attributes of the regular file
// name in dirfd of the upper (whose stat is st). The user.* attributes an
// unprivileged daemon keeps there need read permission: a file it owns but
// may not read (chmod 000 through the union) is made readable for the
// duration of fn. A crash meanwhile leaves the owner's read bit set.
func (u *Union) asReadable(dirfd int, name string, st *unix.Stat_t, fn func() error) error {
	err := fn()
	if err == nil || u.privileged || !errors.Is(err, unix.EACCES) {
		return err
	}
	var pst unix.Stat_t
	if sys.Fstatat(dirfd, name, &pst) != nil || int(pst.Uid) != os.Geteuid() || pst.Mode&0o400 != 0 ||
		pst.Mode&unix.S_IFMT != unix.S_IFREG || pst.Ino != st.Ino {
		return err
	}
	if cerr := sys.Fchmodat(dirfd, name, pst.Mode&07777|0o400); cerr != nil {
		return err
	}
	err = fn()
	if cerr := sys.Fchmodat(dirfd, name, pst.Mode&07777); cerr != nil {
		u.log.Warn("cannot restore an upper file's mode", "name", name, "err", cerr)
		if err == nil {
			err = cerr
		}
	}
	return err
}

// probeData examines name in branch b (st and err from its stat) for the
// data of the metacopy file res, and reports whether the lookup stops: at
// the data, at a whiteout, or at an object that cannot be the data (res
// then has no data).
func (u *Union) probeData(br *branch, dfd int, name string, err error, st *unix.Stat_t, res *nodeState, top *unix.Stat_t, b int) bool {
	if err != nil {
		if !isNotFound(err) {
			return true
		}
		return br.Perm.honoursWhiteouts() && len(name)+len(whPrefix) <= maxNameLen && exists(dfd, whPrefix+name)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && !isWhiteoutAt(dfd, name, st) {
		res.data = b
		top.Blocks = st.Blocks
	}
	return true
}

// checkMetaData refuses a metacopy file ufs cannot serve: one found
// without metacopy=on, one whose data an overlay redirect names, or one
// whose data no lower branch holds.
func (u *Union) checkMetaData(res nodeState, dirRel, name string) error {
	p := joinRel(dirRel, name)
	switch {
	case !u.cfg.Metacopy:
		u.log.Warn("refusing a metacopy file: its data is in a lower layer; mount with metacopy=on", "path", p)
		return unix.EPERM
	case res.data == dataRedirected:
		u.log.Warn("metacopy file whose redirect names no lower file", "path", p, "redirect", res.dataRel)
		return unix.EIO
	case res.data < 0:
		u.log.Warn("metacopy file whose data no lower layer holds", "path", p)
		return unix.EIO
	}
	return nil
}

// metacopyEligible reports whether a change of the metadata of the lower
// object st copies up its metadata only: a regular file with one name
// (hard-linked files go through the hard-link index, whole).
func (u *Union) metacopyEligible(st *unix.Stat_t) bool {
	return u.cfg.Metacopy && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1
}

// copyUpMeta is copyUp for a change of metadata only: with metacopy=on a
// lower regular file is copied up without its data.
func (n *node) copyUpMeta(ctx context.Context) error {
	return n.copyUpFor(ctx, n.u.cfg.Metacopy)
}

// stageMetacopy makes name in the staging directory of rw branch t a
// metacopy file of the lower file src (described by st). It reports false,
// leaving nothing behind, where the branch cannot hold the metacopy
// attribute: the caller then copies the data.
func (u *Union) stageMetacopy(src at, st *unix.Stat_t, t int, name string) (bool, error) {
	dirfd := u.br[t].work
	fd, err := sys.OpenBeneath(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return true, err
	}
	err = sys.Ftruncate(fd, st.Size)
	unix.Close(fd)
	if err == nil {
		err = u.setOverlayXattr(dirfd, name, "metacopy", "", 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			u.discard(dirfd, name, false)
			u.log.Warn("the upper cannot hold overlay.metacopy: copying data up", "err", err)
			return false, nil
		}
	}
	if err == nil {
		err = u.copyMeta(src, st, t, name)
	}
	if err != nil {
		u.discard(dirfd, name, false)
	}
	return true, err
}

// dataAt locates the data of the metacopy file n (state s): its path in
// branch s.data.
func (n *node) dataAt(s nodeState) (at, error) {
	if s.data < 0 {
		return at{}, unix.EIO
	}
	rel := n.rel()
	if s.dataRel != "" {
		rel = s.dataRel
	}
	dir, name := splitRel(rel)
	fd, err := sys.OpenBeneath(n.u.br[s.data].fd, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return at{}, err
	}
	return at{fd: fd, name: name, own: true}, nil
}

// dataBlocks shows the block count of the metacopy file's data in st.
func (n *node) dataBlocks(s nodeState, st *unix.Stat_t) {
	d, err := n.dataAt(s)
	if err != nil {
		return
	}
	defer d.Close()
	var dst unix.Stat_t
	if sys.Fstatat(d.fd, d.name, &dst) == nil {
		st.Blocks = dst.Blocks
	}
}

// completeData finishes the copy-up of the metacopy file n (state s),
// with n.cuMu held.
func (n *node) completeData(s nodeState) error {
	a, err := n.locate(s)
	if err != nil {
		return err
	}
	defer a.Close()
	d, err := n.dataAt(s)
	if err != nil {
		return err
	}
	defer d.Close()
	ino, err := n.u.fillData(s.br, a.fd, a.name, d, s.bino, n.StableAttr().Ino)
	if err != nil {
		return err
	}
	ns := s
	ns.meta, ns.data, ns.bino = false, 0, ino
	n.setState(ns)
	n.NotifyContent(-1, 0)
	return nil
}

// fillData replaces the metacopy file name in dirfd of rw branch t (inode
// bino, shown as ino) with a whole copy: the data of the file data, the
// upper's owner, mode, extended attributes (the metacopy attribute
// excepted) and times, staged in the work directory and renamed over it.
// It returns the copy's inode number in t.
func (u *Union) fillData(t, dirfd int, name string, data at, bino, ino uint64) (uint64, error) {
	var st unix.Stat_t
	if err := sys.Fstatat(dirfd, name, &st); err != nil {
		return 0, err
	}
	if st.Ino != bino {
		return 0, unix.ENOENT // the name now holds another object
	}
	u.overrideStat(t, dirfd, name, &st)
	tb := u.br[t]
	tmp := u.tmpName()
	err := u.copyFile(data, &st, tb.work, tmp)
	if err == nil {
		err = u.asReadable(dirfd, name, &st, func() error {
			return u.copyMeta(at{fd: dirfd, name: name}, &st, t, tmp)
		})
	}
	var nst, pst unix.Stat_t
	if err == nil {
		err = sys.Fstatat(tb.work, tmp, &nst)
	}
	if err == nil {
		err = sys.Fstatat(dirfd, "", &pst)
	}
	if err == nil {
		err = u.asWritable(dirfd, func() error { return sys.Renameat2(tb.work, tmp, dirfd, name, 0) })
	}
	if err != nil {
		u.discard(tb.work, tmp, false)
		return 0, err
	}
	u.restoreTimes(dirfd, &pst)
	u.forgetAlias(t, bino)
	u.setAlias(t, nst.Ino, ino)
	return nst.Ino, nil
}

// completeAt finishes the copy-up of the metacopy file name of directory
// rel (state cs, in rw branch t, whose directory tdir is open), for a
// directory rename that moves it away from its data's path.
func (u *Union) completeAt(cs nodeState, rel, name string, t, tdir int) error {
	if cs.data < 0 {
		return unix.EIO
	}
	dir, dname := rel, name
	if cs.dataRel != "" {
		dir, dname = splitRel(cs.dataRel)
	}
	fd, err := sys.OpenBeneath(u.br[cs.data].fd, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = u.fillData(t, tdir, name, at{fd: fd, name: dname}, cs.bino, u.inoFor(t, cs.bino))
	return err
}

// dataFile replaces a, the metacopy file n (state s), with its data file
// and that file's attributes, for a read-only open.
func (n *node) dataFile(s nodeState, a at) (at, unix.Stat_t, error) {
	a.Close()
	var st unix.Stat_t
	d, err := n.dataAt(s)
	if err != nil {
		return at{}, st, err
	}
	if err := sys.Fstatat(d.fd, d.name, &st); err != nil {
		d.Close()
		return at{}, st, err
	}
	return d, st, nil
}
