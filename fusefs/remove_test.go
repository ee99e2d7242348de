package fusefs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Removal rules: unlink and rmdir of lower objects leave whiteouts, a merged
// directory empty through the union can be removed, and names made over a
// whiteout replace it (a directory becoming opaque). Then the read-only
// union, where every change is EROFS.

// wantAufsWhiteout fails t unless dir (in the rw branch) holds .wh.NAME.
func wantAufsWhiteout(t testing.TB, dir, name string) {
	t.Helper()
	st := lstat(t, filepath.Join(dir, ".wh."+name))
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("%s/.wh.%s: mode %o, want a regular file", dir, name, st.Mode)
	}
}

func TestRemoval(t *testing.T) {
	runRules(t, []unionRule{
		{
			// The new directory may reuse the inode number of the old
			// one (ext4 does), and with it its node.
			name:    "a directory removed and made again shows as the new one",
			formats: true,
			setup:   func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"low/f": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				for i := range 20 {
					for _, d := range []string{"d", "low"} {
						mode := uint32(0o700 + i%2*0o55)
						if d == "low" && i == 0 {
							if err := os.Remove(e.m("low/f")); err != nil {
								t.Fatal(err)
							}
						} else if err := os.Mkdir(e.m(d), os.FileMode(mode)); err != nil {
							t.Fatal(err)
						} else {
							wantMode(t, e.m(d), unix.S_IFDIR|mode)
							writeFile(t, e.m(d+"/new"), "x", 0o644)
							wantNames(t, e.m(d), "new")
							if err := os.Remove(e.m(d + "/new")); err != nil {
								t.Fatal(err)
							}
						}
						lstat(t, e.m(d))
						if err := os.Remove(e.m(d)); err != nil {
							t.Fatal(err)
						}
						wantMissing(t, e.m(d))
					}
				}
			},
		},
		{
			name: "unlink of a lower file leaves a whiteout",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/g": "ro", "d/keep": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("f")); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(e.m("d/g")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("f"))
				wantMissing(t, e.m("d/g"))
				wantNames(t, e.Mnt, "d")
				wantNames(t, e.m("d"), "keep")
				wantAufsWhiteout(t, e.RW, "f")
				wantAufsWhiteout(t, filepath.Join(e.RW, "d"), "g")
				wantContent(t, filepath.Join(e.RO, "f"), "ro")
				wantContent(t, filepath.Join(e.RO, "d/g"), "ro")
			},
		},
		{
			name: "unlink of a file of the wh branch leaves a whiteout",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.WH, testutil.Tree{"f": "wh"})
				w(t, e.RO, testutil.Tree{"f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("f")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("f"))
				wantAufsWhiteout(t, e.RW, "f")
			},
		},
		{
			name: "unlink of an rw file over a lower one leaves a whiteout",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RW, testutil.Tree{"f": "rw"})
				w(t, e.RO, testutil.Tree{"f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("f")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("f"))
				wantMissing(t, filepath.Join(e.RW, "f"))
				wantAufsWhiteout(t, e.RW, "f")
			},
		},
		{
			name: "unlink of an rw-only file leaves no whiteout",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RW, testutil.Tree{"f": "rw", "d/g": "rw"})
				w(t, e.RO, testutil.Tree{"d/x": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, p := range []string{"f", "d/g"} {
					if err := os.Remove(e.m(p)); err != nil {
						t.Fatal(err)
					}
					wantMissing(t, e.m(p))
				}
				wantMissing(t, filepath.Join(e.RW, ".wh.f"))
				wantMissing(t, filepath.Join(e.RW, "d/.wh.g"))
			},
		},
		{
			name:    "unlink of a whited-out name is ENOENT",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/": ""})
				e.wh(t, e.WH, "f")
				e.wh(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "unlink f", unix.Unlink(e.m("f")), unix.ENOENT)
				wantErrno(t, "rmdir d", unix.Rmdir(e.m("d")), unix.ENOENT)
			},
		},
		{
			name: "unlink of a directory and rmdir of a file are refused",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "unlink d", unix.Unlink(e.m("d")), unix.EISDIR)
				wantErrno(t, "rmdir f", unix.Rmdir(e.m("f")), unix.ENOTDIR)
				wantExists(t, e.m("d"))
				wantExists(t, e.m("f"))
			},
		},
		{
			name: "rmdir of a lower directory leaves a whiteout",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/": "", "p/q/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("d")); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(e.m("p/q")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("d"))
				wantMissing(t, e.m("p/q"))
				wantNames(t, e.Mnt, "p")
				wantAufsWhiteout(t, e.RW, "d")
				wantAufsWhiteout(t, filepath.Join(e.RW, "p"), "q")
				wantExists(t, filepath.Join(e.RO, "d"))
			},
		},
		{
			name: "rmdir of a merged directory with lower contents is ENOTEMPTY",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RW, testutil.Tree{"d/": ""})
				w(t, e.RO, testutil.Tree{"d/x": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "rmdir d", unix.Rmdir(e.m("d")), unix.ENOTEMPTY)
				wantContent(t, e.m("d/x"), "ro")
			},
		},
		{
			name:    "rmdir of a merged directory empty through the union",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RW, testutil.Tree{"d/": ""})
				w(t, e.WH, testutil.Tree{"d/": ""})
				w(t, e.RO, testutil.Tree{"d/x": "ro", "d/s/y": "ro"})
				e.wh(t, e.WH, "d/x")
				e.wh(t, e.RW, "d/s")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"))
				if err := unix.Rmdir(e.m("d")); err != nil {
					t.Fatalf("rmdir: %v", err)
				}
				wantMissing(t, e.m("d"))
				wantMissing(t, filepath.Join(e.RW, "d"))
				wantAufsWhiteout(t, e.RW, "d")
				wantNames(t, e.Mnt)
			},
		},
		{
			name: "rmdir after unlinking every lower entry through the union",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.WH, testutil.Tree{"d/a": "wh"})
				w(t, e.RO, testutil.Tree{"d/b": "ro", "d/c/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, p := range []string{"d/a", "d/b", "d/c"} {
					if err := os.Remove(e.m(p)); err != nil {
						t.Fatal(err)
					}
				}
				if err := unix.Rmdir(e.m("d")); err != nil {
					t.Fatalf("rmdir: %v", err)
				}
				wantMissing(t, e.m("d"))
				wantAufsWhiteout(t, e.RW, "d")
			},
		},
		{
			name:    "mkdir over a whiteout makes an opaque directory",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/old": "ro", "e/old": "ro"})
				e.wh(t, e.RW, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("d"))
				if err := os.Mkdir(e.m("d"), 0o750); err != nil {
					t.Fatal(err)
				}
				wantMode(t, e.m("d"), unix.S_IFDIR|0o750)
				wantNames(t, e.m("d"))
				wantMissing(t, e.m("d/old"))
				wantMode(t, filepath.Join(e.RW, "d"), unix.S_IFDIR|0o750)
				wantExists(t, filepath.Join(e.RW, "d/.wh..wh..opq"))
				wantMissing(t, filepath.Join(e.RW, ".wh.d"))
				writeFile(t, e.m("d/new"), "new", 0o644)
				wantNames(t, e.m("d"), "new")
			},
		},
		{
			name: "rmdir then mkdir gives an empty directory",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/old/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("d/old")); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(e.m("d")); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(e.m("d"), 0o755); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("d"))
				wantMissing(t, e.m("d/old"))
			},
		},
		{
			name:    "mkdir over a whiteout in a lower branch hides the lower directory",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/old": "ro"})
				e.wh(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Mkdir(e.m("d"), 0o755); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("d"))
				wantMissing(t, e.m("d/old"))
			},
		},
		{
			name:    "create over a whiteout replaces it",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "dir/x": "ro", "s": "ro", "p": "ro", "h": "ro"})
				w(t, e.RW, testutil.Tree{"target": "t"})
				for _, n := range []string{"f", "dir", "s", "p", "h"} {
					e.wh(t, e.RW, n)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("f"), "new", 0o600)
				writeFile(t, e.m("dir"), "now a file", 0o600)
				if err := os.Symlink("target", e.m("s")); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mkfifo(e.m("p"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(e.m("target"), e.m("h")); err != nil {
					t.Fatal(err)
				}
				wantContent(t, e.m("f"), "new")
				wantMode(t, e.m("f"), unix.S_IFREG|0o600)
				wantContent(t, e.m("dir"), "now a file")
				wantContent(t, e.m("s"), "t")
				wantMode(t, e.m("p"), unix.S_IFIFO|0o600)
				wantContent(t, e.m("h"), "t")
				for _, n := range []string{"f", "dir", "s", "p", "h"} {
					wantMissing(t, filepath.Join(e.RW, ".wh."+n))
				}
				wantNames(t, e.Mnt, "dir", "f", "h", "p", "s", "target")
			},
		},
		{
			name: "create over a whiteout of a lower branch",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro"})
				aufsWhiteout(t, e.WH, "f")
			},
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("f"), "new", 0o644)
				wantContent(t, e.m("f"), "new")
			},
		},
		{
			name: "unlink, create, unlink again",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				for i := range 3 {
					if err := os.Remove(e.m("f")); err != nil {
						t.Fatalf("round %d: %v", i, err)
					}
					wantMissing(t, e.m("f"))
					writeFile(t, e.m("f"), "again", 0o644)
					wantContent(t, e.m("f"), "again")
				}
				if err := os.Remove(e.m("f")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("f"))
				wantNames(t, e.Mnt)
				wantAufsWhiteout(t, e.RW, "f")
			},
		},
		{
			name: "an open file stays readable after unlink",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"low": "lower data"})
				w(t, e.RW, testutil.Tree{"up": "upper data"})
			},
			check: func(t *testing.T, e *unionEnv) {
				for n, want := range map[string]string{"low": "lower data", "up": "upper data"} {
					f, err := os.Open(e.m(n))
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					if err := os.Remove(e.m(n)); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 64)
					k, err := f.ReadAt(buf, 0)
					if string(buf[:k]) != want {
						t.Errorf("%s after unlink: %q, %v; want %q", n, buf[:k], err, want)
					}
				}
			},
		},
		{
			name: "an open file can still be changed after unlink",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"low": "lower data"})
				w(t, e.RW, testutil.Tree{"up": "upper data"})
			},
			check: func(t *testing.T, e *unionEnv) {
				// As on ext4: the object lives on while a descriptor holds
				// it, and its attributes can change through the descriptor.
				for _, n := range []string{"low", "up"} {
					f, err := os.OpenFile(e.m(n), os.O_RDWR, 0)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					if err := os.Remove(e.m(n)); err != nil {
						t.Fatal(err)
					}
					fd := int(f.Fd())
					if _, err := f.WriteAt([]byte("X"), 0); err != nil {
						t.Errorf("%s: write: %v", n, err)
					}
					if err := f.Truncate(5); err != nil {
						t.Errorf("%s: ftruncate: %v", n, err)
					}
					if err := f.Chmod(0o600); err != nil {
						t.Errorf("%s: fchmod: %v", n, err)
					}
					if err := unix.Futimes(fd, []unix.Timeval{{Sec: 5}, {Sec: 5}}); err != nil {
						t.Errorf("%s: futimes: %v", n, err)
					}
					if err := unix.Fsetxattr(fd, "user.x", []byte("1"), 0); err != nil {
						t.Errorf("%s: fsetxattr: %v", n, err)
					}
					var st unix.Stat_t
					if err := unix.Fstat(fd, &st); err != nil {
						t.Errorf("%s: fstat: %v", n, err)
					} else if st.Size != 5 || st.Mode&0o777 != 0o600 || st.Mtim.Sec != 5 {
						t.Errorf("%s: fstat: size %d mode %o mtime %d; want 5 600 5", n, st.Size, st.Mode, st.Mtim.Sec)
					}
				}
			},
		},
		{
			name: "whiteouts persist across a remount",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/x": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("f")); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(e.m("d/x")); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(e.m("d")); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(e.m("d"), 0o755); err != nil {
					t.Fatal(err)
				}
				// A second union of the same branches (read-only, so the two
				// do not share a writer).
				mnt2 := mountUnion(t, fusefs.Branch{Path: e.RW, Perm: fusefs.PermROWH}, fusefs.Branch{Path: e.WH, Perm: fusefs.PermROWH},
					fusefs.Branch{Path: e.RO, Perm: fusefs.PermRO})
				wantMissing(t, filepath.Join(mnt2, "f"))
				wantNames(t, filepath.Join(mnt2, "d"))
				wantNames(t, mnt2, "d")
			},
		},
	})
}

