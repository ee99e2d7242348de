package fusefs_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Copy-up rules: every change to an object of a read-only branch copies it
// (parents first, with their metadata) into the rw branch, leaves the lower
// branch untouched and keeps the object's inode number.

var (
	t0 = time.Date(2001, 1, 1, 0, 0, 0, 123456789, time.UTC) // the lower file
	t1 = time.Date(2002, 2, 2, 0, 0, 0, 0, time.UTC)         // lower a/
	t2 = time.Date(2003, 3, 3, 0, 0, 0, 0, time.UTC)         // lower a/b/
	t3 = time.Date(2004, 4, 4, 0, 0, 0, 0, time.UTC)         // set through the union
)

const lowerContent = "lower content"

// copyUpFixture puts a/b/f (with a sibling and an xattr) into the ro branch,
// with distinctive modes and times on the file and its parents.
func copyUpFixture(t *testing.T, e *unionEnv) {
	w(t, e.RO, testutil.Tree{"a/b/f": lowerContent, "a/b/sib": "sib", "a/other": "other"})
	setxattr(t, filepath.Join(e.RO, "a/b/f"), "user.k", "v")
	chmod(t, filepath.Join(e.RO, "a/b/f"), 0o640)
	chmod(t, filepath.Join(e.RO, "a/b"), 0o710)
	chmod(t, filepath.Join(e.RO, "a"), 0o750)
	chtimes(t, filepath.Join(e.RO, "a/b/f"), t0)
	chtimes(t, filepath.Join(e.RO, "a/b"), t2)
	chtimes(t, filepath.Join(e.RO, "a"), t1)
}

