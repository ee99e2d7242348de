package fusefs_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// The rest of POSIX through the union: hard links, symlinks, fifos,
// sockets, device nodes, xattrs, statfs, names at NAME_MAX, paths beyond
// PATH_MAX, inode identity and ownership.

func TestHardLinks(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "link of an rw file",
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("a"), "data", 0o644)
				if err := os.Link(e.m("a"), e.m("b")); err != nil {
					t.Fatal(err)
				}
				a, b := lstat(t, e.m("a")), lstat(t, e.m("b"))
				if a.Ino != b.Ino || a.Nlink != 2 {
					t.Errorf("ino %d/%d nlink %d; want one inode with 2 links", a.Ino, b.Ino, a.Nlink)
				}
				writeFile(t, e.m("b"), "changed", 0)
				wantContent(t, e.m("a"), "changed")
				if err := os.Remove(e.m("a")); err != nil {
					t.Fatal(err)
				}
				if st := lstat(t, e.m("b")); st.Nlink != 1 {
					t.Errorf("nlink %d after unlink of the other name, want 1", st.Nlink)
				}
				wantContent(t, e.m("b"), "changed")
			},
		},
		{
			name: "link of a lower file into another lower directory",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d1/f": "ro", "d2/x": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				ino := lstat(t, e.m("d1/f")).Ino
				if err := os.Link(e.m("d1/f"), e.m("d2/g")); err != nil {
					t.Fatal(err)
				}
				f, g := lstat(t, e.m("d1/f")), lstat(t, e.m("d2/g"))
				if f.Ino != ino || g.Ino != ino || g.Nlink != 2 {
					t.Errorf("ino %d/%d (was %d) nlink %d; want one inode with 2 links", f.Ino, g.Ino, ino, g.Nlink)
				}
				wantNames(t, e.m("d2"), "g", "x")
				wantContent(t, e.m("d2/g"), "ro")
				if st := lstat(t, filepath.Join(e.RO, "d1/f")); st.Nlink != 1 {
					t.Errorf("lower file got linked: nlink %d", st.Nlink)
				}
			},
		},
		{
			name: "link of a directory is refused",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "link d", os.Link(e.m("d"), e.m("d2")), unix.EPERM)
			},
		},
		{
			name: "link over an existing name is EEXIST",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a": "a", "b": "b"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "link a b", os.Link(e.m("a"), e.m("b")), unix.EEXIST)
				wantContent(t, e.m("b"), "b")
			},
		},
	})
}

func TestSymlinks(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "symlinks made through the union",
			check: func(t *testing.T, e *unionEnv) {
				long := strings.Repeat("x/", 2047) + "y" // 4095 bytes, the longest ext4 takes
				for name, target := range map[string]string{"rel": "target", "abs": "/nonexistent/target", "dot": ".", "long": long} {
					if err := os.Symlink(target, e.m(name)); err != nil {
						t.Fatalf("symlink %s: %v", name, err)
					}
					if got, err := os.Readlink(e.m(name)); err != nil || got != target {
						t.Errorf("readlink %s: %.40q, %v; want %.40q", name, got, err, target)
					}
					st := lstat(t, e.m(name))
					if st.Mode != unix.S_IFLNK|0o777 || st.Size != int64(len(target)) {
						t.Errorf("%s: mode %o size %d, want a symlink of size %d", name, st.Mode, st.Size, len(target))
					}
				}
				writeFile(t, e.m("target"), "t", 0o644)
				wantContent(t, e.m("rel"), "t")
			},
		},
		{
			name: "lower symlinks",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/l": "->../t", "t": "lower target", "dl": "->d"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if got, err := os.Readlink(e.m("d/l")); err != nil || got != "../t" {
					t.Errorf("readlink d/l: %q, %v", got, err)
				}
				wantContent(t, e.m("d/l"), "lower target")
				wantContent(t, e.m("dl/l"), "lower target")
			},
		},
	})
}

