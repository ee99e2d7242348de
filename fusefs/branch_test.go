package fusefs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Branch access: no symlink planted in a branch leads a lookup, a merge, a
// copy-up or a whiteout outside that branch; and udba=reval, under which
// changes made directly in a branch show through the union.

// outside makes a directory outside every branch, with a file the tests
// must never see through a merge nor change; at cleanup it checks that the
// directory still holds exactly that file.
func outside(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secret"), "secret", 0o644)
	writeFile(t, filepath.Join(dir, "sub/deeper/secret"), "secret", 0o644)
	t.Cleanup(func() {
		wantNames(t, dir, "secret", "sub")
		wantNames(t, filepath.Join(dir, "sub"), "deeper")
		wantNames(t, filepath.Join(dir, "sub/deeper"), "secret")
		wantContent(t, filepath.Join(dir, "secret"), "secret")
		if st := lstat(t, filepath.Join(dir, "secret")); st.Mode != unix.S_IFREG|0o644 {
			t.Errorf("outside file mode changed to %o", st.Mode)
		}
	})
	return dir
}

func symlink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestBranchSymlinks(t *testing.T) {
	var out string
	runRules(t, []unionRule{
		{
			name: "a lower symlink to an outside directory is a symlink in the union",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				symlink(t, out, filepath.Join(e.RO, "x"))
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMode(t, e.m("x"), unix.S_IFLNK|0o777)
				if got, err := os.Readlink(e.m("x")); err != nil || got != out {
					t.Errorf("readlink: %q, %v; want %q", got, err, out)
				}
				wantNames(t, e.Mnt, "x")
			},
		},
		{
			name: "a directory does not merge a lower symlink to a directory",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				w(t, e.WH, testutil.Tree{"d/a": "wh"})
				symlink(t, out, filepath.Join(e.RO, "d"))
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
				wantMissing(t, e.m("d/secret"))
				wantMissing(t, e.m("d/sub"))
			},
		},
		{
			name: "an upper symlink hides a lower directory",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				symlink(t, out, filepath.Join(e.WH, "d"))
				w(t, e.RO, testutil.Tree{"d/x": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMode(t, e.m("d"), unix.S_IFLNK|0o777)
			},
		},
		{
			name: "a branch whose intermediate component is a symlink is not merged",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				w(t, e.RW, testutil.Tree{"d/sub/deeper/a": "rw", "e/sub/deeper/b": "rw"})
				// In the lower branches the same paths run through symlinks
				// to the outside directory.
				symlink(t, out, filepath.Join(e.WH, "d"))
				w(t, e.RO, testutil.Tree{"e/": ""})
				symlink(t, filepath.Join(out, "sub"), filepath.Join(e.RO, "e/sub"))
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "sub")
				wantNames(t, e.m("d/sub"), "deeper")
				wantNames(t, e.m("d/sub/deeper"), "a")
				wantMissing(t, e.m("d/secret"))
				wantMissing(t, e.m("d/sub/deeper/secret"))
				wantNames(t, e.m("e/sub/deeper"), "b")
				wantMissing(t, e.m("e/sub/deeper/secret"))
			},
		},
		{
			name: "copy-up, create and whiteout never write through a symlink planted in the rw branch",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				w(t, e.RO, testutil.Tree{"d/f": "ro", "d/g": "ro", "d/sub/h": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, p := range []string{"d", "d/f", "d/g", "d/sub", "d/sub/h"} {
					lstat(t, e.m(p))
				}
				// Behind the union's back, the rw branch gets d as a symlink
				// to the outside directory.
				symlink(t, out, filepath.Join(e.RW, "d"))
				// Whatever these return, none may touch the outside.
				os.Chmod(e.m("d/f"), 0o600)
				os.WriteFile(e.m("d/f"), []byte("through the symlink"), 0)
				os.Remove(e.m("d/g"))
				os.WriteFile(e.m("d/new"), []byte("new"), 0o644)
				os.Mkdir(e.m("d/newdir"), 0o755)
				os.Remove(e.m("d/sub/h"))
				unix.Lsetxattr(e.m("d/sub"), "user.x", []byte("1"), 0)
				os.Symlink("x", e.m("d/newsym"))
				os.Rename(e.m("d/f"), e.m("d/secret"))
			},
		},
		{
			name: "chmod of a symlink does not reach its target",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				symlink(t, filepath.Join(out, "secret"), filepath.Join(e.RO, "lower"))
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Symlink(filepath.Join(out, "secret"), e.m("made")); err != nil {
					t.Fatal(err)
				}
				// fchmodat2(AT_SYMLINK_NOFOLLOW) asks to change the link
				// itself, which ext4 refuses with EOPNOTSUPP.
				for _, n := range []string{"lower", "made"} {
					err := unix.Fchmodat(unix.AT_FDCWD, e.m(n), 0o600, unix.AT_SYMLINK_NOFOLLOW)
					wantErrno(t, "fchmodat2 "+n, err, unix.EOPNOTSUPP)
				}
			},
		},
		{
			name: "a symlink planted at a file's name is not opened",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				w(t, e.RO, testutil.Tree{"f": "ro", "g": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				lstat(t, e.m("f"))
				lstat(t, e.m("g"))
				symlink(t, filepath.Join(out, "secret"), filepath.Join(e.RW, "f"))
				symlink(t, filepath.Join(out, "secret"), filepath.Join(e.RW, "g"))
				os.WriteFile(e.m("f"), []byte("through the symlink"), 0)
				unix.Truncate(e.m("g"), 0)
				unix.Lsetxattr(e.m("g"), "user.x", []byte("1"), 0)
				os.Chown(e.m("g"), os.Getuid(), os.Getgid())
				unix.UtimesNano(e.m("g"), []unix.Timespec{{Sec: 1}, {Sec: 1}})
				if b, err := os.ReadFile(e.m("f")); err == nil && string(b) == "secret" {
					t.Errorf("reading f through the union returned the outside file")
				}
			},
		},
		{
			name: "chmod does not follow a symlink planted at a file's name",
			setup: func(t *testing.T, e *unionEnv) {
				out = outside(t)
				w(t, e.RO, testutil.Tree{"g": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				lstat(t, e.m("g"))
				symlink(t, filepath.Join(out, "secret"), filepath.Join(e.RW, "g"))
				os.Chmod(e.m("g"), 0o600)
				if st := lstat(t, filepath.Join(out, "secret")); st.Mode != unix.S_IFREG|0o644 {
					t.Errorf("chmod through the union changed the mode of the file outside the branch to %o", st.Mode)
				}
			},
		},
	})
}

