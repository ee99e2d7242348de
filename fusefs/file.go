package fusefs

import (
	"context"
	"os"
	"sync"
	"syscall"

	"github.com/urun-dev/urun/internal/sys"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// file is an open branch file. Reads and writes go straight to the branch
// descriptor (or through the kernel, with passthrough).
type file struct {
	*fs.LoopbackFile
	n           *node
	osf         *os.File
	writable    bool
	passthrough bool
	// lower is set for a read-only open of an object in a read-only
	// branch of a writable union: once the object is copied up, reads
	// follow the copy (see current).
	lower bool

	// mu protects cur.
	mu sync.Mutex
	// cur is the copied-up object, opened read-only on the first read
	// after the copy-up.
	cur *os.File
}

var (
	_ fs.FilePassthroughFder = (*file)(nil)
	_ fs.FileReleaser        = (*file)(nil)
	_ fs.FileReader          = (*file)(nil)
	_ fs.FileLseeker         = (*file)(nil)
)

// PassthroughFd offers the branch descriptor for FUSE passthrough. It is
// only offered for objects that can no longer move to another branch (in an
// rw branch, or in a read-only union): the kernel keeps one backing file per
// inode, so a lower file that is copied up later must not stay the backing
// of its writers.
func (f *file) PassthroughFd() (int, bool) {
	if !f.passthrough {
		return -1, false
	}
	return f.LoopbackFile.PassthroughFd()
}

// newFile wraps a branch descriptor opened for node n and registers it with
// n. Passthrough is offered only when no open of n is served by the daemon:
// the kernel refuses to mix the two modes on one inode.
func (u *Union) newFile(n *node, fd int, s nodeState, flags uint32) *file {
	osf := os.NewFile(uintptr(fd), "")
	f := &file{
		LoopbackFile: fs.NewLoopbackFileFromOS(osf),
		n:            n,
		osf:          osf,
		writable:     flags&unix.O_ACCMODE != unix.O_RDONLY,
	}
	f.lower = u.topRW >= 0 && !u.br[s.dataBr()].rw()
	n.mu.Lock()
	defer n.mu.Unlock()
	f.passthrough = !u.cfg.NoPassthrough && (u.topRW < 0 || u.br[s.dataBr()].rw()) && n.cachedOpens == 0
	if !f.passthrough {
		n.cachedOpens++
	}
	if n.files == nil {
		n.files = map[*file]struct{}{}
	}
	n.files[f] = struct{}{}
	return f
}

// Release closes the branch descriptor.
func (f *file) Release(ctx context.Context) syscall.Errno {
	n := f.n
	n.mu.Lock()
	delete(n.files, f)
	if !f.passthrough {
		n.cachedOpens--
	}
	n.mu.Unlock()
	f.mu.Lock()
	if f.cur != nil {
		f.cur.Close()
		f.cur = nil
	}
	f.mu.Unlock()
	return f.LoopbackFile.Release(ctx)
}

// current returns the descriptor reads must use: the kernel keeps one page
// cache per inode, so once the object has been copied up every open of it
// must read the copy, or stale lower data would enter that cache and be
// seen (and written back through shared mappings) by the other opens.
func (f *file) current() (int, error) {
	if !f.lower {
		return int(f.osf.Fd()), nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil {
		return int(f.cur.Fd()), nil
	}
	s, err := f.n.state()
	if err != nil || !f.n.u.br[s.dataBr()].rw() {
		return int(f.osf.Fd()), nil
	}
	_, a, _, err := f.n.stat()
	if err != nil {
		return -1, err
	}
	defer a.Close()
	fd, err := sys.OpenBeneath(a.fd, a.name, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, err
	}
	f.cur = os.NewFile(uintptr(fd), "")
	return fd, nil
}

// Read reads from the object's current copy.
func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fd, err := f.current()
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	n, err := sys.Pread(fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Lseek serves SEEK_DATA and SEEK_HOLE on the object's current copy.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	fd, err := f.current()
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	n, err := sys.Seek(fd, int64(off), int(whence))
	return uint64(n), fs.ToErrno(err)
}

// anyFile returns a duplicate of the descriptor of an open file of n
// (preferring a writable one), for changes made through a descriptor once
// the name is gone; nil if none is open. The duplicate is taken under n.mu,
// so a concurrent release cannot close it under the caller, who closes it.
func (n *node) anyFile() *os.File {
	fd := n.anyFD()
	if fd < 0 {
		return nil
	}
	return os.NewFile(uintptr(fd), "")
}

// anyFD is anyFile as a raw descriptor, -1 if none.
func (n *node) anyFD() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pick *file
	for f := range n.files {
		if pick == nil || (f.writable && !pick.writable) {
			pick = f
		}
	}
	if pick == nil {
		return -1
	}
	fd, err := unix.FcntlInt(pick.osf.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// openFlags are the FOPEN flags of an open of a file of branch b: keep the
// page cache across opens unless branches may change behind the union's
// back, and no FLUSH request on close(2) where the branch's filesystem has
// nothing to flush (the daemon would only close a duplicate of its
// descriptor: a round trip per close for nothing).
func (u *Union) openFlags(b int) uint32 {
	var fl uint32
	if !u.cfg.Reval {
		fl |= fuse.FOPEN_KEEP_CACHE
	}
	if u.br[b].noFlush {
		fl |= fuse.FOPEN_NOFLUSH
	}
	return fl
}
