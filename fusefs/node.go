package fusefs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// node is one object of the union: a merged directory or a file living in
// one branch.
type node struct {
	fs.Inode
	u *Union

	// cuMu serialises copy-ups and namespace changes of this object.
	cuMu sync.Mutex

	// fdMu is held shared while a cached descriptor of dfds is in use and
	// exclusively while they are closed. Lock order: fdMu before mu.
	fdMu sync.RWMutex
	// mu protects st, dfds, files, cachedOpens, index and indexRel.
	mu sync.Mutex
	st nodeState
	// dfds caches, for a directory, an O_PATH descriptor of the directory
	// in each branch (indexed by branch, -1 where not open); closed when the
	// kernel forgets the node.
	dfds []int32
	// files are the open files of the node; cachedOpens counts those
	// served by the daemon (not passthrough).
	files       map[*file]struct{}
	cachedOpens int
	// index holds, for a directory listed since the kernel last forgot
	// it, the names of its directories in its read-only branches (which
	// nothing changes behind the union's back), so that a lookup skips
	// the branches that lack a name; indexRel is the directory's path
	// when they were read (a rename moves the node, not the index).
	index    *nameIndex
	indexRel string
	// listSum is a hash of the directory's last listing snapshot and
	// listGen its generation (see node.listingGen); also protected by mu.
	listSum, listGen uint64
}

// nameIndex holds the names of a directory's branch directories: bit b of
// a name's value is set when branch b holds it, for the branches of mask
// (read-only ones below maxIndexedBranch).
type nameIndex struct {
	mask  uint64
	names map[string]uint64
}

// maxIndexedNames bounds the names kept per directory; maxIndexedBranch
// bounds the branches whose names are kept (one bit each, the top bit of a
// value being mergedEntriesFrom's own).
const (
	maxIndexedNames  = 1 << 18
	maxIndexedBranch = 62
)

// indexable reports whether the names of branch b's directories may be
// kept: a read-only branch, with branches trusted not to change.
func (u *Union) indexable(b int) bool {
	return b <= maxIndexedBranch && !u.br[b].rw() && !u.cfg.Reval
}

// setIndex keeps the names read from the read-only branches of the
// directory, found at rel.
func (n *node) setIndex(rel string, index *nameIndex) {
	n.mu.Lock()
	n.index, n.indexRel = index, rel
	n.mu.Unlock()
}

// lacking returns the branches whose directory rel is known to hold
// neither name nor an aufs whiteout of it (as a bit mask by branch).
func (n *node) lacking(rel, name string) uint64 {
	n.mu.Lock()
	idx := n.index
	ok := idx != nil && n.indexRel == rel
	n.mu.Unlock()
	if !ok {
		return 0
	}
	held := idx.names[name]
	if len(name)+len(whPrefix) <= maxNameLen {
		held |= idx.names[whPrefix+name]
	}
	return idx.mask &^ held
}

var (
	_ fs.NodeLookuper      = (*node)(nil)
	_ fs.NodeGetattrer     = (*node)(nil)
	_ fs.NodeSetattrer     = (*node)(nil)
	_ fs.NodeOpener        = (*node)(nil)
	_ fs.NodeReadlinker    = (*node)(nil)
	_ fs.NodeStatfser      = (*node)(nil)
	_ fs.NodeGetxattrer    = (*node)(nil)
	_ fs.NodeSetxattrer    = (*node)(nil)
	_ fs.NodeRemovexattrer = (*node)(nil)
	_ fs.NodeListxattrer   = (*node)(nil)
)

func (n *node) isDir() bool { return n.StableAttr().Mode&unix.S_IFMT == unix.S_IFDIR }

func asNode(i *fs.Inode) *node { return i.Operations().(*node) }

// rel is the node's path relative to the union root ("" for the root).
func (n *node) rel() string { return n.Path(nil) }

func (n *node) setState(s nodeState) {
	n.mu.Lock()
	n.st = s
	n.mu.Unlock()
}

// invalidate makes the next operation resolve the node again.
func (n *node) invalidate() {
	n.mu.Lock()
	n.st.valid = false
	n.mu.Unlock()
}