func TestSpecialFiles(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "fifo",
			setup: func(t *testing.T, e *unionEnv) {
				if err := unix.Mkfifo(filepath.Join(e.RO, "lowfifo"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := unix.Mkfifo(e.m("fifo"), 0o640); err != nil {
					t.Fatal(err)
				}
				wantMode(t, e.m("fifo"), unix.S_IFIFO|0o640)
				for _, n := range []string{"fifo", "lowfifo"} {
					fd, err := unix.Open(e.m(n), unix.O_RDWR|unix.O_NONBLOCK, 0)
					if err != nil {
						t.Fatalf("open %s: %v", n, err)
					}
					if _, err := unix.Write(fd, []byte("through "+n)); err != nil {
						t.Errorf("write %s: %v", n, err)
					}
					buf := make([]byte, 64)
					k, err := unix.Read(fd, buf)
					if err != nil || string(buf[:k]) != "through "+n {
						t.Errorf("read %s: %q, %v", n, buf[:max(k, 0)], err)
					}
					unix.Close(fd)
				}
			},
		},
		{
			name: "unix socket",
			check: func(t *testing.T, e *unionEnv) {
				// The mount's path may exceed sun_path: bind through the
				// directory's descriptor.
				dir, err := os.Open(e.Mnt)
				if err != nil {
					t.Fatal(err)
				}
				defer dir.Close()
				addr := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/sock"
				l, err := net.Listen("unix", addr)
				if err != nil {
					t.Fatalf("listen on a socket in the union: %v", err)
				}
				defer l.Close()
				wantMode(t, e.m("sock"), unix.S_IFSOCK|(lstat(t, e.m("sock")).Mode&0o777))
				go func() {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("hello"))
					c.Close()
				}()
				c, err := net.Dial("unix", addr)
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer c.Close()
				buf := make([]byte, 16)
				k, _ := c.Read(buf)
				if string(buf[:k]) != "hello" {
					t.Errorf("read %q from the socket, want hello", buf[:k])
				}
			},
		},
		{
			name: "device node",
			root: true,
			// go-fuse mounts nodev unless told otherwise.
			cfg: func(e *unionEnv, c *fusefs.Config) { c.Passed = []string{"dev"} },
			check: func(t *testing.T, e *unionEnv) {
				if err := unix.Mknod(e.m("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
				st := lstat(t, e.m("null"))
				if st.Mode != unix.S_IFCHR|0o666 || st.Rdev != unix.Mkdev(1, 3) {
					t.Errorf("null: mode %o rdev %x, want the 1:3 character device", st.Mode, st.Rdev)
				}
				if err := os.WriteFile(e.m("null"), []byte("discarded"), 0); err != nil {
					t.Errorf("write to the device: %v", err)
				}
				if b, err := os.ReadFile(e.m("null")); err != nil || len(b) != 0 {
					t.Errorf("read from the device: %q, %v", b, err)
				}
			},
		},
		{
			name: "device node refused to an unprivileged caller",
			check: func(t *testing.T, e *unionEnv) {
				testutil.RequireRootless(t)
				wantErrno(t, "mknod", unix.Mknod(e.m("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))), unix.EPERM)
				wantMissing(t, e.m("null"))
			},
		},
	})
}

func TestMmap(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "shared writable mapping of a file made through the union",
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("f"), "0123456789", 0o644)
				helper(t, "mmap-write", e.m("f"), "abc")
				wantContent(t, e.m("f"), "abc3456789")
				wantContent(t, filepath.Join(e.RW, "f"), "abc3456789")
			},
		},
	})
}

// TestExec runs programs from the union: execve opens the file with the
// kernel's internal __FMODE_EXEC flag, which reaches the daemon and which
// openat2 refuses (regression: every exec failed with EINVAL, so no
// container could start on ufs).
func TestExec(t *testing.T) {
	prog, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skipf("no /bin/true to run: %v", err)
	}
	// The program runs from a helper process: a child forked by the
	// daemon's own process execs while the Go runtime holds ForkLock, which
	// the daemon may need to answer the exec's lookups.
	run := func(t *testing.T, path string) {
		t.Helper()
		helper(t, "exec", path, "")
	}
	runRules(t, []unionRule{
		{
			name: "program in a lower branch",
			setup: func(t *testing.T, e *unionEnv) {
				writeFile(t, filepath.Join(e.RO, "bin/prog"), string(prog), 0o755)
			},
			check: func(t *testing.T, e *unionEnv) {
				run(t, e.m("bin/prog"))
			},
		},
		{
			name: "program copied up, and one made through the union",
			setup: func(t *testing.T, e *unionEnv) {
				writeFile(t, filepath.Join(e.WH, "bin/prog"), string(prog), 0o755)
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Chmod(e.m("bin/prog"), 0o700); err != nil {
					t.Fatal(err)
				}
				run(t, e.m("bin/prog"))
				writeFile(t, e.m("bin/new"), string(prog), 0o755)
				run(t, e.m("bin/new"))
			},
		},
	})
}