func chmod(t testing.TB, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func chtimes(t testing.TB, p string, at time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(at.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

func mtime(st unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC() }

// objState is what a copy-up must preserve of a lower object.
type objState struct {
	st      unix.Stat_t
	content string
	xattrs  map[string]string
}

func snapshot(t testing.TB, p string) objState {
	t.Helper()
	s := objState{st: lstat(t, p), xattrs: map[string]string{}}
	if s.st.Mode&unix.S_IFMT == unix.S_IFREG {
		s.content = readFile(t, p)
	}
	for _, n := range xattrNames(t, p) {
		v, err := xattr(p, n)
		if err != nil {
			t.Fatal(err)
		}
		s.xattrs[n] = v
	}
	return s
}

// wantUnchanged fails t if the object at p differs from before (ctime and
// atime aside).
func wantUnchanged(t testing.TB, p string, before objState) {
	t.Helper()
	now := snapshot(t, p)
	b, a := before.st, now.st
	if a.Ino != b.Ino || a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Size != b.Size || a.Mtim != b.Mtim || a.Nlink != b.Nlink {
		t.Errorf("lower %s changed:\n before ino %d mode %o uid %d gid %d size %d mtime %v nlink %d\n after  ino %d mode %o uid %d gid %d size %d mtime %v nlink %d",
			p, b.Ino, b.Mode, b.Uid, b.Gid, b.Size, mtime(b), b.Nlink, a.Ino, a.Mode, a.Uid, a.Gid, a.Size, mtime(a), a.Nlink)
	}
	if now.content != before.content {
		t.Errorf("lower %s content changed: %q → %q", p, before.content, now.content)
	}
	if fmt.Sprint(now.xattrs) != fmt.Sprint(before.xattrs) {
		t.Errorf("lower %s xattrs changed: %v → %v", p, before.xattrs, now.xattrs)
	}
}

// wantWorkEmpty fails t if a staged copy was left in the rw branch.
func wantWorkEmpty(t testing.TB, rw string) {
	t.Helper()
	wantStagingEmpty(t, filepath.Join(rw, ".wh..wh.work"))
}

// wantStagingEmpty fails t if the staging directory dir keeps anything.
func wantStagingEmpty(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Errorf("staging directory: %v", err)
	}
	for _, e := range ents {
		if e.Type() == fs.ModeDevice|fs.ModeCharDevice && strings.HasPrefix(e.Name(), "wh") {
			continue // the shared whiteout (see linkWhiteout)
		}
		t.Errorf("staging directory keeps %q", e.Name())
	}
}

// copyUpOp is a change that must copy a/b/f up.
type copyUpOp struct {
	name string
	root bool
	// to is where the object is afterwards ("" for a/b/f).
	to string
	// do changes the union object at p.
	do func(t *testing.T, e *unionEnv, p string)
	// want checks that the union shows the change.
	want func(t *testing.T, e *unionEnv, p string)
}

var copyUpOps = []copyUpOp{
	{
		name: "open for write",
		do: func(t *testing.T, e *unionEnv, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("LOWER"), 0); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) { wantContent(t, p, "LOWER content") },
	},
	{
		name: "open read-write without writing",
		do: func(t *testing.T, e *unionEnv, p string) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		},
		want: func(t *testing.T, e *unionEnv, p string) { wantContent(t, p, lowerContent) },
	},
	{
		name: "O_TRUNC",
		do: func(t *testing.T, e *unionEnv, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		},
		want: func(t *testing.T, e *unionEnv, p string) { wantContent(t, p, "") },
	},
	{
		name: "O_APPEND",
		do: func(t *testing.T, e *unionEnv, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte(" and more")); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) { wantContent(t, p, lowerContent+" and more") },
	},
	{
		name: "truncate",
		do: func(t *testing.T, e *unionEnv, p string) {
			if err := unix.Truncate(p, 5); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) { wantContent(t, p, "lower") },
	},
	{
		name: "chmod",
		do:   func(t *testing.T, e *unionEnv, p string) { chmod(t, p, 0o604) },
		want: func(t *testing.T, e *unionEnv, p string) {
			wantMode(t, p, unix.S_IFREG|0o604)
			wantContent(t, p, lowerContent)
		},
	},
	{
		name: "chown",
		root: true,
		do: func(t *testing.T, e *unionEnv, p string) {
			if err := os.Lchown(p, 1234, 5678); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) {
			if st := lstat(t, p); st.Uid != 1234 || st.Gid != 5678 {
				t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
			}
		},
	},
	{
		name: "utimes",
		do:   func(t *testing.T, e *unionEnv, p string) { chtimes(t, p, t3) },
		want: func(t *testing.T, e *unionEnv, p string) {
			if got := mtime(lstat(t, p)); !got.Equal(t3) {
				t.Errorf("mtime %v, want %v", got, t3)
			}
		},
	},
	{
		name: "setxattr",
		do:   func(t *testing.T, e *unionEnv, p string) { setxattr(t, p, "user.new", "1") },
		want: func(t *testing.T, e *unionEnv, p string) {
			if v, err := xattr(p, "user.new"); err != nil || v != "1" {
				t.Errorf("user.new = %q, %v; want 1", v, err)
			}
			if v, err := xattr(p, "user.k"); err != nil || v != "v" {
				t.Errorf("user.k = %q, %v; want v (copied up)", v, err)
			}
		},
	},
	{
		name: "removexattr",
		do: func(t *testing.T, e *unionEnv, p string) {
			if err := unix.Lremovexattr(p, "user.k"); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) {
			_, err := xattr(p, "user.k")
			wantErrno(t, "getxattr user.k", err, unix.ENODATA)
		},
	},
	{
		name: "link",
		do: func(t *testing.T, e *unionEnv, p string) {
			if err := os.Link(p, e.m("a/b/g")); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) {
			wantContent(t, e.m("a/b/g"), lowerContent)
			a, b := lstat(t, p), lstat(t, e.m("a/b/g"))
			if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
				t.Errorf("after link: ino %d/%d nlink %d/%d, want one inode with 2 links", a.Ino, b.Ino, a.Nlink, b.Nlink)
			}
		},
	},
	{
		name: "rename",
		to:   "a/b/h",
		do: func(t *testing.T, e *unionEnv, p string) {
			if err := os.Rename(p, e.m("a/b/h")); err != nil {
				t.Fatal(err)
			}
		},
		want: func(t *testing.T, e *unionEnv, p string) {
			wantMissing(t, p)
			wantContent(t, e.m("a/b/h"), lowerContent)
			wantNames(t, e.m("a/b"), "h", "sib")
		},
	},
	{
		name: "shared writable mmap",
		// From another process: see TestMain.
		do:   func(t *testing.T, e *unionEnv, p string) { helper(t, "mmap-write", p, "MMAP!") },
		want: func(t *testing.T, e *unionEnv, p string) { wantContent(t, p, "MMAP! content") },
	},
}