// state returns where the node's object lives, resolving it when the cached
// answer is stale (or always, with Reval).
func (n *node) state() (nodeState, error) {
	n.mu.Lock()
	s := n.st
	n.mu.Unlock()
	if s.valid && !n.u.cfg.Reval {
		return s, nil
	}
	return n.refresh()
}

func (n *node) refresh() (nodeState, error) {
	return n.refreshDepth(0)
}

// maxDepth bounds the walk up the tree while resolving: a loop in the
// tree (which an inode-number collision could make) fails with ESTALE
// instead of recursing forever.
const maxDepth = 1 << 14

func (n *node) refreshDepth(depth int) (nodeState, error) {
	if depth > maxDepth {
		return nodeState{}, unix.ESTALE
	}
	if n.IsRoot() {
		s := nodeState{valid: true, layers: n.u.rootLayers()}
		s.br = s.layers[0]
		n.setState(s)
		return s, nil
	}
	name, parent := n.Parent()
	if parent == nil {
		return nodeState{}, unix.ENOENT
	}
	pn := asNode(parent)
	pn.mu.Lock()
	ps := pn.st
	pn.mu.Unlock()
	if !ps.valid || n.u.cfg.Reval {
		var err error
		if ps, err = pn.refreshDepth(depth + 1); err != nil {
			return nodeState{}, err
		}
	}
	s, _, err := n.u.lookupIn(ps, parent.Path(nil), pn, name)
	if err != nil {
		return nodeState{}, err
	}
	n.setState(s)
	return s, nil
}

// at is an object reached as name in the directory fd.
type at struct {
	fd   int
	name string
	own  bool
}

func (a at) Close() {
	if a.own {
		unix.Close(a.fd)
	}
}

// locate opens the directory holding the node's object in branch s.br.
func (n *node) locate(s nodeState) (at, error) {
	b := n.u.br[s.br]
	if s.plink != "" {
		return at{fd: b.plink, name: s.plink}, nil
	}
	rel := n.rel()
	if rel == "" {
		return at{fd: b.fd, name: "."}, nil
	}
	dir, name := splitRel(rel)
	fd, err := sys.OpenBeneath(b.fd, dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return at{}, err
	}
	return at{fd: fd, name: name, own: true}, nil
}

// stat locates the node's object and stats it, resolving the node again
// if the cached location no longer holds it.
func (n *node) stat() (nodeState, at, unix.Stat_t, error) {
	var st unix.Stat_t
	for try := 0; ; try++ {
		s, err := n.state()
		if err != nil {
			return s, at{}, st, err
		}
		a, err := n.locate(s)
		if err == nil {
			err = sys.Fstatat(a.fd, a.name, &st)
			if err == nil && n.holds(s, &st) {
				n.u.overrideStat(s.br, a.fd, a.name, &st)
				if s.meta {
					n.dataBlocks(s, &st)
				}
				return s, a, st, nil
			}
			a.Close()
			if err == nil {
				// The name now holds another object: this one was
				// removed or replaced.
				err = unix.ENOENT
			}
		}
		if try > 0 || !isNotFound(err) {
			return s, at{}, st, err
		}
		n.invalidate()
	}
}

// holds reports whether st, found at the node's location in state s, is
// the node's object: for a directory, a directory (the name may have become
// a whiteout, or another object, since it was resolved: its attributes
// must not be shown as the directory's); for another object, the same
// inode.
func (n *node) holds(s nodeState, st *unix.Stat_t) bool {
	if n.isDir() {
		return st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	return n.u.inoFor(s.br, st.Ino) == n.StableAttr().Ino
}

// Lookup resolves a child name through the branches.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if len(name) > maxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	if isMetaName(name) {
		return nil, syscall.ENOENT
	}
	ps, err := n.state()
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	cs, st, err := n.u.lookupIn(ps, n.rel(), n, name)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return n.newChild(ctx, cs, &st, &out.Attr), 0
}