func TestXattrs(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "user xattrs of lower objects are visible",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/": ""})
				setxattr(t, filepath.Join(e.RO, "f"), "user.a", "1")
				setxattr(t, filepath.Join(e.RO, "d"), "user.b", "2")
			},
			check: func(t *testing.T, e *unionEnv) {
				if v, err := xattr(e.m("f"), "user.a"); err != nil || v != "1" {
					t.Errorf("f user.a = %q, %v", v, err)
				}
				if v, err := xattr(e.m("d"), "user.b"); err != nil || v != "2" {
					t.Errorf("d user.b = %q, %v", v, err)
				}
				if got := xattrNames(t, e.m("f")); !equal(got, []string{"user.a"}) {
					t.Errorf("f lists %q", got)
				}
				if n, err := unix.Llistxattr(e.m("f"), nil); err != nil || n != len("user.a\x00") {
					t.Errorf("listxattr size: %d, %v", n, err)
				}
				_, err := xattr(e.m("f"), "user.none")
				wantErrno(t, "getxattr user.none", err, unix.ENODATA)
			},
		},
		{
			name: "the union's own xattrs are hidden and refused",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/x": "ro"})
				w(t, e.WH, testutil.Tree{"d/": ""})
				setxattr(t, filepath.Join(e.RO, "f"), "user.overlay.origin", "x")
				setxattr(t, filepath.Join(e.RO, "f"), "user.visible", "1")
				setxattr(t, filepath.Join(e.WH, "d"), "user.overlay.opaque", "n")
			},
			check: func(t *testing.T, e *unionEnv) {
				if got := xattrNames(t, e.m("f")); !equal(got, []string{"user.visible"}) {
					t.Errorf("f lists %q, want [user.visible]", got)
				}
				if got := xattrNames(t, e.m("d")); len(got) != 0 {
					t.Errorf("d lists %q, want nothing", got)
				}
				_, err := xattr(e.m("f"), "user.overlay.origin")
				wantErrno(t, "getxattr user.overlay.origin", err, unix.ENODATA)
				_, err = xattr(e.m("d"), "user.overlay.opaque")
				wantErrno(t, "getxattr user.overlay.opaque", err, unix.ENODATA)
				if err := unix.Lsetxattr(e.m("d"), "user.overlay.opaque", []byte("y"), 0); err == nil {
					t.Errorf("setxattr user.overlay.opaque through the union succeeded")
				}
				wantNames(t, e.m("d"), "x")
				if _, err := xattr(filepath.Join(e.RW, "d"), "user.overlay.opaque"); err == nil {
					t.Errorf("user.overlay.opaque reached the rw branch")
				}
			},
		},
		{
			name: "trusted xattrs",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro"})
				setxattr(t, filepath.Join(e.RO, "f"), "trusted.overlay.redirect", "/x")
				setxattr(t, filepath.Join(e.RO, "f"), "trusted.mine", "1")
			},
			check: func(t *testing.T, e *unionEnv) {
				if got := xattrNames(t, e.m("f")); !equal(got, []string{"trusted.mine"}) {
					t.Errorf("f lists %q, want [trusted.mine]", got)
				}
				setxattr(t, e.m("f"), "trusted.new", "2")
				if v, err := xattr(e.m("f"), "trusted.new"); err != nil || v != "2" {
					t.Errorf("trusted.new = %q, %v", v, err)
				}
				if err := unix.Lsetxattr(e.m("f"), "trusted.overlay.opaque", []byte("y"), 0); err == nil {
					t.Errorf("setxattr trusted.overlay.opaque through the union succeeded")
				}
			},
		},
		{
			name: "xattrs of the mount root",
			check: func(t *testing.T, e *unionEnv) {
				if err := unix.Lsetxattr(e.Mnt, "user.root", []byte("r"), 0); err != nil {
					t.Fatalf("setxattr on the mount root: %v", err)
				}
				if v, err := xattr(e.Mnt, "user.root"); err != nil || v != "r" {
					t.Errorf("getxattr on the mount root: %q, %v", v, err)
				}
				if v, err := xattr(e.RW, "user.root"); err != nil || v != "r" {
					t.Errorf("rw branch root: user.root = %q, %v", v, err)
				}
			},
		},
		{
			name: "xattrs of a symlink",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"l": "->target", "target": "t"})
			},
			check: func(t *testing.T, e *unionEnv) {
				// ext4 refuses user.* on symlinks with EPERM.
				wantErrno(t, "setxattr user.x on a symlink", unix.Lsetxattr(e.m("l"), "user.x", []byte("1"), 0), unix.EPERM)
				if names := xattrNames(t, e.m("l")); len(names) != 0 {
					t.Errorf("symlink lists %q", names)
				}
			},
		},
		{
			name: "removexattr of a missing attribute does not copy up",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "removexattr", unix.Lremovexattr(e.m("d/f"), "user.none"), unix.ENODATA)
				wantMissing(t, filepath.Join(e.RW, "d"))
			},
		},
	})
}

