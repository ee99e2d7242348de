package fusefs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// Perm is the permission of a branch, as in aufs.
type Perm int

const (
	// PermRO is a read-only branch whose own whiteouts are not honoured.
	PermRO Perm = iota
	// PermROWH is a read-only branch whose whiteouts are honoured ("wh", "ro+wh").
	PermROWH
	// PermRW is a writable branch; whiteouts and copy-ups are made here.
	PermRW
)

func (p Perm) String() string {
	switch p {
	case PermRW:
		return "rw"
	case PermROWH:
		return "wh"
	default:
		return "ro"
	}
}

// honoursWhiteouts reports whether whiteouts found in a branch hide lower
// branches' names.
func (p Perm) honoursWhiteouts() bool { return p != PermRO }

// ParsePerm parses an aufs permission word.
func ParsePerm(s string) (Perm, error) {
	switch s {
	case "rw":
		return PermRW, nil
	case "ro":
		return PermRO, nil
	case "rr":
		return PermRO, nil
	case "wh", "ro+wh", "rr+wh":
		return PermROWH, nil
	}
	return 0, fmt.Errorf("%w: unknown permission %q: use rw, ro or wh (ro+wh)", ErrBadBranch, s)
}

// Branch is one directory of the union stack.
type Branch struct {
	Path string
	Perm Perm
}

// ParseBranch parses "DIR=PERM" (PERM defaults to ro, or rw for the first
// branch as in aufs when omitted).
func ParseBranch(spec string, first bool) (Branch, error) {
	if spec == "" {
		return Branch{}, fmt.Errorf("%w: empty branch: write DIR=rw, DIR=wh or DIR=ro", ErrBadBranch)
	}
	dir, perm := spec, ""
	if i := strings.LastIndexByte(spec, '='); i >= 0 {
		dir, perm = spec[:i], spec[i+1:]
	}
	b := Branch{Path: dir, Perm: PermRO}
	if perm == "" && first {
		b.Perm = PermRW
	} else if perm != "" {
		p, err := ParsePerm(perm)
		if err != nil {
			return Branch{}, fmt.Errorf("branch %q: %w", spec, err)
		}
		b.Perm = p
	}
	if dir == "" {
		return Branch{}, fmt.Errorf("%w: %q has no directory: write DIR=%s", ErrBadBranch, spec, perm)
	}
	return b, nil
}