// nlinkOf is the link count the union shows for an object: an indexed hard
// link's index entry is not a name, and its names still in lower branches
// are.
func (u *Union) nlinkOf(s nodeState, st *unix.Stat_t) uint32 {
	if s.plink == "" {
		return uint32(st.Nlink)
	}
	n := int64(st.Nlink) - 1
	if ref, ok := u.plinkOf(s.br, s.bino); ok {
		n += ref.pending.Load()
	}
	return uint32(max(n, 1))
}

// newChild makes (or finds) the inode for a resolved child and fills attr.
func (n *node) newChild(ctx context.Context, cs nodeState, st *unix.Stat_t, attr *fuse.Attr) *fs.Inode {
	return n.newChildGen(ctx, cs, st, attr, false)
}

// newChildGen is newChild for an object the union has just made (fresh),
// which gets a generation of its own (see Union.genOf).
func (n *node) newChildGen(ctx context.Context, cs nodeState, st *unix.Stat_t, attr *fuse.Attr, fresh bool) *fs.Inode {
	ino := n.u.inoFor(cs.br, st.Ino)
	if cs.plink != "" {
		ino = n.u.inoFor(cs.br, cs.bino)
	}
	child := &node{u: n.u, st: cs}
	ci := n.NewInode(ctx, child, fs.StableAttr{Mode: st.Mode & unix.S_IFMT, Ino: ino, Gen: n.u.genOf(ino, fresh)})
	if got := asNode(ci); got != child {
		// A known inode number: the same object, or a new one reusing the
		// number (a directory removed and made again), whose cached
		// descriptors would be the old object's.
		got.mu.Lock()
		same := got.st.valid && got.st.br == cs.br && got.st.bino == cs.bino
		got.mu.Unlock()
		if !same {
			got.dropFDs()
		}
		got.setState(cs)
	}
	fillAttr(attr, st, ino, len(cs.layers) > 1)
	n.u.mapAttr(attr)
	if cs.plink != "" {
		attr.Nlink = n.u.nlinkOf(cs, st)
	}
	return ci
}

// fillAttr converts a branch stat into the attributes the union shows.
func fillAttr(a *fuse.Attr, st *unix.Stat_t, ino uint64, merged bool) {
	a.Ino = ino
	a.Size = uint64(st.Size)
	a.Blocks = uint64(st.Blocks)
	a.Atime, a.Atimensec = uint64(st.Atim.Sec), uint32(st.Atim.Nsec)
	a.Mtime, a.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
	a.Ctime, a.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
	a.Mode = st.Mode
	a.Nlink = uint32(st.Nlink)
	if merged {
		// As overlayfs: the link count of a merged directory is unknown.
		a.Nlink = 1
	}
	a.Owner = fuse.Owner{Uid: st.Uid, Gid: st.Gid}
	a.Rdev = uint32(st.Rdev)
	a.Blksize = uint32(st.Blksize)
}

// Getattr stats the object in its branch; an open but deleted file is
// stat'ed through its descriptor.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if s, st, ok := n.cachedStat(); ok {
		fillAttr(&out.Attr, &st, n.StableAttr().Ino, len(s.layers) > 1)
		n.u.mapAttr(&out.Attr)
		return 0
	}
	// The name no longer holds the object, or stat must resolve it.
	s, a, st, err := n.stat()
	if err != nil {
		if f == nil && isNotFound(err) {
			if of := n.anyFile(); of != nil {
				defer of.Close()
				f = fs.NewLoopbackFileFromOS(of)
			}
		}
		if fg, ok := f.(fs.FileGetattrer); ok && isNotFound(err) {
			errno := fg.Getattr(ctx, out)
			out.Ino = n.StableAttr().Ino
			n.u.mapAttr(&out.Attr)
			return errno
		}
		return fs.ToErrno(err)
	}
	a.Close()
	fillAttr(&out.Attr, &st, n.StableAttr().Ino, len(s.layers) > 1)
	n.u.mapAttr(&out.Attr)
	if s.plink != "" {
		out.Nlink = n.u.nlinkOf(s, &st)
	}
	return 0
}