func TestStatfs(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "statfs reports the topmost rw branch",
			check: func(t *testing.T, e *unionEnv) {
				wantStatfs(t, e.Mnt, e.RW)
			},
		},
		{
			name: "statfs of a read-only union reports its top branch",
			cfg: func(e *unionEnv, c *fusefs.Config) {
				c.Branches = []fusefs.Branch{{Path: e.WH, Perm: fusefs.PermROWH}, {Path: e.RO, Perm: fusefs.PermRO}}
			},
			check: func(t *testing.T, e *unionEnv) {
				wantStatfs(t, e.Mnt, e.WH)
			},
		},
	})
}

func wantStatfs(t testing.TB, mnt, branch string) {
	t.Helper()
	var got, want unix.Statfs_t
	if err := unix.Statfs(mnt, &got); err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(branch, &want); err != nil {
		t.Fatal(err)
	}
	if got.Type != unix.FUSE_SUPER_MAGIC {
		t.Errorf("f_type %x, want FUSE %x", got.Type, unix.FUSE_SUPER_MAGIC)
	}
	if got.Bsize != want.Bsize || got.Blocks != want.Blocks || got.Files != want.Files || got.Namelen != want.Namelen || got.Frsize != want.Frsize {
		t.Errorf("statfs: bsize %d blocks %d files %d namelen %d frsize %d; branch: %d %d %d %d %d",
			got.Bsize, got.Blocks, got.Files, got.Namelen, got.Frsize, want.Bsize, want.Blocks, want.Files, want.Namelen, want.Frsize)
	}
}

// nameOf returns a name of n bytes starting with prefix.
func nameOf(prefix string, n int) string {
	return prefix + strings.Repeat("n", n-len(prefix))
}

// wantLongWhiteout fails t unless name in the rw branch directory dir is an
// overlay-format whiteout: a 0/0 character device, or an empty file with
// the overlay.whiteout xattr.
func wantLongWhiteout(t testing.TB, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, name)
	st := lstat(t, p)
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == 0 {
		for _, ns := range []string{"user", "trusted"} {
			if _, err := xattr(p, ns+".overlay.whiteout"); err == nil {
				return
			}
		}
	}
	t.Errorf("rw %s: mode %o rdev %x, want an overlay whiteout", name[:8]+"…", st.Mode, st.Rdev)
}

