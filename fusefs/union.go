package fusefs

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// branch is an open branch of the union.
type branch struct {
	Branch
	fd    int    // O_PATH|O_DIRECTORY descriptor of the branch root
	dev   uint64 // st_dev of the branch root
	fsIdx uint64 // index of dev among the distinct devices of the union
	work  int    // rw branches: O_PATH descriptor of the staging directory
	plink int    // rw branches: O_PATH descriptor of the hard-link index
	// override is the attribute holding the stat overrides of this
	// branch's objects ("" if it has none); writeOverride makes changes
	// store owners and modes there (xattr_permissions, upper only).
	override      string
	writeOverride bool
	// noFlush is set for a branch on a local filesystem, whose files have
	// nothing to flush on close(2) (no ->flush: ext4, xfs, btrfs, tmpfs,
	// f2fs); network and FUSE branches keep their close-time flush.
	noFlush bool

	// whMu protects whName and whOff.
	whMu sync.Mutex
	// whName is the shared whiteout of an rw branch: a 0/0 character
	// device in its staging directory that whiteouts are hard links of
	// ("" until the first whiteout needs it).
	whName string
	// whOff is set once the branch refused the shared whiteout (no mknod
	// of whiteouts, or no hard links): whiteouts are made one by one.
	whOff bool
}

func (b *branch) rw() bool { return b.work >= 0 }

type devIno struct{ dev, ino uint64 }

// Union is a mounted (or mountable) union of branches.
type Union struct {
	cfg   Config
	log   *slog.Logger
	br    []*branch
	topRW int // index of the topmost rw branch; -1 for a read-only union
	// privileged is set when the daemon runs as uid 0 in its user
	// namespace: objects it creates are then chowned to the caller.
	privileged bool

	seq atomic.Uint64 // names of staging files

	// gensMu protects gens and genSeq: the generation of each inode
	// number whose object the union made (see genOf).
	gensMu sync.Mutex
	gens   map[uint64]uint64
	genSeq uint64
	// dirGen numbers the distinct snapshots of directory listings
	// (dirHandle); listSeed seeds the hash that tells them apart.
	dirGen   atomic.Uint64
	listSeed maphash.Seed

	// cachedFDs counts the branch directory descriptors cached in nodes;
	// at most maxCachedFDs, a share of RLIMIT_NOFILE.
	cachedFDs    atomic.Int64
	maxCachedFDs int64

	// inoMu protects alias.
	inoMu sync.Mutex
	// alias maps the branch identity of a copied-up object to the inode
	// number it had before the copy-up.
	alias map[devIno]uint64
	// plinks maps the branch identities of a hard-linked object that was
	// copied up (its origin and its copy) to its hard-link index entry.
	plinks map[devIno]plinkRef
}

