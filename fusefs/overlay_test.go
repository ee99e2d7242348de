package fusefs_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// overlayDirs is an overlayfs-style layout: lowers (topmost first), an
// upper and a work directory, all under one temporary directory.
type overlayDirs struct {
	lowers      []string
	upper, work string
	// extra are more mount options, comma-separated ("" for none).
	extra string
}

func newOverlayDirs(t *testing.T, nLowers int) overlayDirs {
	t.Helper()
	root := t.TempDir()
	d := overlayDirs{upper: filepath.Join(root, "upper"), work: filepath.Join(root, "work")}
	for i := range nLowers {
		d.lowers = append(d.lowers, filepath.Join(root, fmt.Sprintf("lower%d", i)))
	}
	for _, p := range append(append([]string{}, d.lowers...), d.upper, d.work) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d overlayDirs) options() string {
	o := "lowerdir=" + strings.Join(d.lowers, ":") + ",upperdir=" + d.upper + ",workdir=" + d.work
	if d.extra != "" {
		o += "," + d.extra
	}
	return o
}

// mountUfsOverlay mounts ufs in overlay mode from -o options and returns
// the mountpoint and a function that unmounts it (also run at cleanup).
func mountUfsOverlay(t *testing.T, opts string) (string, func()) {
	t.Helper()
	testutil.RequireFUSE(t)
	var cfg fusefs.Config
	if _, err := fusefs.ParseOptions(&cfg, []string{opts}); err != nil {
		t.Fatalf("options %q: %v", opts, err)
	}
	mnt := t.TempDir()
	srv, u, err := fusefs.Mount(mnt, cfg, fusefs.MountOptions{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	done := false
	unmount := func() {
		if done {
			return
		}
		done = true
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			_ = fusefs.Unmount(context.Background(), mnt, true)
		}
		u.Close()
	}
	t.Cleanup(unmount)
	return mnt, unmount
}

// mountKernelOverlay mounts kernel overlayfs and returns its mountpoint and
// unmount function.
func mountKernelOverlay(t *testing.T, d overlayDirs) (string, func()) {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", 0, d.options()); err != nil {
		t.Fatalf("mount kernel overlayfs: %v", err)
	}
	done := false
	unmount := func() {
		if !done {
			done = true
			if err := unix.Unmount(mnt, 0); err != nil {
				t.Errorf("unmount overlayfs: %v", err)
			}
		}
	}
	t.Cleanup(unmount)
	return mnt, unmount
}

// treeOf describes every object below dir: type, mode, size, content hash,
// symlink target and user xattrs, one line per path.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sha=%x", st.Size, sha256.Sum256(b))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		if names := userXattrs(p); len(names) > 0 {
			desc += " xattrs=" + strings.Join(names, ",")
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

func userXattrs(p string) []string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	var out []string
	for _, x := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(x, "user.") && !strings.HasPrefix(x, "user.overlay.") {
			v := make([]byte, 256)
			m, _ := unix.Lgetxattr(p, x, v)
			out = append(out, x+"="+string(v[:max(m, 0)]))
		}
	}
	sort.Strings(out)
	return out
}

func diffTrees(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if d := treeDiff(got, want); d != "" {
		t.Errorf("%s:\n%s", what, d)
	}
}

// overlayLowers fills two lower layers with a whiteout (0/0 device) and an
// opaque directory in the upper one, in overlayfs's own format.
func overlayLowers(t *testing.T, d overlayDirs) {
	t.Helper()
	testutil.Write(t, d.lowers[1], testutil.Tree{
		"etc/passwd": "root:x:0:0\n", "etc/gone": "gone", "usr/lib/a": "a", "usr/lib/b": "b",
		"opq/old": "old", "data/big": strings.Repeat("x", 100000), "link": "->etc/passwd",
	})
	testutil.Write(t, d.lowers[0], testutil.Tree{"etc/hosts": "127.0.0.1 localhost\n", "opq/new": "new", "usr/lib/c": "c"})
	testutil.OverlayWhiteout(t, filepath.Join(d.lowers[0], "etc/gone"))
	if err := unix.Setxattr(filepath.Join(d.lowers[0], "opq"), opaqueAttr(), []byte("y"), 0); err != nil {
		t.Skipf("set the overlay opaque xattr: %v", err)
	}
}

func opaqueAttr() string {
	if os.Geteuid() == 0 {
		return "trusted.overlay.opaque"
	}
	return "user.overlay.opaque"
}