func TestLongNames(t *testing.T) {
	n255, n252, n251, n256 := nameOf("a", 255), nameOf("b", 252), nameOf("c", 251), nameOf("z", 256)
	d255 := nameOf("d", 255)
	runRules(t, []unionRule{
		{
			name: "names of 255 bytes can be made, 256 cannot",
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m(n255), "x", 0o644)
				if err := os.Mkdir(e.m(d255), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("x", e.m(nameOf("s", 255))); err != nil {
					t.Fatal(err)
				}
				wantContent(t, e.m(n255), "x")
				wantExists(t, filepath.Join(e.RW, n255))
				_, err := os.OpenFile(e.m(n256), os.O_CREATE|os.O_WRONLY, 0o644)
				wantErrno(t, "create 256", err, unix.ENAMETOOLONG)
				wantErrno(t, "mkdir 256", os.Mkdir(e.m(n256), 0o755), unix.ENAMETOOLONG)
				var st unix.Stat_t
				wantErrno(t, "lstat 256", unix.Lstat(e.m(n256), &st), unix.ENAMETOOLONG)
			},
		},
		{
			name: "unlink of lower names near NAME_MAX leaves whiteouts",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{n255: "255", n252: "252", n251: "251", "d/" + n255: "d255", "keep": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.Mnt, n251, n252, n255, "d", "keep")
				for _, n := range []string{n255, n252, n251, "d/" + n255} {
					if err := os.Remove(e.m(n)); err != nil {
						t.Fatalf("unlink %d-byte name: %v", len(filepath.Base(n)), err)
					}
					wantMissing(t, e.m(n))
				}
				wantNames(t, e.Mnt, "d", "keep")
				wantNames(t, e.m("d"))
				wantAufsWhiteout(t, e.RW, n251)
				wantLongWhiteout(t, e.RW, n252)
				wantLongWhiteout(t, e.RW, n255)
				wantLongWhiteout(t, filepath.Join(e.RW, "d"), n255)
				// The whiteouts hold for a new union of the same branches.
				mnt2 := mountUnion(t, fusefs.Branch{Path: e.RW, Perm: fusefs.PermROWH}, fusefs.Branch{Path: e.RO, Perm: fusefs.PermRO})
				wantNames(t, mnt2, "d", "keep")
			},
		},
		{
			name: "rmdir of a lower directory with a 255-byte name",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{d255 + "/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := unix.Rmdir(e.m(d255)); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m(d255))
				wantLongWhiteout(t, e.RW, d255)
			},
		},
		{
			name: "rmdir of a merged directory with a 255-byte name",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{d255 + "/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				chmod(t, e.m(d255), 0o700) // copied up: now in both branches
				if err := unix.Rmdir(e.m(d255)); err != nil {
					t.Fatalf("rmdir: %v", err)
				}
				wantMissing(t, e.m(d255))
				wantLongWhiteout(t, e.RW, d255)
			},
		},
		{
			name: "file made over a whiteout with a 255-byte name",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{n255: "old"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m(n255)); err != nil {
					t.Fatal(err)
				}
				writeFile(t, e.m(n255), "new", 0o644)
				wantContent(t, e.m(n255), "new")
				wantContent(t, filepath.Join(e.RW, n255), "new")
			},
		},
		{
			name: "directory made over a whiteout with a 255-byte name",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{d255 + "/old": "old"})
				w(t, e.WH, testutil.Tree{d255 + "/.wh.old": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				// d255 is empty through the union and lives in no rw
				// branch: rmdir leaves an overlay whiteout at its name.
				if err := os.Remove(e.m(d255)); err != nil {
					t.Fatal(err)
				}
				wantLongWhiteout(t, e.RW, d255)
				if err := os.Mkdir(e.m(d255), 0o755); err != nil {
					t.Fatalf("mkdir over the whiteout: %v", err)
				}
				wantNames(t, e.m(d255))
				wantMissing(t, e.m(d255+"/old"))
			},
		},
	})
}

// deepComponents returns directory names whose path is well beyond
// PATH_MAX (4096).
func deepComponents() []string {
	var c []string
	for i := range 25 {
		c = append(c, fmt.Sprintf("%02d", i)+strings.Repeat("p", 198))
	}
	return c
}

