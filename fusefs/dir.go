package fusefs

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

var _ fs.NodeOpendirHandler = (*node)(nil)

// mergedEntries lists the directory rel whose merged branches are s.layers:
// each name once, from the topmost branch holding it, whiteouts applied and
// the union's own names left out. The inode numbers are those Lookup gives.
func (u *Union) mergedEntries(s nodeState, rel string) ([]fuse.DirEntry, error) {
	ents, _, err := u.mergedEntriesFrom(s, rel, nil)
	return ents, err
}

// mergedEntriesFrom is mergedEntries that also says, for each entry, the
// branch it comes from. With the directory's node n, the names read from
// its read-only branches are kept in n (see node.lacking).
func (u *Union) mergedEntriesFrom(s nodeState, rel string, n *node) ([]fuse.DirEntry, []int, error) {
	type layer struct {
		b, fd int
		ents  []sys.Dirent
	}
	var ls []layer
	defer func() {
		for _, l := range ls {
			unix.Close(l.fd)
		}
	}()
	var size int64
	for _, b := range s.layers {
		fd, err := sys.OpenBeneath(u.br[b].fd, rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return nil, nil, err
		}
		ls = append(ls, layer{b: b, fd: fd})
		var st unix.Stat_t
		if len(s.layers) > 1 && sys.Fstatat(fd, "", &st) == nil {
			size += st.Size
		}
	}
	// Big directories of several branches are read side by side: the
	// kernel's getdents is most of a listing's cost.
	errs := make([]error, len(ls))
	if len(ls) > 1 && size >= parallelDirBytes {
		var wg sync.WaitGroup
		for i := range ls {
			wg.Go(func() { ls[i].ents, errs[i] = sys.ReadDir(ls[i].fd) })
		}
		wg.Wait()
	} else {
		for i := range ls {
			ls[i].ents, errs[i] = sys.ReadDir(ls[i].fd)
		}
	}
	total := 0
	for i := range ls {
		if errs[i] != nil {
			return nil, nil, errs[i]
		}
		total += len(ls[i].ents)
	}
	// names holds each name read: the branches holding it (bit b, for the
	// index) and whether it is taken (shown, or hidden by a whiteout).
	const taken = 1 << 63
	names := make(map[string]uint64, total)
	idx := &nameIndex{names: names}
	out := make([]fuse.DirEntry, 0, total)
	from := make([]int, 0, total)
	for _, l := range ls {
		br := u.br[l.b]
		honour := br.Perm.honoursWhiteouts()
		var bit uint64
		if n != nil && u.indexable(l.b) {
			bit = 1 << l.b
			idx.mask |= bit
		}
		var hides []string
		dirWh := -1 // unknown
		for _, e := range l.ents {
			v := names[e.Name]
			if isMetaName(e.Name) {
				if bit != 0 {
					names[e.Name] = v | bit
				}
				if honour && !strings.HasPrefix(e.Name, whMetaPfx) {
					hides = append(hides, e.Name[len(whPrefix):])
				}
				continue
			}
			if v&taken != 0 {
				if v&bit != bit {
					names[e.Name] = v | bit
				}
				continue
			}
			typ := e.Type
			if typ == unix.DT_UNKNOWN || typ == unix.DT_CHR || typ == unix.DT_REG {
				if typ == unix.DT_REG && dirWh < 0 {
					dirWh = 0
					if mayHoldXattrWhiteouts(l.fd) {
						dirWh = 1
					}
				}
				if typ != unix.DT_REG || dirWh == 1 {
					var st unix.Stat_t
					if err := sys.Fstatat(l.fd, e.Name, &st); err != nil {
						continue // gone meanwhile
					}
					typ = modeToDT(st.Mode)
					if isOverlayWhiteoutStat(&st) || isXattrWhiteout(l.fd, e.Name, &st, dirWh == 1) {
						// Never shown; hides lower names only where
						// the branch honours whiteouts.
						if honour {
							v |= taken
						}
						names[e.Name] = v | bit
						continue
					}
				}
			}
			names[e.Name] = v | bit | taken
			out = append(out, fuse.DirEntry{Name: e.Name, Mode: dtToMode(typ), Ino: u.inoFor(l.b, e.Ino)})
			from = append(from, l.b)
		}
		for _, h := range hides {
			names[h] |= taken
		}
	}
	if n != nil {
		if idx.mask == 0 || total > maxIndexedNames {
			idx = nil
		}
		n.setIndex(rel, idx)
	}
	return out, from, nil
}

// parallelDirBytes is the size of a directory's branch directories (st_size,
// which grows with the entries on local filesystems) from which they are
// read side by side.
const parallelDirBytes = 128 << 10

// mergedNames lists the visible names of a directory.
func (u *Union) mergedNames(s nodeState, rel string) ([]string, error) {
	ents, err := u.mergedEntries(s, rel)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name
	}
	return names, nil
}

func dtToMode(dt uint8) uint32 {
	return uint32(dt) << 12
}

func modeToDT(mode uint32) uint8 {
	return uint8((mode & unix.S_IFMT) >> 12)
}

// dirHandle is an open directory: a snapshot of the merged listing taken at
// opendir and at every rewind, so that a reader never sees a name twice nor
// misses one that stayed, and telldir offsets stay valid.
//
// The offset of an entry is the snapshot's generation in the high 32 bits
// and its position + 1 in the low ones, so that an offset of one snapshot
// is never taken for one of another: the kernel then asks for it rather than
// finding it in a listing it cached since (see handlelessDirs).
type dirHandle struct {
	n *node
	// mu protects ents, from, pos and gen.
	mu   sync.Mutex
	ents []fuse.DirEntry
	from []int // branch of each entry; -1 for "." and ".."
	pos  int
	gen  uint64 // of the snapshot, from Union.dirGen
	// loaded is set once the snapshot is taken.
	loaded bool
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
	_ fs.FileFsyncdirer   = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
)

