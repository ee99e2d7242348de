package fusefs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Union-semantics tests on real mounts: one table row per rule of the
// "Lookup" and "Whiteouts" sections of the ufs specification (readdir,
// copy-up, removal and the rest have files of their own).
// Rows that read whiteouts or opaque markers from branches run once per
// whiteout format an image builder may have used.

// whFormat writes whiteouts and opaque markers straight into a branch, as an
// image builder would.
type whFormat struct {
	name string
	// root: the format needs privileges (trusted.* xattrs).
	root     bool
	whiteout func(t testing.TB, dir, name string)
	opaque   func(t testing.TB, dir string)
}

var whFormats = []whFormat{
	{name: "aufs", whiteout: aufsWhiteout, opaque: aufsOpaque},
	// Since Linux 5.8 anyone may mknod a 0/0 character device, so the
	// overlay whiteout itself needs no privilege; trusted.* xattrs do.
	{name: "overlay-trusted", root: true, whiteout: chrWhiteout, opaque: xattrOpaque("trusted.overlay.opaque")},
	{name: "overlay-user", whiteout: chrWhiteout, opaque: xattrOpaque("user.overlay.opaque")},
}

func aufsWhiteout(t testing.TB, dir, name string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, ".wh."+name), "", 0o444)
}

func aufsOpaque(t testing.TB, dir string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, ".wh..wh..opq"), "", 0o444)
}

func chrWhiteout(t testing.TB, dir, name string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.OverlayWhiteout(t, filepath.Join(dir, name))
}

func xattrOpaque(attr string) func(t testing.TB, dir string) {
	return func(t testing.TB, dir string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		setxattr(t, dir, attr, "y")
	}
}

// xattrWhiteout makes the overlay "xwhiteout" of Linux 6.8+: a zero-size
// regular file with the overlay.whiteout xattr, inside a directory whose
// overlay.opaque xattr is "x" (Documentation/filesystems/overlayfs.rst,
// "Nesting overlayfs mounts").
func xattrWhiteout(ns string) func(t testing.TB, dir, name string) {
	return func(t testing.TB, dir, name string) {
		t.Helper()
		p := filepath.Join(dir, name)
		writeFile(t, p, "", 0o644)
		setxattr(t, p, ns+".overlay.whiteout", "y")
		if _, err := xattr(dir, ns+".overlay.opaque"); errors.Is(err, unix.ENODATA) {
			setxattr(t, dir, ns+".overlay.opaque", "x")
		}
	}
}

// unionEnv is one mounted case: the standard fixture, its mountpoint and the
// whiteout format of its lower branches.
type unionEnv struct {
	*fixture
	Mnt string
	F   whFormat
}

// m returns the path of rel in the union.
func (e *unionEnv) m(rel string) string { return filepath.Join(e.Mnt, rel) }

// wh hides rel (relative to the branch root) in branch dir br.
func (e *unionEnv) wh(t testing.TB, br, rel string) {
	t.Helper()
	e.F.whiteout(t, filepath.Join(br, filepath.Dir(rel)), filepath.Base(rel))
}

// opq makes directory rel of branch br opaque.
func (e *unionEnv) opq(t testing.TB, br, rel string) {
	t.Helper()
	e.F.opaque(t, filepath.Join(br, rel))
}

// unionRule is one rule of the specification, checked on a mount of the
// standard fixture.
type unionRule struct {
	name string
	// formats: run once per whiteout format, else once.
	formats bool
	// root: needs root (chown, device nodes, trusted.* xattrs).
	root bool
	// cfg adjusts the mount configuration (optional).
	cfg func(e *unionEnv, c *fusefs.Config)
	// setup fills the branches before the mount.
	setup func(t *testing.T, e *unionEnv)
	// check runs on the mount.
	check func(t *testing.T, e *unionEnv)
}

// runRules runs each rule as a subtest (and each format as a nested one).
func runRules(t *testing.T, rules []unionRule) {
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			if !r.formats {
				runRule(t, r, whFormats[0])
				return
			}
			for _, f := range whFormats {
				t.Run(f.name, func(t *testing.T) { runRule(t, r, f) })
			}
		})
	}
}