// roOps are the changes a read-only union refuses.
var roOps = []struct {
	name string
	do   func(mnt string) error
}{
	{"create", func(m string) error { return os.WriteFile(m+"/new", nil, 0o644) }},
	{"open O_WRONLY", func(m string) error { return openClose(m+"/f", os.O_WRONLY) }},
	{"open O_RDWR", func(m string) error { return openClose(m+"/f", os.O_RDWR) }},
	{"open O_TRUNC", func(m string) error { return openClose(m+"/f", os.O_WRONLY|os.O_TRUNC) }},
	{"mkdir", func(m string) error { return os.Mkdir(m+"/newdir", 0o755) }},
	{"mkfifo", func(m string) error { return unix.Mkfifo(m+"/fifo", 0o644) }},
	{"symlink", func(m string) error { return os.Symlink("f", m+"/sym") }},
	{"link", func(m string) error { return os.Link(m+"/f", m+"/hard") }},
	{"unlink", func(m string) error { return unix.Unlink(m + "/f") }},
	{"unlink in subdir", func(m string) error { return unix.Unlink(m + "/d/g") }},
	{"rmdir", func(m string) error { return unix.Rmdir(m + "/empty") }},
	{"rename", func(m string) error { return os.Rename(m+"/f", m+"/f2") }},
	{"chmod", func(m string) error { return os.Chmod(m+"/f", 0o600) }},
	{"chmod root", func(m string) error { return os.Chmod(m, 0o700) }},
	{"chown", func(m string) error { return os.Lchown(m+"/f", os.Getuid(), os.Getgid()) }},
	{"truncate", func(m string) error { return unix.Truncate(m+"/f", 0) }},
	{"utimes", func(m string) error { return unix.UtimesNano(m+"/f", []unix.Timespec{{Sec: 1}, {Sec: 1}}) }},
	{"setxattr", func(m string) error { return unix.Lsetxattr(m+"/f", "user.x", []byte("1"), 0) }},
	{"removexattr", func(m string) error { return unix.Lremovexattr(m+"/f", "user.k") }},
}