// walkAt opens the directory comps below root one component at a time
// (making them when mk is set), as a program must for paths beyond
// PATH_MAX. The returned descriptor is closed at cleanup.
func walkAt(t testing.TB, root string, comps []string, mk bool) int {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		if mk {
			if err := unix.Mkdirat(fd, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				t.Fatalf("mkdirat %.8s…: %v", c, err)
			}
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("openat %.8s…: %v", c, err)
		}
		fd = next
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func readAt(t testing.TB, dirfd int, name string) string {
	t.Helper()
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("openat %s: %v", name, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func writeAt(t testing.TB, dirfd int, name, content string, flags int) {
	t.Helper()
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CLOEXEC|flags, 0o644)
	if err != nil {
		t.Fatalf("openat %s: %v", name, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

func TestDeepPaths(t *testing.T) {
	comps := deepComponents()
	runRules(t, []unionRule{
		{
			name: "lower tree deeper than PATH_MAX: read, copy-up, unlink",
			setup: func(t *testing.T, e *unionEnv) {
				fd := walkAt(t, e.RO, comps, true)
				writeAt(t, fd, "f", "deep lower", unix.O_CREAT)
				writeAt(t, fd, "g", "other", unix.O_CREAT)
			},
			check: func(t *testing.T, e *unionEnv) {
				fd := walkAt(t, e.Mnt, comps, false)
				if got := readAt(t, fd, "f"); got != "deep lower" {
					t.Errorf("read: %q", got)
				}
				var before unix.Stat_t
				if err := unix.Fstatat(fd, "f", &before, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
				writeAt(t, fd, "f", "deep upper", unix.O_TRUNC)
				if got := readAt(t, fd, "f"); got != "deep upper" {
					t.Errorf("read after write: %q", got)
				}
				var after unix.Stat_t
				if err := unix.Fstatat(fd, "f", &after, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
				if after.Ino != before.Ino {
					t.Errorf("inode %d after copy-up, %d before", after.Ino, before.Ino)
				}
				if err := unix.Unlinkat(fd, "g", 0); err != nil {
					t.Fatalf("unlink: %v", err)
				}
				names := map[string]bool{}
				for _, d := range readDirents(t, fd, 4096) {
					names[d.Name] = true
				}
				if !names["f"] || names["g"] || len(names) != 3 {
					t.Errorf("listing: %v, want . .. f", names)
				}
				rw := walkAt(t, e.RW, comps, false)
				if got := readAt(t, rw, "f"); got != "deep upper" {
					t.Errorf("rw branch: %q", got)
				}
				var st unix.Stat_t
				if err := unix.Fstatat(rw, ".wh.g", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Errorf("rw branch: no whiteout for g: %v", err)
				}
				ro := walkAt(t, e.RO, comps, false)
				if got := readAt(t, ro, "f"); got != "deep lower" {
					t.Errorf("lower branch changed: %q", got)
				}
			},
		},
		{
			name: "tree deeper than PATH_MAX made through the union",
			check: func(t *testing.T, e *unionEnv) {
				fd := walkAt(t, e.Mnt, comps, true)
				writeAt(t, fd, "f", "made", unix.O_CREAT|unix.O_EXCL)
				if err := unix.Symlinkat("f", fd, "l"); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mkdirat(fd, "sub", 0o755); err != nil {
					t.Fatal(err)
				}
				if got := readAt(t, fd, "l"); got != "made" {
					t.Errorf("read through symlink: %q", got)
				}
				if err := unix.Unlinkat(fd, "sub", unix.AT_REMOVEDIR); err != nil {
					t.Errorf("rmdir: %v", err)
				}
				rw := walkAt(t, e.RW, comps, false)
				if got := readAt(t, rw, "f"); got != "made" {
					t.Errorf("rw branch: %q", got)
				}
			},
		},
	})
}

func TestIdentity(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "one st_dev and distinct inode numbers across branches",
			setup: func(t *testing.T, e *unionEnv) {
				for _, br := range []string{e.RW, e.WH, e.RO} {
					for i := range 20 {
						w(t, br, testutil.Tree{fmt.Sprintf("%s-%d", filepath.Base(br), i): "", fmt.Sprintf("d/%s-%d", filepath.Base(br), i): ""})
					}
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				dev := lstat(t, e.Mnt).Dev
				if ino := lstat(t, e.Mnt).Ino; ino != 1 {
					t.Errorf("root inode %d, want 1", ino)
				}
				inos := map[uint64]string{}
				for _, dir := range []string{"", "d"} {
					for _, n := range names(t, e.m(dir)) {
						p := filepath.Join(dir, n)
						st := lstat(t, e.m(p))
						if st.Dev != dev {
							t.Errorf("%s: st_dev %x, mount %x", p, st.Dev, dev)
						}
						if o, dup := inos[st.Ino]; dup {
							t.Errorf("%s and %s share inode %d", p, o, st.Ino)
						}
						inos[st.Ino] = p
						if again := lstat(t, e.m(p)).Ino; again != st.Ino {
							t.Errorf("%s: inode %d then %d", p, st.Ino, again)
						}
					}
				}
			},
		},
		{
			name: "files keep their on-disk owners",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/": ""})
				for _, p := range []string{"f", "d"} {
					if err := os.Lchown(filepath.Join(e.RO, p), 1234, 5678); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, p := range []string{"f", "d"} {
					if st := lstat(t, e.m(p)); st.Uid != 1234 || st.Gid != 5678 {
						t.Errorf("%s: owner %d:%d, want 1234:5678", p, st.Uid, st.Gid)
					}
				}
			},
		},
		{
			name: "objects made through the union belong to the caller",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"pub/": "", "sgid/": ""})
				chmod(t, filepath.Join(e.RO, "pub"), 0o777)
				if err := os.Chown(filepath.Join(e.RO, "sgid"), 0, 4321); err != nil {
					t.Fatal(err)
				}
				chmod(t, filepath.Join(e.RO, "sgid"), 0o777|os.ModeSetgid)
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, dir := range []string{"pub", "sgid"} {
					dfd := walkAt(t, e.Mnt, []string{dir}, false)
					if err := asUser(1234, 5678, func() error {
						fd, err := unix.Openat(dfd, "file", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
						if err != nil {
							return fmt.Errorf("create: %w", err)
						}
						unix.Close(fd)
						if err := unix.Mkdirat(dfd, "dir", 0o755); err != nil {
							return fmt.Errorf("mkdir: %w", err)
						}
						if err := unix.Symlinkat("file", dfd, "sym"); err != nil {
							return fmt.Errorf("symlink: %w", err)
						}
						if err := unix.Mknodat(dfd, "fifo", unix.S_IFIFO|0o644, 0); err != nil {
							return fmt.Errorf("mkfifo: %w", err)
						}
						return nil
					}); err != nil {
						t.Fatalf("%s: %v", dir, err)
					}
					wantGID := uint32(5678)
					if dir == "sgid" {
						wantGID = 4321
					}
					for _, n := range []string{"file", "dir", "sym", "fifo"} {
						for _, p := range []string{e.m(dir + "/" + n), filepath.Join(e.RW, dir, n)} {
							if st := lstat(t, p); st.Uid != 1234 || st.Gid != wantGID {
								t.Errorf("%s: owner %d:%d, want 1234:%d", p, st.Uid, st.Gid, wantGID)
							}
						}
					}
				}
			},
		},
	})
}

// asUser runs f on a thread whose filesystem ids are uid and gid, the ids
// the kernel hands to FUSE with each request.
func asUser(uid, gid int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is only given back once its ids are restored; if not,
		// it ends with the goroutine.
		unix.Setfsgid(gid)
		unix.Setfsuid(uid)
		err := f()
		unix.Setfsuid(0)
		unix.Setfsgid(0)
		if u, _ := unix.SetfsuidRetUid(-1); u == 0 {
			if g, _ := unix.SetfsgidRetGid(-1); g == 0 {
				runtime.UnlockOSThread()
			}
		}
		errc <- err
	}()
	return <-errc
}

// TestLocks checks POSIX and flock locks through the union: a process's own
// locks through two descriptors do not conflict (as on ext4), another
// process's do, and a lock taken before a copy-up still holds after it.
func TestLocks(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.RO, "d/f"), "lower", 0o644)
	mnt := f.mount(t)
	p := filepath.Join(mnt, "d/f")
	ro, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rd := unix.Flock_t{Type: unix.F_RDLCK}
	if err := unix.FcntlFlock(ro.Fd(), unix.F_SETLK, &rd); err != nil {
		t.Fatalf("read lock on the lower file: %v", err)
	}
	if err := unix.Flock(int(ro.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		t.Fatalf("flock -s on the lower file: %v", err)
	}
	// Opening for writing copies the file up.
	rw, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	wr := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(rw.Fd(), unix.F_SETLK, &wr); err != nil {
		t.Errorf("POSIX write lock of the same process through a second descriptor: %v, want granted (as on ext4)", err)
	}
	// Another process: the shared flock of ro must still hold after the
	// copy-up, and the POSIX lock now is a write lock.
	out, err := exec.Command("flock", "-n", "-E", "42", "-x", p, "true").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Errorf("flock -x by another process while a shared flock is held across the copy-up: %v (%s), want a conflict (exit 42)", err, out)
	}
	probe := unix.Flock_t{Type: unix.F_RDLCK}
	if err := unix.FcntlFlock(rw.Fd(), unix.F_GETLK, &probe); err != nil {
		t.Fatal(err)
	}
	if probe.Type != unix.F_UNLCK {
		t.Errorf("F_GETLK by the lock owner reports a conflict: %+v", probe)
	}
}

