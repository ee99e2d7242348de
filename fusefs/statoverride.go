package fusefs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// Stat overrides, fuse-overlayfs's xattr_permissions: the owner and mode a
// directory or regular file shows are kept in an extended attribute,
// "UID:GID:OCTALMODE", instead of in its inode, so that an unprivileged
// daemon can store owners it may not chown to. A branch uses them when
// its root carries one of these attributes (looked for in this order);
// with xattr_permissions=1 (security.*, needs privilege) or =2 (user.*)
// the upper branch keeps the owners and modes of every change there.
const (
	xattrOverridePrivileged = "security.fuseoverlayfs.override_stat"
	xattrOverrideContainers = "user.containers.override_stat"
	xattrOverrideUser       = "user.fuseoverlayfs.override_stat"
)

var overrideXattrs = []string{xattrOverridePrivileged, xattrOverrideContainers, xattrOverrideUser}

// statOverride is the owner and permission bits an override attribute
// holds.
type statOverride struct{ uid, gid, mode uint32 }

func (o statOverride) String() string { return fmt.Sprintf("%d:%d:%o", o.uid, o.gid, o.mode&07777) }

// parseOverride parses "UID:GID:OCTALMODE".
func parseOverride(v string) (statOverride, error) {
	f := strings.Split(strings.TrimRight(v, "\x00\n"), ":")
	if len(f) != 3 {
		return statOverride{}, fmt.Errorf("stat override %q: want UID:GID:MODE", v)
	}
	uid, err1 := strconv.ParseUint(f[0], 10, 32)
	gid, err2 := strconv.ParseUint(f[1], 10, 32)
	mode, err3 := strconv.ParseUint(f[2], 8, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return statOverride{}, fmt.Errorf("stat override %q: %w", v, err)
	}
	return statOverride{uint32(uid), uint32(gid), uint32(mode) & 07777}, nil
}

// isFuseOverlayfsXattr reports whether attr is one of fuse-overlayfs's own
// attributes (stat overrides, its rootless opaque marker), which the union
// hides as fuse-overlayfs does; user.containers.* stays visible.
func isFuseOverlayfsXattr(attr string) bool {
	return strings.HasPrefix(attr, "user.fuseoverlayfs.") || strings.HasPrefix(attr, "security.fuseoverlayfs.")
}

// detectOverride returns the override attribute the root of a branch
// (the O_PATH descriptor fd) carries, "" if none.
func detectOverride(fd int) string {
	for _, x := range overrideXattrs {
		if _, err := sys.Lgetxattr(fd, ".", x, nil); err == nil {
			return x
		}
	}
	return ""
}

// setupUpperOverride makes the upper branch up keep owners and modes in
// the attribute xattr_permissions (1 or 2) selects. A root without it
// takes the first lower root's, else "0:0:555", as fuse-overlayfs does.
func (u *Union) setupUpperOverride(up *branch) error {
	level := u.cfg.XattrPermissions
	name := xattrOverrideUser
	if level == 1 {
		name = xattrOverridePrivileged
	}
	up.override, up.writeOverride = name, true
	_, err := sys.Lgetxattr(up.fd, ".", name, nil)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENODATA) {
		return fmt.Errorf("%w: xattr_permissions=%d: read %s on the upper %s: %w", ErrBadOption, level, name, up.Path, err)
	}
	value := []byte(statOverride{0, 0, 0o555}.String())
	from := []string{name}
	if level == 2 {
		from = append(from, xattrOverrideContainers)
	}
lowers:
	for _, b := range u.br {
		if b == up {
			continue
		}
		for _, x := range from {
			if v, err := sys.GetxattrAll(b.fd, ".", x); err == nil {
				value = v
				break lowers
			}
		}
	}
	if err := sys.Lsetxattr(up.fd, ".", name, value, 0); err != nil {
		hint := ""
		if level == 1 {
			hint = " (security.* attributes need privilege: use xattr_permissions=2 when rootless)"
		}
		return fmt.Errorf("%w: xattr_permissions=%d: store %s on the upper %s: %w%s", ErrBadOption, level, name, up.Path, err, hint)
	}
	return nil
}

// overrideStat applies the stat override of the object name in dirfd of
// branch b to st: directories and regular files of a branch that uses
// overrides show the owner and mode their attribute holds, if any.
func (u *Union) overrideStat(b, dirfd int, name string, st *unix.Stat_t) {
	x := u.br[b].override
	typ := st.Mode & unix.S_IFMT
	if x == "" || (typ != unix.S_IFDIR && typ != unix.S_IFREG) {
		return
	}
	var buf [64]byte
	n, err := sys.Lgetxattr(dirfd, name, x, buf[:])
	if err != nil {
		return // no override: the inode's own owner and mode
	}
	o, err := parseOverride(string(buf[:n]))
	if err != nil {
		u.log.Warn("ignoring a malformed stat override", "name", name, "err", err)
		return
	}
	st.Uid, st.Gid = o.uid, o.gid
	st.Mode = typ | o.mode
}

// storesOverride reports whether changes to an object of type typ in
// branch b store its owner and mode in the override attribute.
func (u *Union) storesOverride(b int, typ uint32) bool {
	return u.br[b].writeOverride && (typ == unix.S_IFDIR || typ == unix.S_IFREG)
}

// physicalMode is the permission bits an object of mode (the mode it
// shows) gets in its inode in branch b: where the mode is kept in a stat
// override, the inode stays readable and writable (a directory also
// searchable) for the daemon, whatever the mode shown.
func (u *Union) physicalMode(b int, mode uint32) uint32 {
	typ := mode & unix.S_IFMT
	perm := mode & 07777
	if !u.storesOverride(b, typ) {
		return perm
	}
	if typ == unix.S_IFDIR {
		return perm | 0o700
	}
	return perm | 0o600
}

// writeOverride stores o as the owner and mode of name in dirfd of branch
// b.
func (u *Union) writeOverride(b, dirfd int, name string, o statOverride) error {
	return sys.Lsetxattr(dirfd, name, u.br[b].override, []byte(o.String()), 0)
}