func TestCopyUp(t *testing.T) {
	var rules []unionRule
	for _, op := range copyUpOps {
		rules = append(rules, unionRule{
			name:  op.name,
			root:  op.root,
			setup: copyUpFixture,
			check: func(t *testing.T, e *unionEnv) {
				p := e.m("a/b/f")
				to := "a/b/f"
				if op.to != "" {
					to = op.to
				}
				lower := snapshot(t, filepath.Join(e.RO, "a/b/f"))
				lowerA := snapshot(t, filepath.Join(e.RO, "a"))
				lowerB := snapshot(t, filepath.Join(e.RO, "a/b"))
				ino, inoA, inoB := lstat(t, p).Ino, lstat(t, e.m("a")).Ino, lstat(t, e.m("a/b")).Ino

				op.do(t, e, p)
				op.want(t, e, p)

				// The object now lives in the rw branch, under its parents
				// copied up with their modes.
				wantExists(t, filepath.Join(e.RW, to))
				for rel, lo := range map[string]objState{"a": lowerA, "a/b": lowerB} {
					st := lstat(t, filepath.Join(e.RW, rel))
					if st.Mode != lo.st.Mode || st.Uid != lo.st.Uid || st.Gid != lo.st.Gid {
						t.Errorf("rw %s: mode %o owner %d:%d, want %o %d:%d as in the lower branch",
							rel, st.Mode, st.Uid, st.Gid, lo.st.Mode, lo.st.Uid, lo.st.Gid)
					}
				}
				// Same inode numbers as before.
				if got := lstat(t, e.m(to)).Ino; got != ino {
					t.Errorf("%s: inode %d after copy-up, %d before", to, got, ino)
				}
				if got := lstat(t, e.m("a")).Ino; got != inoA {
					t.Errorf("a: inode %d after copy-up, %d before", got, inoA)
				}
				if got := lstat(t, e.m("a/b")).Ino; got != inoB {
					t.Errorf("a/b: inode %d after copy-up, %d before", got, inoB)
				}
				// The directories still merge.
				wantNames(t, e.m("a"), "b", "other")
				wantContent(t, e.m("a/b/sib"), "sib")
				// The lower branch is untouched and nothing is left staged.
				wantUnchanged(t, filepath.Join(e.RO, "a/b/f"), lower)
				wantUnchanged(t, filepath.Join(e.RO, "a"), lowerA)
				wantUnchanged(t, filepath.Join(e.RO, "a/b"), lowerB)
				wantWorkEmpty(t, e.RW)
			},
		})
	}
	runRules(t, rules)
}

// makeRemovable lets t.TempDir's cleanup remove trees in which a test took
// away the owner's write or search permission (a no-op for root).
func makeRemovable(t testing.TB, roots ...string) {
	t.Cleanup(func() {
		for _, r := range roots {
			filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					os.Chmod(p, 0o755)
				} else if errors.Is(err, fs.ErrPermission) {
					os.Chmod(p, 0o755)
				}
				return nil
			})
			os.Chmod(r, 0o755)
		}
	})
}

