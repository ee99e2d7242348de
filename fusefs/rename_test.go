package fusefs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Rename and the create policy of several rw branches.

func TestRename(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "lower file to a new name",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro", "e/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				ino := lstat(t, e.m("d/f")).Ino
				if err := os.Rename(e.m("d/f"), e.m("e/g")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("d/f"))
				wantContent(t, e.m("e/g"), "ro")
				if got := lstat(t, e.m("e/g")).Ino; got != ino {
					t.Errorf("inode %d after rename, %d before", got, ino)
				}
				wantAufsWhiteout(t, filepath.Join(e.RW, "d"), "f")
				wantContent(t, filepath.Join(e.RO, "d/f"), "ro")
				wantNames(t, e.m("d"))
			},
		},
		{
			// Regression: an unprivileged daemon reopened the mode-0
			// opaque marker for writing to mark the moved directory, and
			// the rename failed with EACCES.
			name: "directory made again over a lower one, moved to another directory",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"c/old": "ro", "e/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.RemoveAll(e.m("c")); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(e.m("c"), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, e.m("c/new"), "new", 0o644)
				if err := os.Rename(e.m("c"), e.m("e/x")); err != nil {
					t.Fatalf("rename of the opaque directory: %v", err)
				}
				wantMissing(t, e.m("c"))
				wantNames(t, e.m("e/x"), "new")
			},
		},
		{
			name: "over an existing lower file",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a": "a", "b": "b"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Rename(e.m("a"), e.m("b")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("a"))
				wantContent(t, e.m("b"), "a")
				wantNames(t, e.Mnt, "b")
			},
		},
		{
			name:    "onto a whited-out name",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a": "a", "b": "old b"})
				e.wh(t, e.WH, "b")
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Rename(e.m("a"), e.m("b")); err != nil {
					t.Fatal(err)
				}
				wantContent(t, e.m("b"), "a")
				wantNames(t, e.Mnt, "b")
			},
		},
		{
			name: "directory with lower contents",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/x": "ro", "d/s/y": "ro"})
				w(t, e.WH, testutil.Tree{"d/z": "wh"})
			},
			check: func(t *testing.T, e *unionEnv) {
				ino := lstat(t, e.m("d/s/y")).Ino
				if err := os.Rename(e.m("d"), e.m("n")); err != nil {
					t.Fatalf("rename of a merged directory: %v", err)
				}
				wantMissing(t, e.m("d"))
				wantNames(t, e.m("n"), "s", "x", "z")
				wantContent(t, e.m("n/s/y"), "ro")
				if got := lstat(t, e.m("n/s/y")).Ino; got != ino {
					t.Errorf("n/s/y: inode %d, %d before the rename", got, ino)
				}
				wantNames(t, e.Mnt, "n")
				wantContent(t, filepath.Join(e.RO, "d/x"), "ro")
			},
		},
		{
			name:    "directory onto a whited-out directory name does not merge its old contents",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a/x": "ro", "b/old": "ro"})
				e.wh(t, e.WH, "b")
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Rename(e.m("a"), e.m("b")); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("b"), "x")
				wantMissing(t, e.m("a"))
			},
		},
		{
			name: "directory onto a non-empty directory is ENOTEMPTY",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a/x": "ro", "b/y": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantErrno(t, "rename", unix.Rename(e.m("a"), e.m("b")), unix.ENOTEMPTY)
				wantNames(t, e.m("a"), "x")
				wantNames(t, e.m("b"), "y")
			},
		},
		{
			name: "RENAME_NOREPLACE and RENAME_EXCHANGE",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a": "a", "b": "b"})
			},
			check: func(t *testing.T, e *unionEnv) {
				err := unix.Renameat2(unix.AT_FDCWD, e.m("a"), unix.AT_FDCWD, e.m("b"), unix.RENAME_NOREPLACE)
				wantErrno(t, "RENAME_NOREPLACE", err, unix.EEXIST)
				if err := unix.Renameat2(unix.AT_FDCWD, e.m("a"), unix.AT_FDCWD, e.m("b"), unix.RENAME_EXCHANGE); err != nil {
					t.Fatalf("RENAME_EXCHANGE: %v", err)
				}
				wantContent(t, e.m("a"), "b")
				wantContent(t, e.m("b"), "a")
			},
		},
	})
}

// TestCreatePolicy checks aufs's tdp policy with several rw branches: a new
// name goes to the branch of its parent directory, which is first copied up
// to the topmost rw branch when it lives in a read-only one.
func TestCreatePolicy(t *testing.T) {
	var rw2 string
	twoRW := func(e *unionEnv, c *fusefs.Config) {
		c.Branches = []fusefs.Branch{{Path: e.RW, Perm: fusefs.PermRW}, {Path: rw2, Perm: fusefs.PermRW}, {Path: e.RO, Perm: fusefs.PermRO}}
	}
	runRules(t, []unionRule{
		{
			name: "create in a directory of the lower rw branch stays there",
			cfg:  twoRW,
			setup: func(t *testing.T, e *unionEnv) {
				rw2 = t.TempDir()
				w(t, rw2, testutil.Tree{"d/x": "rw2"})
			},
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("d/new"), "new", 0o644)
				if err := os.Mkdir(e.m("d/sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				wantContent(t, filepath.Join(rw2, "d/new"), "new")
				wantExists(t, filepath.Join(rw2, "d/sub"))
				wantMissing(t, filepath.Join(e.RW, "d"))
			},
		},
		{
			name: "create in a read-only directory copies it to the topmost rw branch",
			cfg:  twoRW,
			setup: func(t *testing.T, e *unionEnv) {
				rw2 = t.TempDir()
				w(t, e.RO, testutil.Tree{"d/x": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				writeFile(t, e.m("d/new"), "new", 0o644)
				wantContent(t, filepath.Join(e.RW, "d/new"), "new")
				wantMissing(t, filepath.Join(rw2, "d"))
				wantNames(t, e.m("d"), "new", "x")
			},
		},
		{
			name: "unlink in the lower rw branch leaves its whiteout there",
			cfg:  twoRW,
			setup: func(t *testing.T, e *unionEnv) {
				rw2 = t.TempDir()
				w(t, rw2, testutil.Tree{"d/f": "rw2"})
				w(t, e.RO, testutil.Tree{"d/f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("d/f")); err != nil {
					t.Fatal(err)
				}
				wantMissing(t, e.m("d/f"))
				wantNames(t, e.m("d"))
			},
		},
	})
}