func runRule(t *testing.T, r unionRule, f whFormat) {
	testutil.RequireFUSE(t)
	if r.root || f.root {
		testutil.RequireRoot(t)
	}
	e := &unionEnv{fixture: newFixture(t), F: f}
	if r.setup != nil {
		r.setup(t, e)
	}
	cfg := fusefs.Config{Branches: e.branches()}
	if r.cfg != nil {
		r.cfg(e, &cfg)
	}
	e.Mnt = mountConfig(t, cfg)
	r.check(t, e)
}

// w writes files into a branch: path → content, as testutil.Tree.
func w(t testing.TB, br string, tree testutil.Tree) {
	t.Helper()
	testutil.Write(t, br, tree)
}

// fourBranches mounts rw over e.RO over a fourth, bottom ro branch.
func fourBranches(bottom *string) func(e *unionEnv, c *fusefs.Config) {
	return func(e *unionEnv, c *fusefs.Config) {
		c.Branches = append(c.Branches, fusefs.Branch{Path: *bottom, Perm: fusefs.PermRO})
	}
}

func TestLookup(t *testing.T) {
	var bottom string // a fourth branch, below RO
	runRules(t, []unionRule{
		{
			name: "topmost branch wins",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "g": "ro", "h": "ro", "d/f": "ro", "d/g": "ro"})
				w(t, e.WH, testutil.Tree{"f": "wh", "g": "wh", "d/f": "wh"})
				w(t, e.RW, testutil.Tree{"f": "rw", "d/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("f"), "rw")
				wantContent(t, e.m("g"), "wh")
				wantContent(t, e.m("h"), "ro")
				wantContent(t, e.m("d/f"), "wh")
				wantContent(t, e.m("d/g"), "ro")
			},
		},
		{
			name: "upper non-directory hides lower directory",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/x": "ro"})
				w(t, e.WH, testutil.Tree{"d": "wh"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("d"), "wh")
				var st unix.Stat_t
				wantErrno(t, "lstat d/x", unix.Lstat(e.m("d/x"), &st), unix.ENOTDIR)
			},
		},
		{
			name: "upper directory does not merge lower non-directory",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d": "ro file", "e": "->d"})
				w(t, e.WH, testutil.Tree{"d/a": "wh", "e/b": "wh"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMode(t, e.m("d"), unix.S_IFDIR|0o755)
				wantNames(t, e.m("d"), "a")
				wantMode(t, e.m("e"), unix.S_IFDIR|0o755)
				wantNames(t, e.m("e"), "b")
			},
		},
		{
			name: "directories merge across all branches",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RW, testutil.Tree{"d/a": "rw", "d/s/1": "rw"})
				w(t, e.WH, testutil.Tree{"d/b": "wh", "d/s/2": "wh"})
				w(t, e.RO, testutil.Tree{"d/c": "ro", "d/s/3": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a", "b", "c", "s")
				wantNames(t, e.m("d/s"), "1", "2", "3")
				wantContent(t, e.m("d/s/3"), "ro")
			},
		},
		{
			name:    "whiteout in rw branch hides",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/x": "ro", "keep": "ro"})
				w(t, e.WH, testutil.Tree{"f": "wh"})
				e.wh(t, e.RW, "f")
				e.wh(t, e.RW, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("f"))
				wantMissing(t, e.m("d"))
				wantMissing(t, e.m("d/x"))
				wantNames(t, e.Mnt, "keep")
			},
		},
		{
			name:    "whiteout in wh branch hides",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/x": "ro", "keep": "ro"})
				e.wh(t, e.WH, "f")
				e.wh(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("f"))
				wantMissing(t, e.m("d"))
				wantMissing(t, e.m("d/x"))
				wantNames(t, e.Mnt, "keep")
			},
		},
		{
			name:    "whiteout in a merged subdirectory hides",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/x": "ro", "d/y": "ro", "d/s/z": "ro"})
				w(t, e.WH, testutil.Tree{"d/": ""})
				e.wh(t, e.WH, "d/x")
				e.wh(t, e.WH, "d/s")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "y")
				wantMissing(t, e.m("d/x"))
				wantMissing(t, e.m("d/s/z"))
			},
		},
		{
			name:    "whiteout hides only lower branches",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro"})
				e.wh(t, e.WH, "f")
				w(t, e.RW, testutil.Tree{"f": "rw"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("f"), "rw")
				wantNames(t, e.Mnt, "f")
			},
		},
		{
			name:    "whiteout in ro branch is not honoured",
			formats: true,
			cfg:     fourBranches(&bottom),
			setup: func(t *testing.T, e *unionEnv) {
				bottom = t.TempDir()
				w(t, bottom, testutil.Tree{"f": "bottom", "d/x": "bottom"})
				w(t, e.RO, testutil.Tree{"d/": ""})
				e.wh(t, e.RO, "f")
				e.wh(t, e.RO, "d/x")
			},
			check: func(t *testing.T, e *unionEnv) {
				// In the aufs format the whiteout is a separate (hidden) name
				// and the bottom file shows through; in the overlay format the
				// whiteout is an object at the name itself, which the ro
				// branch then holds: either way the name stays visible.
				wantExists(t, e.m("f"))
				wantExists(t, e.m("d/x"))
				if e.F.name == "aufs" {
					wantContent(t, e.m("f"), "bottom")
					wantContent(t, e.m("d/x"), "bottom")
					wantNames(t, e.Mnt, "d", "f")
				}
			},
		},
		{
			name:    "whiteout of a directory hides its whole lower tree",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/s/t/f": "ro"})
				e.wh(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("d"))
				var st unix.Stat_t
				wantErrno(t, "lstat d/s/t/f", unix.Lstat(e.m("d/s/t/f"), &st), unix.ENOENT)
				wantNames(t, e.Mnt)
			},
		},
		{
			name:    "opaque directory in wh branch stops the merge",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/b": "ro", "d/s/y": "ro"})
				w(t, e.WH, testutil.Tree{"d/a": "wh", "d/s/x": "wh"})
				w(t, e.RW, testutil.Tree{"d/r": "rw"})
				e.opq(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a", "r", "s")
				wantMissing(t, e.m("d/b"))
				wantNames(t, e.m("d/s"), "x")
			},
		},
		{
			name:    "opaque directory in rw branch stops the merge",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/c": "ro"})
				w(t, e.WH, testutil.Tree{"d/b": "wh"})
				w(t, e.RW, testutil.Tree{"d/a": "rw"})
				e.opq(t, e.RW, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
				wantMissing(t, e.m("d/b"))
				wantMissing(t, e.m("d/c"))
			},
		},
		{
			name:    "opaque directory in ro branch is not honoured",
			formats: true,
			cfg:     fourBranches(&bottom),
			setup: func(t *testing.T, e *unionEnv) {
				bottom = t.TempDir()
				w(t, bottom, testutil.Tree{"d/b": "bottom"})
				w(t, e.RO, testutil.Tree{"d/a": "ro"})
				e.opq(t, e.RO, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a", "b")
			},
		},
		{
			name:    "opaque root of a wh branch hides lower branches",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"low": "ro", "d/low": "ro"})
				w(t, e.WH, testutil.Tree{"mid": "wh", "d/mid": "wh"})
				e.opq(t, e.WH, ".")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.Mnt, "d", "mid")
				wantNames(t, e.m("d"), "mid")
				wantMissing(t, e.m("low"))
			},
		},
		{
			name:    "directory re-created under an opaque marker in a lower branch",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				// The wh branch replaced d (whiteout) and then made it again
				// (opaque), as a layer of an image does.
				w(t, e.RO, testutil.Tree{"d/old": "ro"})
				w(t, e.WH, testutil.Tree{"d/new": "wh"})
				e.opq(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "new")
			},
		},
	})
}

