package fusefs

import (
	"os"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// file is an open branch file. Reads and writes go straight to the branch
// descriptor (or through the kernel, with passthrough).
type file struct {
	*fs.LoopbackFile
	writable    bool
	passthrough bool
}

var _ fs.FilePassthroughFder = (*file)(nil)

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

func (u *Union) newFile(fd int, s nodeState, flags uint32) *file {
	return &file{
		LoopbackFile: fs.NewLoopbackFileFromOS(os.NewFile(uintptr(fd), "")),
		writable:     flags&unix.O_ACCMODE != unix.O_RDONLY,
		passthrough:  !u.cfg.NoPassthrough && (u.topRW < 0 || u.br[s.br].rw()),
	}
}

// openFlags are the FOPEN flags of every open: keep the page cache across
// opens unless branches may change behind the union's back.
func (u *Union) openFlags() uint32 {
	if u.cfg.Reval {
		return 0
	}
	return fuse.FOPEN_KEEP_CACHE
}
