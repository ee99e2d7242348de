package fusefs

import (
	"errors"
	"path"
	"strings"
	"sync/atomic"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// nodeState is where a node's object lives in the branch stack.
type nodeState struct {
	valid  bool
	br     int    // branch holding the object (the topmost one for a directory)
	nameBr int    // branch holding the name's entry: br, except for a lower name of an indexed hard link
	bino   uint64 // the object's inode number in that branch
	layers []int  // directories: the merged branches, topmost first
	plink  string // non-empty: reach the object as this name in br's hard-link index
	// meta is set for a metacopy file in rw branch br: its data is the
	// file at the same path, or at dataRel (an overlay redirect), in
	// branch data (see metacopy.go).
	meta    bool
	data    int
	dataRel string
}

// isNotFound reports errors that mean "no such object in this branch".
func isNotFound(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) ||
		errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENAMETOOLONG)
}

// splitRel splits a union-relative path into its directory and base name;
// the root is (".", ".").
func splitRel(rel string) (dir, name string) {
	if rel == "" || rel == "." {
		return ".", "."
	}
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ".", rel
	}
	return rel[:i], rel[i+1:]
}

func joinRel(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return path.Join(dir, name)
}

// lookupChild resolves name in the directory dirRel whose merged branches are
// parent.layers: the topmost branch holding name wins unless a whiteout in a
// higher branch that honours whiteouts hides it; directories merge down to
// the first opaque one, and stop at a non-directory.
func (u *Union) lookupChild(parent nodeState, dirRel, name string) (nodeState, unix.Stat_t, error) {
	return u.lookupIn(parent, dirRel, nil, name)
}

// lookupIn is lookupChild with the directory's node, whose cached branch
// descriptors save reopening the directory in every branch.
func (u *Union) lookupIn(parent nodeState, dirRel string, dir *node, name string) (nodeState, unix.Stat_t, error) {
	var res nodeState
	var top unix.Stat_t
	found := false
	var lacking uint64
	if dir != nil {
		lacking = dir.lacking(dirRel, name)
	}
	for _, b := range parent.layers {
		if b < 64 && lacking&(1<<b) != 0 {
			continue
		}
		br := u.br[b]
		dfd, release, err := u.dirFD(dir, b, dirRel)
		if err != nil {
			if isNotFound(err) {
				continue
			}
			if found {
				break
			}
			return res, top, err
		}
		stop := u.probe(br, dfd, dirRel, name, &res, &top, &found, b)
		release()
		if stop {
			break
		}
	}
	if !found {
		return res, top, unix.ENOENT
	}
	if res.meta {
		if res.data == dataRedirected {
			u.findRedirected(&res, &top)
		}
		if err := u.checkMetaData(res, dirRel, name); err != nil {
			return res, top, err
		}
	}
	res.valid = true
	res.bino = top.Ino
	res.nameBr = res.br
	if res.layers == nil && top.Nlink > 1 {
		if ref, ok := u.plinkOf(res.br, top.Ino); ok {
			res.br, res.plink, res.bino = ref.b, ref.name, ref.ino
		}
	}
	return res, top, nil
}

// probe examines name in one branch directory and reports whether the merge
// stops here.
func (u *Union) probe(br *branch, dfd int, dirRel, name string, res *nodeState, top *unix.Stat_t, found *bool, b int) bool {
	honour := br.Perm.honoursWhiteouts()
	var st unix.Stat_t
	err := sys.Fstatat(dfd, name, &st)
	if *found && res.meta {
		return u.probeData(br, dfd, name, err, &st, res, top, b)
	}
	if err == nil && isWhiteoutAt(dfd, name, &st) {
		// A whiteout never shows; in a branch that does not honour
		// whiteouts it hides nothing either.
		if honour {
			return true
		}
		err = unix.ENOENT
	}
	if err == nil {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if !*found {
			*found = true
			u.overrideStat(b, dfd, name, &st)
			*top = st
			res.br = b
			if !isDir {
				// A metacopy file goes on to the branch holding its data.
				return !u.probeMeta(br, dfd, dirRel, name, &st, res)
			}
			res.layers = []int{b}
		} else {
			if !isDir {
				return true
			}
			res.layers = append(res.layers, b)
		}
		if honour && isOpaqueDir(dfd, name) {
			return true
		}
	}
	return honour && len(name)+len(whPrefix) <= maxNameLen && exists(dfd, whPrefix+name)
}

// plinkRef names a copied-up hard-linked object in the hard-link index of
// rw branch b.
type plinkRef struct {
	b    int
	name string
	ino  uint64 // inode number of the copy in branch b
	// pending counts the object's names still in lower branches (neither
	// linked up nor whited out), known for copies made during this mount.
	pending *atomic.Int64
}

// plinkOf returns the hard-link index entry of the object whose branch
// identity is ino in branch b: set once one of its names has been copied
// up, so that all its names keep reaching one object.
func (u *Union) plinkOf(b int, ino uint64) (plinkRef, bool) {
	u.inoMu.Lock()
	defer u.inoMu.Unlock()
	r, ok := u.plinks[devIno{u.br[b].dev, ino}]
	return r, ok
}