func TestWhiteouts(t *testing.T) {
	runRules(t, []unionRule{
		{
			name: "aufs whiteout file",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "g": "ro"})
				aufsWhiteout(t, e.WH, "f")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("f"))
				wantNames(t, e.Mnt, "g")
			},
		},
		{
			name: "aufs whiteout that is a directory or a symlink",
			setup: func(t *testing.T, e *unionEnv) {
				// aufs tests only the name of a whiteout.
				w(t, e.RO, testutil.Tree{"f": "ro", "g": "ro"})
				w(t, e.WH, testutil.Tree{".wh.f/": "", ".wh.g": "->nowhere"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("f"))
				wantMissing(t, e.m("g"))
				wantNames(t, e.Mnt)
			},
		},
		{
			name: "aufs opaque marker",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/b": "ro"})
				w(t, e.WH, testutil.Tree{"d/a": "wh"})
				aufsOpaque(t, filepath.Join(e.WH, "d"))
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
			},
		},
		{
			name: "overlay character device 0/0",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro", "d/x": "ro", "g": "ro"})
				chrWhiteout(t, e.WH, "f")
				chrWhiteout(t, e.WH, "d")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("f"))
				wantMissing(t, e.m("d"))
				wantNames(t, e.Mnt, "g")
			},
		},
		{
			name: "character device other than 0/0 is no whiteout",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"null": "ro"})
				if err := unix.Mknod(filepath.Join(e.WH, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				st := lstat(t, e.m("null"))
				if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
					t.Errorf("null: mode %o rdev %x, want the 1:3 device", st.Mode, st.Rdev)
				}
			},
		},
		{
			name: "trusted.overlay.opaque",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/b": "ro"})
				w(t, e.WH, testutil.Tree{"d/a": "wh"})
				setxattr(t, filepath.Join(e.WH, "d"), "trusted.overlay.opaque", "y")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
			},
		},
		{
			name: "user.overlay.opaque",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/b": "ro"})
				w(t, e.WH, testutil.Tree{"d/a": "wh"})
				setxattr(t, filepath.Join(e.WH, "d"), "user.overlay.opaque", "y")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a")
			},
		},
		{
			name: "overlay.opaque other than y is not opaque",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/b": "ro", "e/b": "ro"})
				w(t, e.WH, testutil.Tree{"d/a": "wh", "e/a": "wh"})
				setxattr(t, filepath.Join(e.WH, "d"), "user.overlay.opaque", "n")
				setxattr(t, filepath.Join(e.WH, "e"), "user.overlay.opaque", "x")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "a", "b")
				wantNames(t, e.m("e"), "a", "b")
			},
		},
		{
			name: "user.overlay.whiteout xattr file",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro", "d/g": "ro", "d/s/x": "ro"})
				xattrWhiteout("user")(t, filepath.Join(e.WH, "d"), "f")
				xattrWhiteout("user")(t, filepath.Join(e.WH, "d"), "s")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("d/f"))
				wantMissing(t, e.m("d/s"))
				wantNames(t, e.m("d"), "g")
			},
		},
		{
			name: "trusted.overlay.whiteout xattr file",
			root: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro", "d/g": "ro"})
				xattrWhiteout("trusted")(t, filepath.Join(e.WH, "d"), "f")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m("d/f"))
				wantNames(t, e.m("d"), "g")
			},
		},
		{
			name: "overlay.whiteout xattr file outside an xwhiteouts directory is a file",
			setup: func(t *testing.T, e *unionEnv) {
				// Without the directory's overlay.opaque=x marker, the
				// kernel takes such a file for a plain empty file.
				w(t, e.RO, testutil.Tree{"d/f": "ro"})
				w(t, e.WH, testutil.Tree{"d/f": ""})
				setxattr(t, filepath.Join(e.WH, "d/f"), "user.overlay.whiteout", "y")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantContent(t, e.m("d/f"), "")
				wantNames(t, e.m("d"), "f")
			},
		},
		{
			name: "meta names never show",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{".wh.gone": "", ".wh..wh.ro": "", "d/.wh..wh..opq": "", "d/x": "ro"})
				w(t, e.WH, testutil.Tree{".wh..wh.aaa/f": "", ".wh.gone2": "", "d/.wh.nothing": ""})
				w(t, e.RW, testutil.Tree{"d/.wh..wh..opq": "", "d/y": "rw", ".wh..wh.orph/": ""})
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, n := range []string{".wh.gone", ".wh.gone2", ".wh..wh.ro", ".wh..wh.aaa", ".wh..wh.aaa/f",
					".wh..wh.work", ".wh..wh.plnk", ".wh..wh.orph", "d/.wh..wh..opq", "d/.wh.nothing", ".wh.d", "d/.wh.y"} {
					wantMissing(t, e.m(n))
				}
				wantNames(t, e.Mnt, "d")
				wantNames(t, e.m("d"), "y")
			},
		},
		{
			name: "creating a .wh. name is refused with EINVAL",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/f": "ro", "x": "ro"})
				w(t, e.RW, testutil.Tree{"r": "rw"})
			},
			check: func(t *testing.T, e *unionEnv) {
				for _, dir := range []string{"", "d"} {
					p := func(n string) string { return e.m(filepath.Join(dir, n)) }
					_, err := os.OpenFile(p(".wh.new"), os.O_CREATE|os.O_WRONLY, 0o644)
					wantErrno(t, "create .wh.new", err, unix.EINVAL)
					_, err = os.OpenFile(p(".wh.x"), os.O_CREATE|os.O_WRONLY, 0o644)
					wantErrno(t, "create .wh.x", err, unix.EINVAL)
					_, err = os.OpenFile(p(".wh..wh..opq"), os.O_CREATE|os.O_WRONLY, 0o644)
					wantErrno(t, "create .wh..wh..opq", err, unix.EINVAL)
					_, err = os.OpenFile(p(".wh..wh.work"), os.O_CREATE|os.O_WRONLY, 0o644)
					wantErrno(t, "create .wh..wh.work", err, unix.EINVAL)
					wantErrno(t, "mkdir", os.Mkdir(p(".wh.dir"), 0o755), unix.EINVAL)
					wantErrno(t, "symlink", os.Symlink("x", p(".wh.sym")), unix.EINVAL)
					wantErrno(t, "mkfifo", unix.Mkfifo(p(".wh.fifo"), 0o644), unix.EINVAL)
					wantErrno(t, "link", os.Link(e.m("r"), p(".wh.link")), unix.EINVAL)
					wantErrno(t, "rename", os.Rename(e.m("r"), p(".wh.r")), unix.EINVAL)
				}
				wantContent(t, e.m("r"), "rw")
				wantNames(t, e.Mnt, "d", "r", "x")
				// Nothing of it reached the rw branch.
				ents, _ := os.ReadDir(e.RW)
				for _, de := range ents {
					if n := de.Name(); n != "r" && n != "d" && n != ".wh..wh.work" && n != ".wh..wh.plnk" {
						t.Errorf("rw branch has %q", n)
					}
				}
			},
		},
		{
			name:    "a lookup of .wh.NAME finds nothing",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"x": "ro", "gone": "ro"})
				e.wh(t, e.WH, "gone")
			},
			check: func(t *testing.T, e *unionEnv) {
				wantMissing(t, e.m(".wh.x"))
				wantMissing(t, e.m(".wh.gone"))
				wantMissing(t, e.m(".wh..wh..opq"))
			},
		},
		{
			name: "unlink writes an aufs whiteout into the rw branch",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"f": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				if err := os.Remove(e.m("f")); err != nil {
					t.Fatal(err)
				}
				st := lstat(t, filepath.Join(e.RW, ".wh.f"))
				if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
					t.Errorf(".wh.f: mode %o size %d, want an empty regular file", st.Mode, st.Size)
				}
			},
		},
	})
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}