func openClose(p string, flag int) error {
	f, err := os.OpenFile(p, flag, 0)
	if err == nil {
		f.Close()
	}
	return err
}

func TestReadOnlyUnion(t *testing.T) {
	layouts := []struct {
		name string
		cfg  func(e *unionEnv, c *fusefs.Config)
	}{
		{"no rw branch", func(e *unionEnv, c *fusefs.Config) {
			c.Branches = []fusefs.Branch{{Path: e.WH, Perm: fusefs.PermROWH}, {Path: e.RO, Perm: fusefs.PermRO}}
		}},
		{"ReadOnly over an rw branch", func(e *unionEnv, c *fusefs.Config) { c.ReadOnly = true }},
	}
	setup := func(t *testing.T, e *unionEnv) {
		w(t, e.RO, testutil.Tree{"f": "ro", "d/g": "ro", "empty/": "", "gone": "ro"})
		w(t, e.WH, testutil.Tree{"d/h": "wh"})
		setxattr(t, filepath.Join(e.RO, "f"), "user.k", "v")
		e.wh(t, e.WH, "gone")
	}
	for _, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			var rules []unionRule
			for _, op := range roOps {
				rules = append(rules, unionRule{
					name:  op.name,
					cfg:   l.cfg,
					setup: setup,
					check: func(t *testing.T, e *unionEnv) {
						before := snapshot(t, filepath.Join(e.RO, "f"))
						wantErrno(t, op.name, op.do(e.Mnt), unix.EROFS)
						wantUnchanged(t, filepath.Join(e.RO, "f"), before)
						if ents, _ := os.ReadDir(e.RW); len(ents) != 0 {
							t.Errorf("the rw branch of a read-only union was written: %v", ents)
						}
					},
				})
			}
			rules = append(rules, unionRule{
				name:    "reads and whiteouts work",
				formats: true,
				cfg:     l.cfg,
				setup:   setup,
				check: func(t *testing.T, e *unionEnv) {
					wantContent(t, e.m("f"), "ro")
					wantNames(t, e.Mnt, "d", "empty", "f")
					wantNames(t, e.m("d"), "g", "h")
					wantMissing(t, e.m("gone"))
					if v, err := xattr(e.m("f"), "user.k"); err != nil || v != "v" {
						t.Errorf("user.k = %q, %v", v, err)
					}
				},
			})
			runRules(t, rules)
		})
	}
}