// cachedStat stats the object through a directory descriptor its node (a
// directory) or its parent's node caches, which saves opening the parent:
// the kernel asks for attributes after each listing and read (atime) and
// each change of a directory. It reports false where stat must do the work:
// with Reval (the object at the name may have been replaced behind the
// union's back), for a name of an indexed hard link, for a metacopy file
// (whose block count is its data's), and when the name no longer holds the
// object.
func (n *node) cachedStat() (nodeState, unix.Stat_t, bool) {
	var st unix.Stat_t
	if n.u.cfg.Reval {
		return nodeState{}, st, false
	}
	s, err := n.state()
	if err != nil || s.plink != "" || s.meta {
		return s, st, false
	}
	var fd int
	var release func()
	name := ""
	if n.isDir() {
		fd, release, err = n.u.dirFD(n, s.br, n.rel())
	} else {
		var p *fs.Inode
		if name, p = n.Parent(); p == nil {
			return s, st, false
		}
		fd, release, err = n.u.dirFD(asNode(p), s.br, p.Path(nil))
	}
	if err != nil {
		return s, st, false
	}
	defer release()
	if sys.Fstatat(fd, name, &st) != nil || !n.holds(s, &st) || st.Nlink == 0 {
		// Gone, or (a directory's own descriptor) removed: a new
		// directory at the name may have reused its inode number.
		return s, st, false
	}
	if name == "" {
		name = "."
	}
	n.u.overrideStat(s.br, fd, name, &st)
	return s, st, true
}

// Readlink reads a symlink's target.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	_, a, _, err := n.stat()
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	defer a.Close()
	t, err := sys.Readlinkat(a.fd, a.name)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return []byte(t), 0
}

// Statfs reports the topmost rw branch (or the top branch of a read-only
// union).
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	b := n.u.topRW
	if b < 0 {
		b = 0
	}
	var st unix.Statfs_t
	if err := sys.Fstatfs(n.u.br[b].fd, &st); err != nil {
		// O_PATH descriptors support fstatfs since Linux 3.6.
		return fs.ToErrno(err)
	}
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
	out.Files, out.Ffree = st.Files, st.Ffree
	out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	out.NameLen = uint32(st.Namelen)
	return 0
}

// Open opens the object in its branch; opening for writing or with O_TRUNC
// copies it up first.
// openFlags are the open(2) flags Open passes on to the branch.
const openFlags = syscall.O_ACCMODE | syscall.O_APPEND | syscall.O_NONBLOCK | syscall.O_DSYNC |
	syscall.O_SYNC | syscall.O_DIRECT | syscall.O_LARGEFILE | syscall.O_NOATIME | syscall.O_TRUNC |
	syscall.O_DIRECTORY | syscall.O_NOFOLLOW | syscall.O_ASYNC

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	// Only the flags open(2) defines: the kernel also passes its own
	// markers (__FMODE_EXEC for an execve), which openat2 refuses.
	flags &= openFlags
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write {
		if err := n.copyUp(ctx); err != nil {
			return nil, 0, fs.ToErrno(err)
		}
	}
	// Open by name, then check that the name still held this object (a
	// concurrent rename may have put another one there); truncate only
	// then.
	for try := 0; ; try++ {
		s, a, st, err := n.stat()
		if err != nil {
			return nil, 0, fs.ToErrno(err)
		}
		if s.meta {
			// A metacopy file reads its lower data.
			if a, st, err = n.dataFile(s, a); err != nil {
				return nil, 0, fs.ToErrno(err)
			}
		}
		oflags := flags
		if oflags&syscall.O_ACCMODE != syscall.O_RDONLY {
			oflags &^= syscall.O_TRUNC // done below, on the right object
		}
		fd, err := sys.OpenBeneath(a.fd, a.name, int(oflags)|unix.O_NOFOLLOW, 0)
		var fst unix.Stat_t
		if err != nil {
			// The open may have failed on another object that a
			// concurrent change put at the name: a whiteout (a device,
			// which a nodev mount refuses with EACCES) or a directory.
			// Then this object is gone or moved: look again.
			moved := sys.Fstatat(a.fd, a.name, &fst) != nil || fst.Ino != st.Ino || fst.Dev != st.Dev
			a.Close()
			if moved && try < 3 {
				n.invalidate()
				continue
			}
			if moved {
				return nil, 0, syscall.ENOENT
			}
			return nil, 0, fs.ToErrno(err)
		}
		a.Close()
		if err := sys.Fstatat(fd, "", &fst); err != nil || fst.Ino != st.Ino || fst.Dev != st.Dev {
			unix.Close(fd)
			if try < 3 {
				n.invalidate()
				continue
			}
			return nil, 0, syscall.ENOENT
		}
		if flags&syscall.O_TRUNC != 0 && oflags&syscall.O_TRUNC == 0 {
			if err := sys.Ftruncate(fd, 0); err != nil {
				unix.Close(fd)
				return nil, 0, fs.ToErrno(err)
			}
		}
		return n.u.newFile(n, fd, s, flags), n.u.openFlags(s.br), 0
	}
}