// New opens the branches of cfg. The caller must Close the union once it
// is no longer served.
func New(cfg Config) (*Union, error) {
	if len(cfg.Branches) == 0 {
		return nil, ErrNoBranches
	}
	if err := cfg.checkMetacopy(); err != nil {
		return nil, err
	}
	u := &Union{cfg: cfg, log: cfg.Logger, topRW: -1, alias: map[devIno]uint64{}, plinks: map[devIno]plinkRef{}, listSeed: maphash.MakeSeed()}
	if u.log == nil {
		u.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	u.privileged = os.Geteuid() == 0
	u.maxCachedFDs = 512
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur > 4096 {
		u.maxCachedFDs = int64(rl.Cur / 2)
	}
	devs := map[uint64]uint64{}
	ok := false
	defer func() {
		if !ok {
			u.Close()
		}
	}()
	for i, b := range cfg.Branches {
		fd, err := sys.OpenPath(b.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: open %s: %w", ErrBadBranch, b.Path, err)
		}
		ob := &branch{Branch: b, fd: fd, work: -1, plink: -1}
		u.br = append(u.br, ob)
		var st unix.Stat_t
		if err := sys.Fstatat(fd, "", &st); err != nil {
			return nil, fmt.Errorf("branch %s: %w", b.Path, err)
		}
		ob.dev = st.Dev
		ob.noFlush = localFS(fd)
		if _, seen := devs[st.Dev]; !seen {
			devs[st.Dev] = uint64(len(devs))
		}
		ob.fsIdx = devs[st.Dev]
		if b.Perm == PermRW && !cfg.ReadOnly {
			if u.topRW < 0 {
				u.topRW = i
			}
			base, workN, plinkN := ob.fd, workName, plinkName
			if cfg.WorkDir != "" && u.topRW == i {
				// Overlay mode: the upper stays a clean overlayfs upper;
				// the bookkeeping lives in the work directory.
				wfd, err := u.openWorkDir(ob, cfg.WorkDir)
				if err != nil {
					return nil, err
				}
				defer unix.Close(wfd)
				base, workN, plinkN = wfd, "ufs-work", "ufs-index"
			}
			if ob.work, err = u.metaDir(ob, base, workN, true); err != nil {
				return nil, err
			}
			if ob.plink, err = u.metaDir(ob, base, plinkN, false); err != nil {
				return nil, err
			}
		}
	}
	for _, b := range u.br {
		b.override = detectOverride(b.fd)
	}
	if cfg.XattrPermissions != 0 && u.topRW >= 0 {
		if err := u.setupUpperOverride(u.br[u.topRW]); err != nil {
			return nil, err
		}
	}
	for i, b := range u.br {
		if b.rw() {
			if err := u.loadPlinks(i); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return u, nil
}

// localFS reports whether the directory fd is on a local filesystem known to
// have no flush operation: closing a descriptor of it does no I/O.
func localFS(fd int) bool {
	var st unix.Statfs_t
	if err := sys.Fstatfs(fd, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.F2FS_SUPER_MAGIC:
		return true
	}
	return false
}

// openWorkDir opens an overlay-style work directory, which must be on the
// upper branch's filesystem so that copy-ups can be renamed into place.
func (u *Union) openWorkDir(upper *branch, dir string) (int, error) {
	fd, err := sys.OpenPath(dir)
	if err != nil {
		return -1, fmt.Errorf("%w: workdir %s: %w", ErrBadBranch, dir, err)
	}
	var st unix.Stat_t
	if err := sys.Fstatat(fd, "", &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("workdir %s: %w", dir, err)
	}
	if st.Dev != upper.dev {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: workdir %s and upperdir %s are on different filesystems: put the workdir beside the upperdir", ErrBadBranch, dir, upper.Path)
	}
	return fd, nil
}

// loadPlinks reads the hard-link index of rw branch b, so that hard links
// of copied-up lower files stay linked across remounts (as overlayfs with
// index=on). Entries are named ORIGINDEV_ORIGININO in hex.
func (u *Union) loadPlinks(b int) error {
	br := u.br[b]
	fd, err := sys.OpenBeneath(br.plink, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("branch %s: open its hard-link index: %w", br.Path, err)
	}
	defer unix.Close(fd)
	ents, err := sys.ReadDir(fd)
	if err != nil {
		return fmt.Errorf("branch %s: read its hard-link index: %w", br.Path, err)
	}
	for _, e := range ents {
		devStr, inoStr, ok := strings.Cut(e.Name, "_")
		dev, err1 := strconv.ParseUint(devStr, 16, 64)
		ino, err2 := strconv.ParseUint(inoStr, 16, 64)
		var st unix.Stat_t
		if !ok || err1 != nil || err2 != nil || sys.Fstatat(fd, e.Name, &st) != nil {
			u.log.Warn("ignoring a stray entry in the hard-link index", "branch", br.Path, "name", e.Name)
			continue
		}
		ref := plinkRef{b: b, name: e.Name, ino: st.Ino, pending: new(atomic.Int64)}
		u.plinks[devIno{dev, ino}] = ref
		u.plinks[devIno{br.dev, st.Ino}] = ref
		for j, ob := range u.br {
			if ob.dev == dev {
				u.alias[devIno{br.dev, st.Ino}] = u.inoFor(j, ino)
				break
			}
		}
	}
	return nil
}

// metaDir opens (making it if needed) a bookkeeping directory in the root
// of an rw branch; with clean, leftovers of an interrupted copy-up are
// removed so that nothing half-written survives a crash.
func (u *Union) metaDir(b *branch, base int, name string, clean bool) (int, error) {
	if err := sys.Mkdirat(base, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("branch %s: make %s: %w", b.Path, name, err)
	}
	if clean {
		if err := removeAllAt(base, name, false); err != nil {
			u.log.Warn("cannot clean the staging directory", "branch", b.Path, "err", err)
		}
	}
	fd, err := sys.OpenBeneath(base, name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, fmt.Errorf("branch %s: open %s: %w", b.Path, name, err)
	}
	return fd, nil
}

// Close releases the branch descriptors.
func (u *Union) Close() {
	for _, b := range u.br {
		for _, fd := range []int{b.fd, b.work, b.plink} {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	u.br = nil
}

// Root returns the root node to serve with fs.Mount or fs.NewNodeFS.
func (u *Union) Root() fs.InodeEmbedder {
	n := &node{u: u}
	n.st = nodeState{br: 0, valid: true}
	n.st.layers = u.rootLayers()
	return n
}

// rootLayers lists the branches merged at the root: all of them, down to
// the first whose root is opaque.
func (u *Union) rootLayers() []int {
	var l []int
	for i, b := range u.br {
		l = append(l, i)
		if b.Perm.honoursWhiteouts() && (exists(b.fd, whOpaque) || hasXattrY(b.fd, ".", opaqueXattrs)) {
			break
		}
	}
	return l
}

// DefaultTimeout is the kernel cache lifetime with udba=none.
const DefaultTimeout = 24 * time.Hour

// Options returns the go-fuse options for serving the union.
func (u *Union) Options() *fs.Options {
	timeout := u.cfg.Timeout
	if timeout == 0 {
		// ufs is the only writer (udba=none): every change goes through the
		// kernel, which updates its own caches, so they never need to expire.
		timeout = DefaultTimeout
	}
	if u.cfg.Reval {
		timeout = 0
	}
	o := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName:     u.br[0].Path,
			Name:       "ufs",
			Options:    append([]string{"default_permissions"}, u.mountFlags()...),
			AllowOther: u.privileged,
			MaxWrite:   1 << 20,
			// No lock requests: the kernel keeps POSIX and flock locks
			// on the union's inode itself, with exact POSIX semantics
			// (per process) and unaffected by copy-up.
			EnableLocks:          false,
			EnableSymlinkCaching: !u.cfg.Reval,
			DirectMount:          true,
			// READDIRPLUS only where it pays: the kernel asks for the
			// attributes with the first batch of a listing, and for the
			// later ones only once a listed name has been looked up
			// (ls -l, a stat walk). A bare listing of a big directory
			// then costs no lookup per entry.
			// HANDLE_KILLPRIV_V2: the daemon clears set-ID bits (see
			// killPriv), so the kernel need not ask for
			// security.capability before every write.
			ExtraCapabilities: fuse.CAP_READDIRPLUS_AUTO | fuse.CAP_HANDLE_KILLPRIV_V2,
		},
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: 1, Mode: syscall.S_IFDIR},
	}
	return o
}

// inoFor returns the inode number the union shows for object ino on the
// device of branch b: the inode number of a copied-up object's origin, or
// the branch inode number tagged with the branch's filesystem index.
func (u *Union) inoFor(b int, ino uint64) uint64 {
	br := u.br[b]
	u.inoMu.Lock()
	v, ok := u.alias[devIno{br.dev, ino}]
	u.inoMu.Unlock()
	if ok {
		return v
	}
	return xino(br.fsIdx, ino)
}

// xino folds a filesystem index into the high bits of an inode number, as
// overlayfs's xino does; numbers that do not fit are hashed into the range
// above all tagged numbers.
func xino(fsIdx, ino uint64) uint64 {
	const bits = 56
	if ino <= 1 || ino >= 1<<bits || fsIdx >= 1<<6 {
		h := (ino ^ fsIdx<<58) * 0x9e3779b97f4a7c15
		return h | 1<<63
	}
	return fsIdx<<bits | ino
}

// setAlias records that the object now stored as (dev, ino) in branch b
// keeps the union inode number old.
func (u *Union) setAlias(b int, ino, old uint64) {
	u.inoMu.Lock()
	u.alias[devIno{u.br[b].dev, ino}] = old
	u.inoMu.Unlock()
}

// forgetAlias drops what the union remembers of the object (dev, ino) of
// branch b once it is gone from the branch, so that a new object reusing
// the inode number is not taken for it.
func (u *Union) forgetAlias(b int, ino uint64) {
	key := devIno{u.br[b].dev, ino}
	u.inoMu.Lock()
	delete(u.alias, key)
	u.inoMu.Unlock()
}

// tmpName returns a fresh name for a staging file.
func (u *Union) tmpName() string {
	return "t" + strconv.FormatUint(u.seq.Add(1), 36) + "." + strconv.Itoa(os.Getpid())
}

// removeAllAt removes the contents of dir name in dirfd (and dir itself when
// self is set), without following symlinks.
func removeAllAt(dirfd int, name string, self bool) error {
	fd, err := sys.OpenBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return ignoreNotExist(err)
	}
	ents, err := sys.ReadDir(fd)
	if err == nil {
		for _, e := range ents {
			if e.Type == unix.DT_DIR {
				if err := removeAllAt(fd, e.Name, true); err != nil {
					unix.Close(fd)
					return err
				}
				continue
			}
			if err := sys.Unlinkat(fd, e.Name, 0); ignoreNotExist(err) != nil {
				unix.Close(fd)
				return err
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if self {
		return ignoreNotExist(sys.Unlinkat(dirfd, name, unix.AT_REMOVEDIR))
	}
	return nil
}

// mountFlags turns the generic options given on the command line into FUSE
// mount options.
func (u *Union) mountFlags() []string {
	var out []string
	for _, o := range u.cfg.Passed {
		switch o {
		case "nosuid", "nodev", "noexec", "noatime", "relatime", "suid", "dev", "exec", "atime":
			out = append(out, o)
		}
	}
	if u.cfg.ReadOnly || u.topRW < 0 {
		out = append(out, "ro")
	}
	return out
}

// genOf returns the generation to give the object with union inode number
// ino: a fresh one for an object the union has just made (fresh), else
// the one it was made with, or 0 for objects made before the mount or
// behind it. A branch filesystem reuses the inode numbers of removed
// objects at once (ext4 does); without a new generation go-fuse would
// hand the new object the node of the old one while the kernel still
// holds that: a directory alias in another place (ESTALE from the
// kernel's d_splice_alias) or a symlink's node reached through a stale
// path.
func (u *Union) genOf(ino uint64, fresh bool) uint64 {
	u.gensMu.Lock()
	defer u.gensMu.Unlock()
	if fresh {
		u.genSeq++
		if u.gens == nil {
			u.gens = map[uint64]uint64{}
		}
		u.gens[ino] = u.genSeq
		return u.genSeq
	}
	return u.gens[ino]
}

// forgetGen drops the generation of ino when the kernel forgets the node
// that had it (a later node of the same number keeps its own).
func (u *Union) forgetGen(ino, gen uint64) {
	if gen == 0 {
		return
	}
	u.gensMu.Lock()
	if u.gens[ino] == gen {
		delete(u.gens, ino)
	}
	u.gensMu.Unlock()
}