// TestPlantedMetaDirs checks that an rw branch whose staging or hard-link
// index directory is a symlink out of the branch either is refused or is
// served without the outside being touched (the union's start-up cleanup
// of the staging directory included).
func TestPlantedMetaDirs(t *testing.T) {
	for _, meta := range []string{".wh..wh.work", ".wh..wh.plnk"} {
		t.Run(meta, func(t *testing.T) {
			testutil.RequireFUSE(t)
			out := outside(t)
			f := newFixture(t)
			w(t, f.RO, testutil.Tree{"f": "ro"})
			w(t, f.RO, testutil.Tree{"l1": "linked"})
			if err := os.Link(filepath.Join(f.RO, "l1"), filepath.Join(f.RO, "l2")); err != nil {
				t.Fatal(err)
			}
			symlink(t, out, filepath.Join(f.RW, meta))
			mnt := t.TempDir()
			srv, u, err := fusefs.Mount(mnt, fusefs.Config{Branches: f.branches()}, fusefs.MountOptions{})
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			defer u.Close()
			defer srv.Unmount()
			os.Chmod(filepath.Join(mnt, "f"), 0o600)
			os.WriteFile(filepath.Join(mnt, "l1"), []byte("x"), 0)
			os.Remove(filepath.Join(mnt, "f"))
		})
	}
}