// OpendirHandle opens a directory for reading.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h := &dirHandle{n: n}
	if n.u.cfg.Reval {
		// Take the snapshot now; otherwise on the first read, which the
		// kernel skips when it has the listing cached.
		if err := h.load(); err != nil {
			return nil, 0, fs.ToErrno(err)
		}
	} else if _, err := n.state(); err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	var fl uint32
	if !n.u.cfg.Reval {
		// The kernel may cache the listing: every change to the
		// directory goes through it and drops the cache.
		fl = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	return h, fl, 0
}

func (h *dirHandle) load() error {
	s, err := h.n.state()
	if err != nil {
		return err
	}
	ents, from, err := h.n.u.mergedEntriesFrom(s, h.n.rel(), h.n)
	if err != nil {
		return err
	}
	self := h.n.StableAttr().Ino
	up := self
	if _, p := h.n.Parent(); p != nil {
		up = p.StableAttr().Ino
	}
	h.ents = append([]fuse.DirEntry{
		{Name: ".", Mode: unix.S_IFDIR, Ino: self},
		{Name: "..", Mode: unix.S_IFDIR, Ino: up},
	}, ents...)
	h.from = append([]int{-1, -1}, from...)
	h.pos = 0
	h.gen = h.n.listingGen(h.ents)
	h.loaded = true
	return nil
}

// listingGen returns the generation of a snapshot of the directory's
// listing: that of the previous snapshot if the listing is the same (so
// that offsets stay the same across rewinds and reopens of an unchanged
// directory), else a new one.
func (n *node) listingGen(ents []fuse.DirEntry) uint64 {
	var h maphash.Hash
	h.SetSeed(n.u.listSeed)
	var b [12]byte
	for _, e := range ents {
		h.WriteString(e.Name)
		binary.LittleEndian.PutUint64(b[:8], e.Ino)
		binary.LittleEndian.PutUint32(b[8:], e.Mode)
		h.Write(b[:])
	}
	sum := h.Sum64()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listGen == 0 || n.listSum != sum {
		n.listSum, n.listGen = sum, n.u.dirGen.Add(1)%offMask+1
	}
	return n.listGen
}

// offMask is the position part of an offset; the generation (never 0)
// fills the rest.
const offMask = 1<<32 - 1

// Lookup serves READDIRPLUS for the entry just read: its branch is known, so
// one stat replaces a full resolution. A directory's merged branches are
// resolved when first needed.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n := h.n
	if ch := n.GetChild(name); ch != nil {
		var a fuse.AttrOut
		if errno := asNode(ch).Getattr(ctx, nil, &a); errno != 0 {
			return nil, errno
		}
		out.Attr = a.Attr
		return ch, 0
	}
	h.mu.Lock()
	b := -1
	if i := h.pos - 1; i >= 0 && i < len(h.ents) && h.ents[i].Name == name {
		b = h.from[i]
	}
	h.mu.Unlock()
	if b < 0 {
		return n.Lookup(ctx, name, out)
	}
	u := n.u
	dfd, release, err := u.dirFD(n, b, n.rel())
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	var st unix.Stat_t
	meta := false
	err = sys.Fstatat(dfd, name, &st)
	if err == nil {
		u.overrideStat(b, dfd, name, &st)
		meta = u.isMetacopy(u.br[b], dfd, name, &st)
	}
	release()
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR || isOverlayWhiteoutStat(&st) || meta {
		// A directory needs its merged branches (and its link count
		// depends on them): resolve it fully; so too a name that became a
		// whiteout since the listing, and a metacopy file (its data
		// is in a lower branch).
		return n.Lookup(ctx, name, out)
	}
	cs := nodeState{valid: true, br: b, nameBr: b, bino: st.Ino}
	if st.Nlink > 1 {
		if ref, ok := u.plinkOf(b, st.Ino); ok {
			cs.br, cs.plink, cs.bino = ref.b, ref.name, ref.ino
		}
	}
	return n.newChild(ctx, cs, &st, &out.Attr), 0
}

// Readdirent returns the next entry; its offset is the snapshot's
// generation and its position + 1.
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.loaded {
		if err := h.load(); err != nil {
			return nil, fs.ToErrno(err)
		}
	}
	if h.pos >= len(h.ents) {
		return nil, 0
	}
	e := h.ents[h.pos]
	h.pos++
	e.Off = h.gen<<32 | uint64(h.pos)
	return &e, 0
}

// Seekdir moves to an offset returned earlier; offset 0 (rewinddir) takes a
// new snapshot. An offset of another snapshot (one the handle-less path no
// longer holds) moves to the same position in this one.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off == 0 {
		return fs.ToErrno(h.load())
	}
	if !h.loaded {
		if err := h.load(); err != nil {
			return fs.ToErrno(err)
		}
	}
	off &= offMask
	if off > uint64(len(h.ents)) {
		off = uint64(len(h.ents))
	}
	h.pos = int(off)
	return 0
}

// Fsyncdir syncs the directory in its topmost branch.
func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	s, err := h.n.state()
	if err != nil {
		return fs.ToErrno(err)
	}
	fd, err := sys.OpenBeneath(h.n.u.br[s.br].fd, h.n.rel(), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer unix.Close(fd)
	return fs.ToErrno(unix.Fsync(fd))
}
