package fusefs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxListings bounds the listings handlelessDirs holds at once; the least
// recently used one goes first.
const maxListings = 64

// handlelessDirs serves directories without open handles. Its OPENDIR
// answers ENOSYS, after which the kernel opens every directory of the mount
// without asking (no OPENDIR nor RELEASEDIR round trip per open: a warm
// stat walk sends no request at all) and caches listings as with
// FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE; it drops a cached listing when the
// directory changes through the mount.
//
// READDIR then comes without a handle: a read at offset 0 starts a listing,
// a directory handle of the node tree opened here (a fresh snapshot); reads
// at later offsets go to the listing whose generation the offset carries
// (see dirHandle), so a reader that started before a change keeps reading
// its snapshot. A listing is released at its end, when the kernel forgets
// the directory, or when more than maxListings are open; a read of a
// released listing's offset starts a new snapshot at the same position.
type handlelessDirs struct {
	fuse.RawFileSystem

	// mu protects byNode, n, tick and the gen and used of the listings.
	mu     sync.Mutex
	byNode map[uint64][]*listing
	n      int    // listings held
	tick   uint64 // use counter, for eviction
}

// listing is a directory handle of the node tree, opened by handlelessDirs.
type listing struct {
	node, fh uint64
	gen      uint64 // generation of its offsets; 0 until the first read
	used     uint64 // handlelessDirs.tick at the last use
	// mu is held while the handle is read or released; released is set
	// once it is.
	mu       sync.Mutex
	released bool
}

func newHandlelessDirs(raw fuse.RawFileSystem) *handlelessDirs {
	return &handlelessDirs{RawFileSystem: raw, byNode: map[uint64][]*listing{}}
}

// OpenDir refuses: the kernel then stops sending OPENDIR for the mount.
func (h *handlelessDirs) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

// ReadDir reads a listing.
func (h *handlelessDirs) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return h.read(cancel, in, out, h.RawFileSystem.ReadDir)
}

// ReadDirPlus reads a listing with the entries' attributes.
func (h *handlelessDirs) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return h.read(cancel, in, out, h.RawFileSystem.ReadDirPlus)
}

func (h *handlelessDirs) read(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList,
	read func(<-chan struct{}, *fuse.ReadIn, *fuse.DirEntryList) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(cancel, in, out)
	}
	for {
		l, st := h.listingFor(cancel, in)
		if !st.Ok() {
			return st
		}
		l.mu.Lock()
		if l.released {
			// Evicted meanwhile: take another.
			l.mu.Unlock()
			continue
		}
		rin := *in
		rin.Fh = l.fh
		st = read(cancel, &rin, out)
		end := st.Ok() && len(out.Bytes()) == 0
		if st.Ok() && !end {
			h.mu.Lock()
			l.gen = out.Offset >> 32
			h.mu.Unlock()
		}
		l.mu.Unlock()
		if end {
			h.drop(l)
		}
		return st
	}
}

// listingFor returns the listing a read at in.Offset continues, opening a
// new one at offset 0 or when that listing is gone.
func (h *handlelessDirs) listingFor(cancel <-chan struct{}, in *fuse.ReadIn) (*listing, fuse.Status) {
	if gen := in.Offset >> 32; in.Offset != 0 && gen != 0 {
		h.mu.Lock()
		for _, l := range h.byNode[in.NodeId] {
			if l.gen == gen {
				h.tick++
				l.used = h.tick
				h.mu.Unlock()
				return l, fuse.OK
			}
		}
		h.mu.Unlock()
	}
	var out fuse.OpenOut
	oin := fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	if st := h.RawFileSystem.OpenDir(cancel, &oin, &out); !st.Ok() {
		return nil, st
	}
	l := &listing{node: in.NodeId, fh: out.Fh}
	h.mu.Lock()
	h.tick++
	l.used = h.tick
	h.byNode[l.node] = append(h.byNode[l.node], l)
	h.n++
	var victim *listing
	if h.n > maxListings {
		victim = h.oldestLocked()
	}
	h.mu.Unlock()
	if victim != nil {
		h.drop(victim)
	}
	return l, fuse.OK
}

// oldestLocked returns the least recently used listing.
func (h *handlelessDirs) oldestLocked() *listing {
	var old *listing
	for _, ls := range h.byNode {
		for _, l := range ls {
			if old == nil || l.used < old.used {
				old = l
			}
		}
	}
	return old
}

// drop forgets listing l and releases its handle, once no read uses it.
func (h *handlelessDirs) drop(l *listing) {
	h.mu.Lock()
	ls := h.byNode[l.node]
	for i, x := range ls {
		if x == l {
			ls = append(ls[:i:i], ls[i+1:]...)
			h.n--
			break
		}
	}
	if len(ls) == 0 {
		delete(h.byNode, l.node)
	} else {
		h.byNode[l.node] = ls
	}
	h.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	h.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: l.node}, Fh: l.fh})
}

// FsyncDir syncs a directory, through a handle opened for it when the
// kernel has none.
func (h *handlelessDirs) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if in.Fh != 0 {
		return h.RawFileSystem.FsyncDir(cancel, in)
	}
	var out fuse.OpenOut
	oin := fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	if st := h.RawFileSystem.OpenDir(cancel, &oin, &out); !st.Ok() {
		return st
	}
	defer h.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: in.NodeId}, Fh: out.Fh})
	fin := *in
	fin.Fh = out.Fh
	return h.RawFileSystem.FsyncDir(cancel, &fin)
}

// Forget releases the listings of a directory the kernel forgets.
func (h *handlelessDirs) Forget(nodeid, nlookup uint64) {
	h.mu.Lock()
	ls := append([]*listing(nil), h.byNode[nodeid]...)
	h.mu.Unlock()
	for _, l := range ls {
		h.drop(l)
	}
	h.RawFileSystem.Forget(nodeid, nlookup)
}
