package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Stat overrides (xattr_permissions, fuse-overlayfs's format): owners and
// modes kept in an extended attribute instead of the inode.

const (
	overrideUser       = "user.fuseoverlayfs.override_stat"
	overridePrivileged = "security.fuseoverlayfs.override_stat"
)

// wantShown checks the owner and permission bits path shows.
func wantShown(t *testing.T, path string, uid, gid, perm uint32) {
	t.Helper()
	st := lstat(t, path)
	if st.Uid != uid || st.Gid != gid || st.Mode&07777 != perm {
		t.Errorf("%s shows %d:%d %04o, want %d:%d %04o", path, st.Uid, st.Gid, st.Mode&07777, uid, gid, perm)
	}
}

// wantOverride checks the override attribute attr of a branch file.
func wantOverride(t *testing.T, path, attr, want string) {
	t.Helper()
	if got, err := xattr(path, attr); err != nil || got != want {
		t.Errorf("%s: %s = %q, %v; want %q", path, attr, got, err, want)
	}
}

// TestStatOverride runs as root (chown to other ids needs CAP_CHOWN at the
// kernel's permission check): lower layers whose root carries the override
// attribute show the owners and modes their objects' attributes hold, and
// with xattr_permissions every change in the upper (chown, chmod, new
// objects, copy-ups) goes to the attribute, leaving the inode's owner the
// daemon's. The upper keeps its meaning across a remount.
func TestStatOverride(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		level, attr string
	}{
		{"2", overrideUser},
		{"1", overridePrivileged},
	} {
		t.Run("xattr_permissions="+tc.level, func(t *testing.T) {
			d := newOverlayDirs(t, 1)
			low := d.lowers[0]
			testutil.Write(t, low, testutil.Tree{"f": "f", "plain": "p", "dir/g": "g", "link": "->f"})
			setxattr(t, low, tc.attr, "0:0:755")
			setxattr(t, filepath.Join(low, "f"), tc.attr, "1000:1001:640")
			setxattr(t, filepath.Join(low, "dir"), tc.attr, "1002:1003:2750")
			mnt, unmount := mountUfsOverlay(t, d.options()+",xattr_permissions="+tc.level)

			wantShown(t, filepath.Join(mnt, "f"), 1000, 1001, 0o640)
			wantShown(t, filepath.Join(mnt, "dir"), 1002, 1003, 0o2750)
			wantShown(t, filepath.Join(mnt, "plain"), 0, 0, 0o644)
			wantOverride(t, d.upper, tc.attr, "0:0:755") // taken from the lower root
			if slices.Contains(xattrNames(t, filepath.Join(mnt, "f")), tc.attr) {
				t.Errorf("the override attribute %s is listed through the union", tc.attr)
			}
			_, err := unix.Lgetxattr(filepath.Join(mnt, "f"), tc.attr, nil)
			wantErrno(t, "getxattr of the override attribute", err, unix.ENODATA)

			// chown and chmod of a lower file: copied up, kept in the
			// attribute, the inode stays the daemon's.
			if err := os.Lchown(filepath.Join(mnt, "f"), 123, 456); err != nil {
				t.Fatal(err)
			}
			wantShown(t, filepath.Join(mnt, "f"), 123, 456, 0o640)
			wantOverride(t, filepath.Join(d.upper, "f"), tc.attr, "123:456:640")
			if err := unix.Chmod(filepath.Join(mnt, "f"), 0o4711); err != nil { // os.Chmod drops 04000
				t.Fatal(err)
			}
			wantShown(t, filepath.Join(mnt, "f"), 123, 456, 0o4711)
			wantOverride(t, filepath.Join(d.upper, "f"), tc.attr, "123:456:4711")
			if st := lstat(t, filepath.Join(d.upper, "f")); st.Uid != 0 || st.Mode&0o600 != 0o600 {
				t.Errorf("upper/f inode: %d:%d %04o; want the daemon's (0), readable and writable", st.Uid, st.Gid, st.Mode&07777)
			}
			wantContent(t, filepath.Join(mnt, "f"), "f")

			// A copy-up for a write keeps the shown owner and mode.
			writeFile(t, filepath.Join(mnt, "dir/g"), "changed", 0)
			wantOverride(t, filepath.Join(d.upper, "dir"), tc.attr, "1002:1003:2750")

			// New objects: the caller's ids, the group of a set-group-ID
			// parent, the mode they were made with.
			writeFile(t, filepath.Join(mnt, "dir/new"), "n", 0o600)
			wantShown(t, filepath.Join(mnt, "dir/new"), 0, 1003, 0o600)
			wantOverride(t, filepath.Join(d.upper, "dir/new"), tc.attr, "0:1003:600")
			if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o700); err != nil {
				t.Fatal(err)
			}
			wantOverride(t, filepath.Join(d.upper, "sub"), tc.attr, "0:0:700")
			// Symlinks have no override: they show their inode.
			if err := os.Lchown(filepath.Join(mnt, "link"), 5, 6); err != nil {
				t.Fatal(err)
			}
			if st := lstat(t, filepath.Join(mnt, "link")); st.Uid != 5 || st.Gid != 6 {
				t.Errorf("link shows %d:%d, want 5:6", st.Uid, st.Gid)
			}
			view := treeOf(t, mnt)
			unmount()

			mnt2, _ := mountUfsOverlay(t, d.options()+",xattr_permissions="+tc.level)
			diffTrees(t, "after remount", treeOf(t, mnt2), view)
			wantShown(t, filepath.Join(mnt2, "f"), 123, 456, 0o4711)
		})
	}
}

// TestStatOverrideRootless: an unprivileged daemon with
// xattr_permissions=2 keeps the mode and owner of what its user changes in
// user.fuseoverlayfs.override_stat, and an upper without the attribute on
// its root takes the lower root's.
func TestStatOverrideRootless(t *testing.T) {
	testutil.RequireRootless(t)
	d := newOverlayDirs(t, 1)
	low := d.lowers[0]
	testutil.Write(t, low, testutil.Tree{"f": "f"})
	me := uint32(os.Getuid())
	gid := uint32(os.Getgid())
	root := overrideValue(me, gid, 0o755)
	if err := unix.Lsetxattr(low, overrideUser, []byte(root), 0); err != nil {
		t.Skipf("user xattrs on %s: %v", low, err)
	}
	setxattr(t, filepath.Join(low, "f"), overrideUser, overrideValue(me, gid, 0o444))
	mnt, _ := mountUfsOverlay(t, d.options()+",xattr_permissions=2")
	wantOverride(t, d.upper, overrideUser, root)
	wantShown(t, filepath.Join(mnt, "f"), me, gid, 0o444)
	if err := os.Chmod(filepath.Join(mnt, "f"), 0o604); err != nil {
		t.Fatal(err)
	}
	wantShown(t, filepath.Join(mnt, "f"), me, gid, 0o604)
	wantOverride(t, filepath.Join(d.upper, "f"), overrideUser, overrideValue(me, gid, 0o604))
	writeFile(t, filepath.Join(mnt, "new"), "n", 0o640)
	wantShown(t, filepath.Join(mnt, "new"), me, gid, 0o640)
	wantOverride(t, filepath.Join(d.upper, "new"), overrideUser, overrideValue(me, gid, 0o640))
}

// overrideValue is an override attribute's value, "UID:GID:OCTALMODE".
func overrideValue(uid, gid, mode uint32) string {
	return fmt.Sprintf("%d:%d:%o", uid, gid, mode)
}
