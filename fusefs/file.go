package fusefs

import (
	"context"
	"os"
	"syscall"

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
}

var (
	_ fs.FilePassthroughFder = (*file)(nil)
	_ fs.FileReleaser        = (*file)(nil)
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
	n.mu.Lock()
	defer n.mu.Unlock()
	f.passthrough = !u.cfg.NoPassthrough && (u.topRW < 0 || u.br[s.br].rw()) && n.cachedOpens == 0
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
	return f.LoopbackFile.Release(ctx)
}

// anyFile returns an open file of n (preferring a writable one), for
// changes made through a descriptor once the name is gone.
func (n *node) anyFile() *file {
	n.mu.Lock()
	defer n.mu.Unlock()
	var any *file
	for f := range n.files {
		if f.writable {
			return f
		}
		any = f
	}
	return any
}

// openFlags are the FOPEN flags of every open: keep the page cache across
// opens unless branches may change behind the union's back.
func (u *Union) openFlags() uint32 {
	if u.cfg.Reval {
		return 0
	}
	return fuse.FOPEN_KEEP_CACHE
}