// TestLowerFileIO exercises I/O calls on a file of a read-only branch and
// on its copy: SEEK_DATA/SEEK_HOLE (holes survive the copy-up), fallocate,
// O_DIRECT reads and writes, fsync and fdatasync reaching the branch file.
func TestLowerFileIO(t *testing.T) {
	f := newFixture(t)
	lower := filepath.Join(f.RO, "sparse")
	lf, err := os.Create(lower)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.WriteAt([]byte("tail"), 4<<20); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	mnt := f.mount(t)
	p := filepath.Join(mnt, "sparse")

	ro, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if off, err := unix.Seek(int(ro.Fd()), 0, unix.SEEK_DATA); err != nil || off < 1<<20 {
		t.Errorf("SEEK_DATA on the lower file: %d, %v; want the data near 4 MiB", off, err)
	}
	ro.Close()

	// O_DIRECT read of the lower file, with an aligned buffer.
	buf := alignedBuf(4096)
	dfd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("O_DIRECT open: %v", err)
	}
	if n, err := unix.Pread(dfd, buf, 4<<20); err != nil || n != 4 || string(buf[:4]) != "tail" {
		t.Errorf("O_DIRECT read: %d, %v, %q", n, err, buf[:4])
	}
	unix.Close(dfd)

	// O_DIRECT write copies up; holes stay holes in the copy.
	wfd, err := unix.Open(p, unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("O_DIRECT open for writing: %v", err)
	}
	defer unix.Close(wfd)
	copy(buf, bytes.Repeat([]byte("w"), 4096))
	if n, err := unix.Pwrite(wfd, buf, 8<<20); err != nil || n != 4096 {
		t.Fatalf("O_DIRECT write: %d, %v", n, err)
	}
	if err := unix.Fsync(wfd); err != nil {
		t.Errorf("fsync: %v", err)
	}
	if err := unix.Fdatasync(wfd); err != nil {
		t.Errorf("fdatasync: %v", err)
	}
	if err := unix.Fallocate(wfd, 0, 12<<20, 4096); err != nil {
		t.Errorf("fallocate: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(f.RW, "sparse"), &st); err != nil {
		t.Fatalf("copy in the rw branch: %v", err)
	}
	if st.Size != 12<<20+4096 {
		t.Errorf("copy size %d, want %d", st.Size, 12<<20+4096)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("copy uses %d bytes of disk for 3 small extents: the holes were filled", st.Blocks*512)
	}
	if off, err := unix.Seek(wfd, 0, unix.SEEK_DATA); err != nil || off < 1<<20 {
		t.Errorf("SEEK_DATA on the copy: %d, %v; want the first data near 4 MiB", off, err)
	}
	if off, err := unix.Seek(wfd, 4<<20, unix.SEEK_HOLE); err != nil || off >= 8<<20 {
		t.Errorf("SEEK_HOLE after the first data: %d, %v; want a hole before 8 MiB", off, err)
	}
	b, err := os.ReadFile(filepath.Join(f.RW, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b[4<<20:4<<20+4]) != "tail" || b[8<<20] != 'w' {
		t.Errorf("copy content wrong at 4 MiB (%q) or 8 MiB (%q)", b[4<<20:4<<20+4], b[8<<20])
	}
}

// alignedBuf returns a buffer aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	if off == 4096 {
		off = 0
	}
	return b[off : off+n]
}