func TestReval(t *testing.T) {
	reval := func(e *unionEnv, c *fusefs.Config) { c.Reval = true }
	runRules(t, []unionRule{
		{
			name:  "a file added to a lower branch shows",
			cfg:   reval,
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"d/a": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
				wantMissing(t, e.m("d/b"))
				writeFile(t, filepath.Join(e.RO, "d/b"), "added", 0o644)
				writeFile(t, filepath.Join(e.WH, "top"), "added", 0o644)
				wantContent(t, e.m("d/b"), "added")
				wantContent(t, e.m("top"), "added")
				wantNames(t, e.m("d"), "a", "b")
				wantNames(t, e.Mnt, "d", "top")
			},
		},
		{
			name:  "a file removed from a lower branch goes",
			cfg:   reval,
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"d/a": "ro", "d/b": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("d/b"), "ro")
				if err := os.Remove(filepath.Join(e.RO, "d/b")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("d/b"))
				wantNames(t, e.m("d"), "a")
			},
		},
		{
			name:  "a file changed in a lower branch reads anew",
			cfg:   reval,
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"f": "old", "g": "old"}) },
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("f"), "old")
				wantContent(t, e.m("g"), "old")
				// In place, and replaced by a new inode.
				writeFile(t, filepath.Join(e.RO, "f"), "new in place", 0)
				writeFile(t, filepath.Join(e.RO, "g.tmp"), "new inode", 0o644)
				if err := os.Rename(filepath.Join(e.RO, "g.tmp"), filepath.Join(e.RO, "g")); err != nil {
					t.Fatal(err)
				}
				wantContent(t, e.m("f"), "new in place")
				wantContent(t, e.m("g"), "new inode")
			},
		},
		{
			name:    "a whiteout added to a branch hides",
			cfg:     reval,
			formats: true,
			setup:   func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"f": "ro", "d/x": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("f"), "ro")
				wantNames(t, e.m("d"), "x")
				e.wh(t, e.WH, "f")
				e.wh(t, e.WH, "d/x")
				wantMissing(t, e.m("f"))
				wantNames(t, e.m("d"))
			},
		},
		{
			name:  "a directory added to a branch is merged",
			cfg:   reval,
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"d/a": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
				w(t, e.WH, testutil.Tree{"d/b": "wh", "d/s/c": "wh"})
				wantNames(t, e.m("d"), "a", "b", "s")
				wantContent(t, e.m("d/s/c"), "wh")
			},
		},
		{
			name:  "fstat of an open file describes that file after its name is taken",
			cfg:   reval,
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"f": "x"}) },
			check: func(t *testing.T, e *unionEnv) {
				fd, err := unix.Open(e.m("f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				var before, after unix.Stat_t
				if err := unix.Fstat(fd, &before); err != nil {
					t.Fatal(err)
				}
				// The name now holds another object (a symlink, 11 bytes).
				if err := os.Remove(filepath.Join(e.RO, "f")); err != nil {
					t.Fatal(err)
				}
				symlink(t, "/etc/passwd", filepath.Join(e.RO, "f"))
				if err := unix.Fstat(fd, &after); err != nil {
					t.Fatalf("fstat: %v", err)
				}
				if after.Ino != before.Ino || after.Size != 1 || after.Mode != before.Mode {
					t.Errorf("fstat of the open file: ino %d size %d mode %o; before: ino %d size %d mode %o",
						after.Ino, after.Size, after.Mode, before.Ino, before.Size, before.Mode)
				}
			},
		},
		{
			name:  "changes through the union still work",
			cfg:   reval,
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"d/a": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("d/a"), "written", 0)
				wantContent(t, e.m("d/a"), "written")
				writeFile(t, filepath.Join(e.RW, "d/a"), "changed in the branch", 0)
				wantContent(t, e.m("d/a"), "changed in the branch")
				if err := os.Remove(e.m("d/a")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("d/a"))
			},
		},
	})
}
