package fusefs

import (
	"errors"
	"strings"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// Names of the aufs format.
const (
	whPrefix   = ".wh."
	whOpaque   = ".wh..wh..opq"
	whMetaPfx  = ".wh..wh."
	workName   = ".wh..wh.work" // per rw branch: copy-up staging
	plinkName  = ".wh..wh.plnk" // per rw branch: hard-link index of copied-up lower files
	maxNameLen = 255
)

// Extended attributes of the overlay format.
var (
	opaqueXattrs    = []string{"trusted.overlay.opaque", "user.overlay.opaque"}
	whiteoutXattrs  = []string{"trusted.overlay.whiteout", "user.overlay.whiteout"}
	whiteoutsXattrs = []string{"trusted.overlay.whiteouts", "user.overlay.whiteouts"}
)

// isMetaName reports whether name belongs to the union's own bookkeeping
// (whiteouts, opaque markers, work directories) and must never show through
// the mount.
func isMetaName(name string) bool { return strings.HasPrefix(name, whPrefix) }

// isPrivateXattr reports whether an extended attribute belongs to the
// union's bookkeeping and is hidden from listings and refused to callers.
func isPrivateXattr(attr string) bool {
	return strings.HasPrefix(attr, "trusted.overlay.") || strings.HasPrefix(attr, "user.overlay.") || isFuseOverlayfsXattr(attr)
}

// isOverlayWhiteoutStat reports whether st is an overlay-format whiteout: a
// character device with device number 0/0.
func isOverlayWhiteoutStat(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// hasXattrY reports whether any of attrs is set to "y" on name in dirfd.
func hasXattrY(dirfd int, name string, attrs []string) bool {
	var buf [4]byte
	for _, a := range attrs {
		n, err := sys.Lgetxattr(dirfd, name, a, buf[:])
		if err == nil && n >= 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

// hasXattr reports whether any of attrs exists on name in dirfd.
func hasXattr(dirfd int, name string, attrs []string) bool {
	for _, a := range attrs {
		if _, err := sys.Lgetxattr(dirfd, name, a, nil); err == nil {
			return true
		}
	}
	return false
}

// exists reports whether name exists in dirfd (without following symlinks).
func exists(dirfd int, name string) bool {
	var st unix.Stat_t
	return sys.Fstatat(dirfd, name, &st) == nil
}

// isOpaqueDir reports whether the directory name in dirfd stops the merge
// with lower branches, in either format.
func isOpaqueDir(dirfd int, name string) bool {
	fd, err := sys.OpenBeneath(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return exists(fd, whOpaque) || hasXattrY(dirfd, name, opaqueXattrs)
}

// mayHoldXattrWhiteouts reports whether the directory dirfd is marked as
// holding overlay xattr whiteouts: overlay.opaque set to "x" (Linux 6.8 and
// later), or the overlay.whiteouts attribute of Linux 6.7.
func mayHoldXattrWhiteouts(dirfd int) bool {
	var buf [4]byte
	for _, a := range opaqueXattrs {
		n, err := sys.Lgetxattr(dirfd, ".", a, buf[:])
		if err == nil && n >= 1 && buf[0] == 'x' {
			return true
		}
	}
	return hasXattr(dirfd, ".", whiteoutsXattrs)
}

// isWhiteoutAt reports whether the object st, name in dirfd, is an
// overlay-format whiteout: a 0/0 device, or an empty file with the
// overlay.whiteout attribute in a directory marked for them. The directory
// marker is read last, only for the rare file that carries the attribute.
func isWhiteoutAt(dirfd int, name string, st *unix.Stat_t) bool {
	if isOverlayWhiteoutStat(st) {
		return true
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 &&
		hasXattr(dirfd, name, whiteoutXattrs) && mayHoldXattrWhiteouts(dirfd)
}

// isXattrWhiteout reports whether the regular file name (size 0) in dirfd
// is an overlay xattr whiteout; dirHasWhiteouts says whether its directory
// carries the marker that makes such files possible (mayHoldXattrWhiteouts).
func isXattrWhiteout(dirfd int, name string, st *unix.Stat_t, dirHasWhiteouts bool) bool {
	return dirHasWhiteouts && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 &&
		hasXattr(dirfd, name, whiteoutXattrs)
}

// ignoreNotExist turns ENOENT into nil.
func ignoreNotExist(err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// linkWhiteout makes name in dirfd a hard link of the branch's shared
// whiteout, making that whiteout on first use and a fresh one when it has
// as many links as the filesystem allows. errNoSharedWhiteout means the
// branch cannot share whiteouts.
func (b *branch) linkWhiteout(u *Union, dirfd int, name string) error {
	b.whMu.Lock()
	defer b.whMu.Unlock()
	for try := 0; try < 2 && !b.whOff; try++ {
		if b.whName == "" {
			wh := "wh" + u.tmpName()
			if err := sys.Mknodat(b.work, wh, unix.S_IFCHR, 0); err != nil {
				b.whOff = true
				break
			}
			b.whName = wh
		}
		err := sys.Linkat(b.work, b.whName, dirfd, name)
		if err == nil || !errors.Is(err, unix.EMLINK) {
			if errors.Is(err, unix.EPERM) {
				// Hard links refused (protected_hardlinks and a foreign
				// owner, or the filesystem): make whiteouts one by one.
				b.whOff = true
				break
			}
			return err
		}
		// This one is full: start another.
		if err := sys.Unlinkat(b.work, b.whName, 0); err != nil && !isNotFound(err) {
			return err
		}
		b.whName = ""
	}
	return errNoSharedWhiteout
}