func TestCopyUpRules(t *testing.T) {
	runRules(t, []unionRule{
		{
			// With udba=reval the kernel caches no attributes, so the union
			// shows the parents' times as they are in the branches.
			name:  "parents keep their times",
			cfg:   func(e *unionEnv, c *fusefs.Config) { c.Reval = true },
			setup: copyUpFixture,
			check: func(t *testing.T, e *unionEnv) {
				a, b := mtime(lstat(t, e.m("a"))), mtime(lstat(t, e.m("a/b")))
				chmod(t, e.m("a/b/f"), 0o600)
				for rel, want := range map[string]time.Time{"a": t1, "a/b": t2} {
					if got := mtime(lstat(t, filepath.Join(e.RW, rel))); !got.Equal(want) {
						t.Errorf("rw branch %s: mtime %v, want %v as in the lower branch", rel, got, want)
					}
				}
				if got := mtime(lstat(t, e.m("a"))); !got.Equal(a) {
					t.Errorf("union a: mtime %v after the copy-up of a/b/f, %v before", got, a)
				}
				if got := mtime(lstat(t, e.m("a/b"))); !got.Equal(b) {
					t.Errorf("union a/b: mtime %v after the copy-up of a/b/f, %v before", got, b)
				}
			},
		},
		{
			name:  "copied file keeps its times unless changed",
			setup: copyUpFixture,
			check: func(t *testing.T, e *unionEnv) {
				setxattr(t, e.m("a/b/f"), "user.x", "1")
				if got := mtime(lstat(t, filepath.Join(e.RW, "a/b/f"))); !got.Equal(t0) {
					t.Errorf("rw a/b/f: mtime %v, want %v", got, t0)
				}
				if got := mtime(lstat(t, e.m("a/b/f"))); !got.Equal(t0) {
					t.Errorf("union a/b/f: mtime %v, want %v", got, t0)
				}
			},
		},
		{
			name: "file of the wh branch",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.WH, testutil.Tree{"d/f": "wh"})
				w(t, e.RO, testutil.Tree{"d/f": "ro", "d/g": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				before := snapshot(t, filepath.Join(e.WH, "d/f"))
				writeFile(t, e.m("d/f"), "new", 0)
				wantContent(t, e.m("d/f"), "new")
				wantContent(t, filepath.Join(e.RW, "d/f"), "new")
				wantUnchanged(t, filepath.Join(e.WH, "d/f"), before)
				wantContent(t, filepath.Join(e.RO, "d/f"), "ro")
				wantNames(t, e.m("d"), "f", "g")
			},
		},
		{
			name: "directory copy-up keeps the merge",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/x": "ro"})
				w(t, e.WH, testutil.Tree{"d/y": "wh"})
			},
			check: func(t *testing.T, e *unionEnv) {
				ino := lstat(t, e.m("d")).Ino
				chmod(t, e.m("d"), 0o701)
				wantMode(t, e.m("d"), unix.S_IFDIR|0o701)
				wantMode(t, filepath.Join(e.RW, "d"), unix.S_IFDIR|0o701)
				wantNames(t, e.m("d"), "x", "y")
				wantMissing(t, filepath.Join(e.RW, "d/.wh..wh..opq"))
				if got := lstat(t, e.m("d")).Ino; got != ino {
					t.Errorf("inode %d after copy-up, %d before", got, ino)
				}
			},
		},
		{
			name: "symlink copy-up",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/l": "->../target", "target": "t"})
			},
			check: func(t *testing.T, e *unionEnv) {
				ino := lstat(t, e.m("d/l")).Ino
				chtimes(t, e.m("d/l"), t3)
				if got, err := os.Readlink(filepath.Join(e.RW, "d/l")); err != nil || got != "../target" {
					t.Errorf("rw d/l: readlink %q, %v; want ../target", got, err)
				}
				st := lstat(t, e.m("d/l"))
				if st.Mode&unix.S_IFMT != unix.S_IFLNK || !mtime(st).Equal(t3) || st.Ino != ino {
					t.Errorf("union d/l: mode %o mtime %v ino %d; want a symlink, %v, %d", st.Mode, mtime(st), st.Ino, t3, ino)
				}
				wantContent(t, e.m("d/l"), "t")
			},
		},
		{
			name: "fifo copy-up",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/": ""})
				if err := unix.Mkfifo(filepath.Join(e.RO, "d/p"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				chmod(t, e.m("d/p"), 0o600)
				wantMode(t, e.m("d/p"), unix.S_IFIFO|0o600)
				wantMode(t, filepath.Join(e.RW, "d/p"), unix.S_IFIFO|0o600)
				wantMode(t, filepath.Join(e.RO, "d/p"), unix.S_IFIFO|0o644)
			},
		},
		{
			name: "extended attributes are copied up, the union's own are not",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro"})
				p := filepath.Join(e.RO, "f")
				setxattr(t, p, "user.a", "1")
				setxattr(t, p, "user.b", string(bytes.Repeat([]byte{0, 1, 2}, 1000)))
				setxattr(t, p, "user.overlay.private", "y")
			},
			check: func(t *testing.T, e *unionEnv) {
				chmod(t, e.m("f"), 0o600)
				p := filepath.Join(e.RW, "f")
				if v, _ := xattr(p, "user.a"); v != "1" {
					t.Errorf("user.a = %q, want 1", v)
				}
				if v, _ := xattr(p, "user.b"); v != string(bytes.Repeat([]byte{0, 1, 2}, 1000)) {
					t.Errorf("user.b: %d bytes, want the 3000 bytes of the lower file", len(v))
				}
				if _, err := xattr(p, "user.overlay.private"); !errors.Is(err, unix.ENODATA) {
					t.Errorf("user.overlay.private copied up: %v", err)
				}
			},
		},
		{
			name: "security.capability is copied up",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"bin": "#!/bin/true\n"})
				setxattr(t, filepath.Join(e.RO, "bin"), "security.capability", string(capNetBindService))
			},
			check: func(t *testing.T, e *unionEnv) {
				chtimes(t, e.m("bin"), t3)
				if v, err := xattr(filepath.Join(e.RW, "bin"), "security.capability"); err != nil || v != string(capNetBindService) {
					t.Errorf("rw bin: security.capability %x, %v; want %x", v, err, capNetBindService)
				}
			},
		},
		{
			name: "owner is kept",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro"})
				for _, p := range []string{"d/f", "d"} {
					if err := os.Lchown(filepath.Join(e.RO, p), 1234, 5678); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				chmod(t, e.m("d/f"), 0o600)
				for _, p := range []string{"d/f", "d"} {
					if st := lstat(t, filepath.Join(e.RW, p)); st.Uid != 1234 || st.Gid != 5678 {
						t.Errorf("rw %s: owner %d:%d, want 1234:5678", p, st.Uid, st.Gid)
					}
				}
			},
		},
		{
			name: "sparse file stays sparse",
			setup: func(t *testing.T, e *unionEnv) {
				p := filepath.Join(e.RO, "sparse")
				f, err := os.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte("data"), 128<<20); err != nil {
					t.Fatal(err)
				}
				if err := f.Truncate(256 << 20); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				chmod(t, e.m("sparse"), 0o600)
				st := lstat(t, filepath.Join(e.RW, "sparse"))
				if st.Size != 256<<20 {
					t.Errorf("size %d, want %d", st.Size, 256<<20)
				}
				if st.Blocks*512 > 1<<20 {
					t.Errorf("copy takes %d bytes on disk, want the holes kept", st.Blocks*512)
				}
				f, err := os.Open(e.m("sparse"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				buf := make([]byte, 8)
				if _, err := f.ReadAt(buf, 128<<20-4); err != nil || string(buf) != "\x00\x00\x00\x00data" {
					t.Errorf("read around the data: %q, %v", buf, err)
				}
			},
		},
		{
			name: "large file data intact",
			setup: func(t *testing.T, e *unionEnv) {
				data := make([]byte, 8<<20+17)
				rand.Read(data)
				if err := os.WriteFile(filepath.Join(e.RO, "big"), data, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				want, err := os.ReadFile(filepath.Join(e.RO, "big"))
				if err != nil {
					t.Fatal(err)
				}
				f, err := os.OpenFile(e.m("big"), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("X"), 4<<20); err != nil {
					t.Fatal(err)
				}
				f.Close()
				want[4<<20] = 'X'
				if got := readFile(t, e.m("big")); got != string(want) {
					t.Errorf("union big differs from the lower file plus one byte")
				}
				if got := readFile(t, filepath.Join(e.RW, "big")); got != string(want) {
					t.Errorf("rw big differs from the lower file plus one byte")
				}
			},
		},
		{
			name: "a read-only descriptor opened before the copy-up reads consistent data",
			setup: func(t *testing.T, e *unionEnv) {
				writeFile(t, filepath.Join(e.RO, "f"), string(bytes.Repeat([]byte("o"), 64<<10)), 0o644)
			},
			check: func(t *testing.T, e *unionEnv) {
				old, err := os.Open(e.m("f"))
				if err != nil {
					t.Fatal(err)
				}
				defer old.Close()
				buf := make([]byte, 64<<10)
				if _, err := old.ReadAt(buf[:4096], 0); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(e.m("f"), bytes.Repeat([]byte("n"), 64<<10), 0); err != nil {
					t.Fatal(err)
				}
				n, err := old.ReadAt(buf, 0)
				if err != nil || n != len(buf) {
					t.Fatalf("read through the old descriptor: %d, %v", n, err)
				}
				if !bytes.Equal(buf, bytes.Repeat([]byte("o"), len(buf))) && !bytes.Equal(buf, bytes.Repeat([]byte("n"), len(buf))) {
					t.Errorf("the old descriptor reads a mix of old and new data: %q...", buf[:16])
				}
			},
		},
		{
			name: "hard-linked lower files stay linked",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/a": "one object"})
				if err := os.Link(filepath.Join(e.RO, "d/a"), filepath.Join(e.RO, "d/b")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				a0, b0 := lstat(t, e.m("d/a")), lstat(t, e.m("d/b"))
				if a0.Ino != b0.Ino || a0.Nlink != 2 {
					t.Fatalf("before copy-up: ino %d/%d nlink %d; want one inode, 2 links", a0.Ino, b0.Ino, a0.Nlink)
				}
				writeFile(t, e.m("d/a"), "changed", 0)
				wantContent(t, e.m("d/b"), "changed")
				chmod(t, e.m("d/b"), 0o600)
				wantMode(t, e.m("d/a"), unix.S_IFREG|0o600)
				a, b := lstat(t, e.m("d/a")), lstat(t, e.m("d/b"))
				if a.Ino != a0.Ino || b.Ino != a0.Ino {
					t.Errorf("after copy-up: inodes %d/%d, want %d", a.Ino, b.Ino, a0.Ino)
				}
				if a.Nlink != 2 || b.Nlink != 2 {
					t.Errorf("after copy-up: nlink %d/%d, want 2", a.Nlink, b.Nlink)
				}
			},
		},
		{
			name: "link count after copy-up of one name and unlink of the other",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/a": "one object"})
				if err := os.Link(filepath.Join(e.RO, "d/a"), filepath.Join(e.RO, "d/b")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("d/a"), "changed", 0)
				if err := os.Remove(e.m("d/b")); err != nil {
					t.Errorf("unlink of the other name: %v", err)
				}
				wantMissing(t, e.m("d/b"))
				wantNames(t, e.m("d"), "a")
				wantContent(t, e.m("d/a"), "changed")
				if st := lstat(t, e.m("d/a")); st.Nlink != 1 {
					t.Errorf("d/a: nlink %d with one name left, want 1", st.Nlink)
				}
			},
		},
		{
			name: "concurrent copy-ups of one file",
			setup: func(t *testing.T, e *unionEnv) {
				writeFile(t, filepath.Join(e.RO, "d/f"), string(bytes.Repeat([]byte("."), 64)), 0o644)
			},
			check: func(t *testing.T, e *unionEnv) {
				var wg sync.WaitGroup
				for i := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						f, err := os.OpenFile(e.m("d/f"), os.O_RDWR, 0)
						if err != nil {
							t.Error(err)
							return
						}
						defer f.Close()
						if _, err := f.WriteAt([]byte{byte('0' + i)}, int64(i*8)); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				want := bytes.Repeat([]byte("."), 64)
				for i := range 8 {
					want[i*8] = byte('0' + i)
				}
				wantContent(t, e.m("d/f"), string(want))
				wantWorkEmpty(t, e.RW)
			},
		},
		{
			name: "owner may chmod an unreadable lower file",
			setup: func(t *testing.T, e *unionEnv) {
				writeFile(t, filepath.Join(e.RO, "d/secret"), "secret", 0o644)
				chmod(t, filepath.Join(e.RO, "d/secret"), 0)
			},
			check: func(t *testing.T, e *unionEnv) {
				err := os.Chmod(e.m("d/secret"), 0o600)
				if os.Geteuid() != 0 {
					// Documented limitation: a daemon without
					// CAP_DAC_OVERRIDE cannot read the file to copy it
					// up, and a read-only branch is never changed.
					if !errors.Is(err, unix.EACCES) {
						t.Fatalf("rootless chmod of a mode-0 lower file: %v, want EACCES", err)
					}
					wantMode(t, filepath.Join(e.RO, "d/secret"), unix.S_IFREG)
					return
				}
				if err != nil {
					t.Fatalf("chmod of a mode-0 lower file by its owner: %v", err)
				}
				wantContent(t, e.m("d/secret"), "secret")
			},
		},
		{
			name: "writable file in a read-only lower directory",
			setup: func(t *testing.T, e *unionEnv) {
				writeFile(t, filepath.Join(e.RO, "ro/sub/f"), "ro", 0o644)
				chmod(t, filepath.Join(e.RO, "ro/sub"), 0o555)
				chmod(t, filepath.Join(e.RO, "ro"), 0o555)
				makeRemovable(t, e.RO, e.RW)
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.WriteFile(e.m("ro/sub/f"), []byte("written"), 0); err != nil {
					t.Fatalf("write a writable file in a 0555 lower directory: %v", err)
				}
				wantContent(t, e.m("ro/sub/f"), "written")
				wantMode(t, e.m("ro/sub"), unix.S_IFDIR|0o555)
				wantMode(t, filepath.Join(e.RW, "ro/sub"), unix.S_IFDIR|0o555)
			},
		},
		{
			name: "inode number survives the kernel forgetting the inode",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				ino, dino := lstat(t, e.m("d/f")).Ino, lstat(t, e.m("d")).Ino
				chmod(t, e.m("d/f"), 0o600)
				// Drop the kernel's dentries and inodes: the next stat
				// looks both names up again.
				if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
					t.Skipf("drop_caches: %v", err)
				}
				if got := lstat(t, e.m("d/f")).Ino; got != ino {
					t.Errorf("d/f: inode %d after copy-up and forget, %d before", got, ino)
				}
				if got := lstat(t, e.m("d")).Ino; got != dino {
					t.Errorf("d: inode %d after copy-up and forget, %d before", got, dino)
				}
			},
		},
	})
}

// capNetBindService is a VFS_CAP_REVISION_2 security.capability value
// granting CAP_NET_BIND_SERVICE (permitted, effective).
var capNetBindService = []byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: revision 2, effective
	0x00, 0x04, 0x00, 0x00, // permitted[0]: bit 10
	0x00, 0x00, 0x00, 0x00, // inheritable[0]
	0x00, 0x00, 0x00, 0x00, // permitted[1]
	0x00, 0x00, 0x00, 0x00, // inheritable[1]
}