// changes is a sequence of operations done through a union mount.
func changes(t *testing.T, mnt string) {
	t.Helper()
	m := func(p string) string { return filepath.Join(mnt, p) }
	steps := []struct {
		what string
		do   func() error
	}{
		{"append to a lower file", func() error {
			f, err := os.OpenFile(m("etc/passwd"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("user:x:1000:1000\n")
			return err
		}},
		{"remove a lower file", func() error { return os.Remove(m("usr/lib/a")) }},
		{"remove a lower directory tree", func() error { return os.RemoveAll(m("opq")) }},
		{"make a directory where one was removed", func() error { return os.Mkdir(m("opq"), 0o750) }},
		{"create a file in it", func() error { return os.WriteFile(m("opq/fresh"), []byte("fresh"), 0o640) }},
		{"rename a lower file", func() error { return os.Rename(m("usr/lib/b"), m("usr/lib/b2")) }},
		{"chmod a lower file", func() error { return os.Chmod(m("etc/hosts"), 0o600) }},
		{"set a user xattr", func() error { return unix.Setxattr(m("usr/lib/c"), "user.note", []byte("hi"), 0) }},
		{"symlink", func() error { return os.Symlink("../etc/hosts", m("usr/hosts")) }},
		{"truncate a big lower file", func() error { return os.Truncate(m("data/big"), 10) }},
		{"hard link", func() error { return os.Link(m("etc/hosts"), m("etc/hosts2")) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
}

// TestOverlayUpperForKernel changes a union in ufs's overlay mode, then
// mounts kernel overlayfs on the same lowers and upper: it must show the
// same tree as ufs did, and the upper must hold no aufs-format names.
func TestOverlayUpperForKernel(t *testing.T) {
	testutil.RequireRoot(t)
	d := newOverlayDirs(t, 2)
	overlayLowers(t, d)
	mnt, unmount := mountUfsOverlay(t, d.options())
	changes(t, mnt)
	ufsView := treeOf(t, mnt)
	if len(ufsView) < 12 || ufsView["usr/lib/b2"] == "" || ufsView["usr/lib/a"] != "" {
		t.Fatalf("unexpected union after the changes: %v", ufsView)
	}
	unmount()
	// ufs's own view after a remount is the same.
	mnt2, unmount2 := mountUfsOverlay(t, d.options())
	diffTrees(t, "ufs after remount", treeOf(t, mnt2), ufsView)
	unmount2()

	_ = filepath.WalkDir(d.upper, func(p string, de fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(de.Name(), ".wh.") {
			t.Errorf("aufs-format name in the overlay upper: %s", p)
		}
		return nil
	})
	if st := lstat(t, filepath.Join(d.upper, "usr/lib/a")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/usr/lib/a: mode %o rdev %d, want a 0/0 whiteout", st.Mode, st.Rdev)
	}
	if v, err := xattr(filepath.Join(d.upper, "opq"), opaqueAttr()); err != nil || v != "y" {
		t.Errorf("upper/opq: %s = %q, %v; want y", opaqueAttr(), v, err)
	}

	kmnt, _ := mountKernelOverlay(t, d)
	diffTrees(t, "kernel overlayfs over ufs's upper", treeOf(t, kmnt), ufsView)
}

// TestOverlayUpperFromKernel does the changes through kernel overlayfs, then
// mounts ufs on the same directories: ufs must show what overlayfs showed.
func TestOverlayUpperFromKernel(t *testing.T) {
	testutil.RequireRoot(t)
	d := newOverlayDirs(t, 2)
	overlayLowers(t, d)
	kmnt, kunmount := mountKernelOverlay(t, d)
	changes(t, kmnt)
	kernelView := treeOf(t, kmnt)
	kunmount()

	mnt, _ := mountUfsOverlay(t, d.options())
	diffTrees(t, "ufs over kernel overlayfs's upper", treeOf(t, mnt), kernelView)
}

// TestOverlayReadOnly mounts lowers only: a read-only union.
func TestOverlayReadOnly(t *testing.T) {
	d := newOverlayDirs(t, 2)
	overlayLowers(t, d)
	mnt, _ := mountUfsOverlay(t, "lowerdir="+strings.Join(d.lowers, ":"))
	wantContent(t, filepath.Join(mnt, "etc/hosts"), "127.0.0.1 localhost\n")
	wantMissing(t, filepath.Join(mnt, "etc/gone"))
	wantNames(t, filepath.Join(mnt, "opq"), "new")
	err := os.WriteFile(filepath.Join(mnt, "etc/new"), nil, 0o644)
	wantErrno(t, "create in a read-only union", err, unix.EROFS)
}

// TestOverlayRootless runs the changes in overlay mode as an unprivileged
// user: whiteouts are still 0/0 devices (mknod of a whiteout needs no
// privilege since Linux 5.8) and opaque markers are user.overlay xattrs.
func TestOverlayRootless(t *testing.T) {
	testutil.RequireRootless(t)
	d := newOverlayDirs(t, 2)
	overlayLowers(t, d)
	mnt, unmount := mountUfsOverlay(t, d.options())
	changes(t, mnt)
	view := treeOf(t, mnt)
	unmount()
	if st := lstat(t, filepath.Join(d.upper, "usr/lib/a")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/usr/lib/a: mode %o rdev %d, want a 0/0 whiteout", st.Mode, st.Rdev)
	}
	if v, err := xattr(filepath.Join(d.upper, "opq"), "user.overlay.opaque"); err != nil || v != "y" {
		t.Errorf("upper/opq: user.overlay.opaque = %q, %v; want y", v, err)
	}
	mnt2, _ := mountUfsOverlay(t, d.options())
	diffTrees(t, "after remount", treeOf(t, mnt2), view)
}

// TestOverlayIDMapping: uidmapping/gidmapping show stored ids mapped, store
// ids given through the union unmapped, and show ids outside every range
// as the overflow id; squash_to_uid shows everything as one owner.
func TestOverlayIDMapping(t *testing.T) {
	testutil.RequireRoot(t)
	d := newOverlayDirs(t, 1)
	testutil.Write(t, d.lowers[0], testutil.Tree{"a": "a", "b": "b", "c": "c"})
	for name, id := range map[string]int{"a": 0, "b": 1, "c": 70000} {
		if err := os.Lchown(filepath.Join(d.lowers[0], name), id, id); err != nil {
			t.Fatal(err)
		}
	}
	maps := "uidmapping=0:1000:1:1:110000:65536,gidmapping=0:1000:1:1:110000:65536"
	mnt, unmount := mountUfsOverlay(t, d.options()+","+maps)
	for name, want := range map[string]uint32{"a": 1000, "b": 110000, "c": 65534} {
		st := lstat(t, filepath.Join(mnt, name))
		if st.Uid != want || st.Gid != want {
			t.Errorf("%s: shown as %d:%d, want %d:%d", name, st.Uid, st.Gid, want, want)
		}
	}
	if err := os.Lchown(filepath.Join(mnt, "a"), 110005, 1000); err != nil {
		t.Fatalf("chown to a mapped id: %v", err)
	}
	if st := lstat(t, filepath.Join(d.upper, "a")); st.Uid != 6 || st.Gid != 0 {
		t.Errorf("upper/a stored as %d:%d, want 6:0", st.Uid, st.Gid)
	}
	err := os.Lchown(filepath.Join(mnt, "b"), 5, 5)
	wantErrno(t, "chown to an id outside the mapping", err, unix.EINVAL)
	unmount()

	mnt2, _ := mountUfsOverlay(t, d.options()+",squash_to_uid=7,squash_to_gid=8,static_nlink")
	if st := lstat(t, filepath.Join(mnt2, "b")); st.Uid != 7 || st.Gid != 8 {
		t.Errorf("squashed: b shown as %d:%d, want 7:8", st.Uid, st.Gid)
	}
	if st := lstat(t, mnt2); st.Nlink != 1 {
		t.Errorf("static_nlink: root has %d links, want 1", st.Nlink)
	}
}

// TestOverlayNoXattrs: noxattrs refuses extended attributes.
func TestOverlayNoXattrs(t *testing.T) {
	d := newOverlayDirs(t, 1)
	testutil.Write(t, d.lowers[0], testutil.Tree{"a": "a"})
	mnt, _ := mountUfsOverlay(t, d.options()+",noxattrs=1")
	err := unix.Setxattr(filepath.Join(mnt, "a"), "user.k", []byte("v"), 0)
	wantErrno(t, "setxattr with noxattrs", err, unix.ENOTSUP)
	_, err = unix.Getxattr(filepath.Join(mnt, "a"), "user.k", nil)
	wantErrno(t, "getxattr with noxattrs", err, unix.ENOTSUP)
}