// Setattr copies the object up and changes its mode, owner, size or times;
// only a change of size needs the data (metacopy=on).
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	cu := n.copyUpMeta
	if _, ok := in.GetSize(); ok {
		cu = n.copyUp
	}
	err := cu(ctx)
	var s nodeState
	var a at
	var st unix.Stat_t
	if err == nil {
		s, a, st, err = n.stat()
	}
	if isNotFound(err) {
		// The name is gone (unlinked while open): change the object
		// through an open descriptor, as ext4 allows.
		var lf fs.FileSetattrer
		if of, ok := f.(*file); ok {
			lf = of
		} else if of := n.anyFile(); of != nil {
			defer of.Close()
			lf = fs.NewLoopbackFileFromOS(of)
		}
		if lf != nil {
			if errno := lf.Setattr(ctx, in, out); errno != 0 {
				return errno
			}
			out.Ino = n.StableAttr().Ino
			n.u.mapAttr(&out.Attr)
			return 0
		}
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	defer a.Close()
	if err := n.u.setattr(s.br, a, &st, f, in); err != nil {
		return fs.ToErrno(err)
	}
	return n.Getattr(ctx, f, out)
}

// setattr changes the object a of branch b, whose attributes (as shown)
// are st.
func (u *Union) setattr(b int, a at, st *unix.Stat_t, f fs.FileHandle, in *fuse.SetAttrIn) error {
	// Pin the object: every change below goes through this descriptor, so
	// a concurrent rename that puts another object at the name cannot
	// redirect it.
	ofd, err := sys.OpenBeneath(a.fd, a.name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ofd)
	var ost unix.Stat_t
	if err := sys.Fstatat(ofd, "", &ost); err != nil {
		return err
	}
	if ost.Ino != st.Ino || ost.Dev != st.Dev {
		return unix.ENOENT // the name now holds another object
	}
	if err := u.setOwnerMode(b, a, ofd, st.Mode&unix.S_IFMT, statOverride{st.Uid, st.Gid, st.Mode}, in); err != nil {
		return err
	}
	if sz, ok := in.GetSize(); ok {
		if err := u.truncate(ofd, f, sz); err != nil {
			return err
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME|fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		switch {
		case in.Valid&fuse.FATTR_ATIME_NOW != 0:
			ts[0].Nsec = unix.UTIME_NOW
		case in.Valid&fuse.FATTR_ATIME != 0:
			ts[0] = unix.Timespec{Sec: int64(in.Atime), Nsec: int64(in.Atimensec)}
		}
		switch {
		case in.Valid&fuse.FATTR_MTIME_NOW != 0:
			ts[1].Nsec = unix.UTIME_NOW
		case in.Valid&fuse.FATTR_MTIME != 0:
			ts[1] = unix.Timespec{Sec: int64(in.Mtime), Nsec: int64(in.Mtimensec)}
		}
		if err := sys.UtimensFD(ofd, ts); err != nil {
			return err
		}
	}
	return nil
}

// setOwnerMode applies the mode and owner changes of in to the object
// pinned by ofd (a in branch b, of type typ, showing cur): in its inode, or
// in its stat override where branch b keeps them there.
func (u *Union) setOwnerMode(b int, a at, ofd int, typ uint32, cur statOverride, in *fuse.SetAttrIn) error {
	m, mok := in.GetMode()
	if mok && typ == unix.S_IFLNK {
		return unix.EOPNOTSUPP
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	next := cur
	if mok {
		next.mode = m & 07777
	}
	if uok {
		s, ok := stored(u.cfg.UIDMap, uid)
		if !ok {
			return unix.EINVAL
		}
		next.uid = s
	}
	if gok {
		s, ok := stored(u.cfg.GIDMap, gid)
		if !ok {
			return unix.EINVAL
		}
		next.gid = s
	}
	if !mok && !uok && !gok {
		return nil
	}
	if u.storesOverride(b, typ) {
		if mok {
			if err := sys.ChmodFD(ofd, u.physicalMode(b, typ|next.mode)); err != nil {
				return err
			}
		}
		return u.writeOverride(b, a.fd, a.name, next)
	}
	if mok {
		if err := sys.ChmodFD(ofd, next.mode); err != nil {
			return err
		}
	}
	if uok || gok {
		iu, ig := -1, -1
		if uok {
			iu = int(next.uid)
		}
		if gok {
			ig = int(next.gid)
		}
		return sys.FchownFD(ofd, iu, ig)
	}
	return nil
}

// truncate sets the size of the object pinned by ofd, through the caller's
// open file when it is writable.
func (u *Union) truncate(ofd int, f fs.FileHandle, size uint64) error {
	if lf, ok := f.(*file); ok && lf.writable {
		return sys.Ftruncate(int(lf.osf.Fd()), int64(size))
	}
	fd, err := sys.Reopen(ofd, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return sys.Ftruncate(fd, int64(size))
}

var _ fs.NodeOnForgetter = (*node)(nil)

// dirFD returns a descriptor of the directory rel in branch b and its
// release: the cached one of its node n (released by unlocking n.fdMu, which
// the node holds shared so that OnForget cannot close it meanwhile), or a
// fresh one that release closes. n may be nil. Descriptors are not cached
// with Reval (a branch directory may be replaced behind the union's back)
// nor beyond the descriptor budget.
func (u *Union) dirFD(n *node, b int, rel string) (int, func(), error) {
	open := func() (int, func(), error) {
		fd, err := sys.OpenBeneath(u.br[b].fd, rel, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return -1, nil, err
		}
		return fd, func() { unix.Close(fd) }, nil
	}
	if n == nil || u.cfg.Reval {
		return open()
	}
	n.fdMu.RLock()
	n.mu.Lock()
	if n.dfds != nil && n.dfds[b] >= 0 {
		fd := int(n.dfds[b])
		n.mu.Unlock()
		return fd, n.fdMu.RUnlock, nil
	}
	n.mu.Unlock()
	fd, closeFD, err := open()
	if err != nil || u.cachedFDs.Add(1) > u.maxCachedFDs {
		if err == nil {
			u.cachedFDs.Add(-1)
		}
		n.fdMu.RUnlock()
		return fd, closeFD, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dfds == nil {
		n.dfds = make([]int32, len(u.br))
		for i := range n.dfds {
			n.dfds[i] = -1
		}
	}
	if n.dfds[b] >= 0 {
		// Another goroutine cached one first: use ours once.
		u.cachedFDs.Add(-1)
		n.fdMu.RUnlock()
		return fd, closeFD, nil
	}
	n.dfds[b] = int32(fd)
	return fd, n.fdMu.RUnlock, nil
}

// dropFDs closes the cached branch descriptors, once no operation uses
// them.
func (n *node) dropFDs() {
	n.fdMu.Lock()
	defer n.fdMu.Unlock()
	n.mu.Lock()
	fds := n.dfds
	n.dfds = nil
	n.index, n.indexRel = nil, ""
	n.mu.Unlock()
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(int(fd))
			n.u.cachedFDs.Add(-1)
		}
	}
}

// OnForget closes the cached branch descriptors.
func (n *node) OnForget() {
	n.dropFDs()
	a := n.StableAttr()
	n.u.forgetGen(a.Ino, a.Gen)
}