// ParseBranches parses the aufs "br=" value: branches separated by ':',
// topmost first ("/up=rw:/mid=wh:/low=ro").
func ParseBranches(s string) ([]Branch, error) {
	var out []Branch
	for i, spec := range strings.Split(s, ":") {
		b, err := ParseBranch(spec, i == 0)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// WhiteoutFormat selects how whiteouts and opaque markers are written into
// rw branches. Both formats are always read.
type WhiteoutFormat int

const (
	// FormatAUFS writes ".wh.NAME" files and ".wh..wh..opq" markers.
	FormatAUFS WhiteoutFormat = iota
	// FormatOverlay writes 0/0 character devices (or overlay.whiteout
	// xattr files where mknod is refused) and overlay.opaque xattrs, as
	// overlayfs, so that an rw branch is a valid overlayfs upper layer.
	FormatOverlay
)

// Config describes a union mount.
type Config struct {
	// Branches, topmost first.
	Branches []Branch
	// Whiteouts selects the format written into rw branches.
	Whiteouts WhiteoutFormat
	// WorkDir, when set (overlay mode), holds the staging directory and the
	// hard-link index of the topmost rw branch instead of that branch
	// itself. It must be on the same filesystem.
	WorkDir string
	// Reval re-resolves every name on every operation and disables kernel
	// caching, so that changes made directly in a branch are seen
	// (aufs udba=reval).
	Reval bool
	// Timeout is the kernel entry and attribute cache lifetime when Reval
	// is off; zero means DefaultTimeout.
	Timeout time.Duration
	// NoPassthrough turns FUSE passthrough off even where the kernel would
	// grant it.
	NoPassthrough bool
	// Fsync makes copy-up sync the copied data before renaming it into
	// place (default true via DefaultConfig).
	NoFsync bool
	// UIDMap and GIDMap map stored ids to shown ones (fuse-overlayfs's
	// uidmapping/gidmapping); nil shows ids as stored.
	UIDMap, GIDMap []IDMap
	// SquashUID and SquashGID, when set, show every object as owned by
	// that id (squash_to_root, squash_to_uid, squash_to_gid).
	SquashUID, SquashGID *uint32
	// StaticNlink shows every directory with one link.
	StaticNlink bool
	// NoXattrs refuses extended attributes with ENOTSUP.
	NoXattrs bool
	// XattrPermissions (fuse-overlayfs's xattr_permissions) makes the
	// topmost rw branch keep owners and modes in an extended attribute
	// instead of the inode: 1 in security.fuseoverlayfs.override_stat,
	// 2 in user.fuseoverlayfs.override_stat; 0 off.
	XattrPermissions int
	// Metacopy (overlayfs's metacopy=on) copies only the metadata of a
	// lower regular file up on a change of its owner, mode, times or
	// extended attributes: the upper file is sparse, has the lower's
	// size and carries the overlay.metacopy attribute, and reads go to
	// the lower file at the same path until a change of the data copies
	// it up whole. Overlay format only.
	Metacopy bool
	// ReadOnly refuses every change with EROFS, whatever the branches.
	ReadOnly bool
	// Passed lists generic mount options ("nosuid", "nodev", ...) given on
	// the command line, applied to the FUSE mount.
	Passed []string
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Validate checks the branches: each exists, is a readable directory, and
// none is inside another or inside the mountpoint mnt (which may be "").
func (c *Config) Validate(mnt string) error {
	if len(c.Branches) == 0 {
		return ErrNoBranches
	}
	var abs []string
	for i, b := range c.Branches {
		p, err := filepath.Abs(b.Path)
		if err != nil {
			return fmt.Errorf("branch %q: %w", b.Path, err)
		}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		fi, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%w: %s does not exist: create it or fix the path", ErrBadBranch, b.Path)
			}
			return fmt.Errorf("%w: %s: %v", ErrBadBranch, b.Path, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %s is not a directory: a branch must be a directory", ErrBadBranch, b.Path)
		}
		mode := unix.R_OK | unix.X_OK
		if b.Perm == PermRW {
			mode |= unix.W_OK
		}
		if err := sys.Access(p, uint32(mode)); err != nil {
			return fmt.Errorf("%w: %s is not accessible (%s branch needs %s): %w; fix its permissions", ErrBadBranch, b.Path, b.Perm, accessWords(b.Perm), err)
		}
		c.Branches[i].Path = p
		abs = append(abs, p)
	}
	for i := range abs {
		for j := range abs {
			if i != j && (abs[i] == abs[j] || isInside(abs[i], abs[j])) {
				if abs[i] == abs[j] {
					return fmt.Errorf("%w: %s is given twice: give each directory once", ErrBadBranch, abs[i])
				}
				return fmt.Errorf("%w: %s is inside branch %s: branches must not nest", ErrBadBranch, abs[i], abs[j])
			}
		}
	}
	if mnt != "" {
		m, err := filepath.Abs(mnt)
		if err != nil {
			return err
		}
		if r, err := filepath.EvalSymlinks(m); err == nil {
			m = r
		}
		for _, p := range abs {
			if p == m || isInside(p, m) {
				return fmt.Errorf("%w: %s is inside the mountpoint %s: choose a mountpoint outside the branches", ErrBadBranch, p, m)
			}
			if isInside(m, p) {
				return fmt.Errorf("%w: the mountpoint %s is inside branch %s: choose a mountpoint outside the branches", ErrBadBranch, m, p)
			}
		}
	}
	return nil
}

// checkMetacopy refuses metacopy=on where ufs cannot write metacopy files:
// they are an overlayfs format, which aufs-format branches do not know.
func (c *Config) checkMetacopy() error {
	if c.Metacopy && c.Whiteouts != FormatOverlay {
		return fmt.Errorf("%w: metacopy=on writes overlayfs metacopy files, which need the overlay format: mount with lowerdir=,upperdir=,workdir= instead of br=", ErrBadOption)
	}
	return nil
}

func accessWords(p Perm) string {
	if p == PermRW {
		return "read, write and search"
	}
	return "read and search"
}

// isInside reports whether p lies strictly below dir.
func isInside(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}
