package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// readdir rules: a merged listing shows each name once, whiteouts applied,
// with the d_type and d_ino that lstat gives; telldir/seekdir work, and a
// directory read while entries change never shows a name twice nor skips
// one that stayed.

// dtOf turns a file mode into the d_type getdents reports.
func dtOf(mode uint32) uint8 { return uint8((mode & unix.S_IFMT) >> 12) }

// openDir opens a directory of the union for getdents; closed at cleanup.
func openDir(t testing.TB, path string) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// wantDirentsMatchStat checks that every entry of dir (except the mount
// root's "..") has the d_type and d_ino that lstat gives, and that each name
// shows once. It returns the names.
func wantDirentsMatchStat(t testing.TB, dir string, isRoot bool) []string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer unix.Close(fd)
	seen := map[string]bool{}
	var out []string
	for _, d := range readDirents(t, fd, 8192) {
		if seen[d.Name] {
			t.Errorf("%s: %q listed twice", dir, d.Name)
		}
		seen[d.Name] = true
		if d.Name == ".." && isRoot {
			continue
		}
		st := lstat(t, filepath.Join(dir, d.Name))
		if d.Ino != st.Ino {
			t.Errorf("%s/%s: d_ino %d, st_ino %d", dir, d.Name, d.Ino, st.Ino)
		}
		if d.Type != dtOf(st.Mode) {
			t.Errorf("%s/%s: d_type %d, want %d (mode %o)", dir, d.Name, d.Type, dtOf(st.Mode), st.Mode)
		}
		if d.Name != "." && d.Name != ".." {
			out = append(out, d.Name)
		}
	}
	if !seen["."] || !seen[".."] {
		t.Errorf("%s: no . or .. entry", dir)
	}
	sort.Strings(out)
	return out
}

func TestReaddir(t *testing.T) {
	runRules(t, []unionRule{
		{
			name:    "each name once, whiteouts applied",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a": "ro", "b": "ro", "c": "ro", "x": "ro", "d/1": "ro", "d/2": "ro"})
				w(t, e.WH, testutil.Tree{"a": "wh", "b": "wh", "d/2": "wh", "d/3": "wh"})
				w(t, e.RW, testutil.Tree{"a": "rw", "d/3": "rw", "d/4": "rw"})
				e.wh(t, e.WH, "x")
				e.wh(t, e.WH, "d/1")
			},
			check: func(t *testing.T, e *unionEnv) {
				if got, want := wantDirentsMatchStat(t, e.Mnt, true), []string{"a", "b", "c", "d"}; !equal(got, want) {
					t.Errorf("root: got %q, want %q", got, want)
				}
				if got, want := wantDirentsMatchStat(t, e.m("d"), false), []string{"2", "3", "4"}; !equal(got, want) {
					t.Errorf("d: got %q, want %q", got, want)
				}
			},
		},
		{
			name: "d_type and d_ino match lstat for every kind of object",
			setup: func(t *testing.T, e *unionEnv) {
				for _, br := range []string{e.RO, e.WH, e.RW} {
					tag := filepath.Base(br)
					w(t, br, testutil.Tree{"file-" + tag: "x", "dir-" + tag + "/": "", "sym-" + tag: "->file-" + tag, "m/file-" + tag: "x"})
					if err := unix.Mkfifo(filepath.Join(br, "fifo-"+tag), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := unix.Mknod(filepath.Join(br, "sock-"+tag), unix.S_IFSOCK|0o644, 0); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				if got := wantDirentsMatchStat(t, e.Mnt, true); len(got) != 16 {
					t.Errorf("root lists %d names, want 16: %q", len(got), got)
				}
				if got := wantDirentsMatchStat(t, e.m("m"), false); len(got) != 3 {
					t.Errorf("m lists %d names, want 3: %q", len(got), got)
				}
			},
		},
		{
			name: "d_ino matches st_ino after copy-up and create",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/low": "ro", "d/s/f": "ro", "d/keep": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				before := lstat(t, e.m("d/low")).Ino
				if err := os.Chmod(e.m("d/low"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(e.m("d/s"), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, e.m("d/new"), "new", 0o644)
				if err := os.Mkdir(e.m("d/newdir"), 0o755); err != nil {
					t.Fatal(err)
				}
				if after := lstat(t, e.m("d/low")).Ino; after != before {
					t.Errorf("copy-up changed the inode number: %d → %d", before, after)
				}
				wantDirentsMatchStat(t, e.m("d"), false)
				wantDirentsMatchStat(t, e.m("d/s"), false)
			},
		},
		{name: "telldir and seekdir", setup: seekdirSetup, check: seekdirCheck},
		{name: "telldir and seekdir (udba=reval)", cfg: revalCfg, setup: seekdirSetup, check: seekdirCheck},
		{name: "a directory read while entries change shows no name twice and skips none that stayed", setup: changingSetup, check: changingCheck},
		{name: "a directory read while entries change shows no name twice and skips none that stayed (udba=reval)", cfg: revalCfg, setup: changingSetup, check: changingCheck},
		{name: "two readers of a directory, one restarting while entries change, see each name that stayed once", setup: changingSetup, check: twoReadersCheck},
		{name: "two readers of a directory, one restarting while entries change, see each name that stayed once (udba=reval)", cfg: revalCfg, setup: changingSetup, check: twoReadersCheck},
		{
			// More listings in progress than the union holds at once
			// (handle-less directories): each still reads whole.
			name: "listings of many directories read in turns",
			setup: func(t *testing.T, e *unionEnv) {
				for d := range 80 {
					for i := range 60 {
						br := []string{e.RW, e.WH, e.RO}[i%3]
						w(t, br, testutil.Tree{fmt.Sprintf("d%02d/entry-with-a-longish-name-%03d", d, i): ""})
					}
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				fds := make([]int, 80)
				got := make([][]dirent, 80)
				buf := make([]byte, 1024)
				for d := range fds {
					fds[d] = openDir(t, e.m(fmt.Sprintf("d%02d", d)))
					n, err := unix.Getdents(fds[d], buf)
					if err != nil || n == 0 {
						t.Fatalf("getdents d%02d: %d, %v", d, n, err)
					}
					got[d] = parseDirents(buf[:n])
				}
				for d, fd := range fds {
					all := append(got[d], readDirents(t, fd, 1024)...)
					seen := map[string]bool{}
					for _, de := range all {
						if seen[de.Name] {
							t.Errorf("d%02d: %q listed twice", d, de.Name)
						}
						seen[de.Name] = true
					}
					if len(seen) != 62 {
						t.Errorf("d%02d: %d names, want 62", d, len(seen))
					}
				}
			},
		},
		{
			name:  "fsync of a directory",
			setup: func(t *testing.T, e *unionEnv) { w(t, e.RO, testutil.Tree{"d/a": "ro"}) },
			check: func(t *testing.T, e *unionEnv) {
				fd := openDir(t, e.m("d"))
				if err := unix.Fsync(fd); err != nil {
					t.Errorf("fsync of a lower directory: %v", err)
				}
				writeFile(t, e.m("d/b"), "", 0o644)
				if err := unix.Fsync(fd); err != nil {
					t.Errorf("fsync of a copied-up directory: %v", err)
				}
			},
		},
		{
			name: "listings of both directories follow a rename between them",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"a/f": "ro", "a/g": "ro", "b/h": "ro"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("a"), "f", "g")
				wantNames(t, e.m("b"), "h")
				if err := os.Rename(e.m("a/f"), e.m("b/f")); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("a"), "g")
				wantNames(t, e.m("b"), "f", "h")
				if err := os.Rename(e.m("b"), e.m("a/b")); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("a"), "b", "g")
				wantNames(t, e.m("a/b"), "f", "h")
			},
		},
		{
			name: "listing follows changes made through the union",
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/low": "ro", "d/gone": "ro"})
				w(t, e.RW, testutil.Tree{"d/up": "rw"})
			},
			check: func(t *testing.T, e *unionEnv) {
				wantNames(t, e.m("d"), "gone", "low", "up")
				writeFile(t, e.m("d/new"), "", 0o644)
				if err := os.Remove(e.m("d/gone")); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(e.m("d/sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("d"), "low", "new", "sub", "up")
				if err := os.Remove(e.m("d/up")); err != nil {
					t.Fatal(err)
				}
				wantNames(t, e.m("d"), "low", "new", "sub")
			},
		},
		{
			name:    "a directory empty through the union lists only . and ..",
			formats: true,
			setup: func(t *testing.T, e *unionEnv) {
				w(t, e.RO, testutil.Tree{"d/a": "ro", "d/b/": ""})
				w(t, e.RW, testutil.Tree{"d/": ""})
				e.wh(t, e.WH, "d/a")
				e.wh(t, e.RW, "d/b")
			},
			check: func(t *testing.T, e *unionEnv) {
				fd := openDir(t, e.m("d"))
				var got []string
				for _, d := range readDirents(t, fd, 4096) {
					got = append(got, d.Name)
				}
				sort.Strings(got)
				if !equal(got, []string{".", ".."}) {
					t.Errorf("got %q, want [. ..]", got)
				}
			},
		},
		{
			name: "large merged directory",
			setup: func(t *testing.T, e *unionEnv) {
				for i := range 1500 {
					w(t, e.RO, testutil.Tree{fmt.Sprintf("d/n%04d", i): ""})
					if i%2 == 0 {
						w(t, e.RW, testutil.Tree{fmt.Sprintf("d/n%04d", i+750): ""})
					}
				}
			},
			check: func(t *testing.T, e *unionEnv) {
				got := wantDirentsMatchStat(t, e.m("d"), false)
				if len(got) != 1500+375 {
					t.Errorf("got %d names, want %d", len(got), 1500+375)
				}
			},
		},
	})
}

func revalCfg(e *unionEnv, c *fusefs.Config) { c.Reval = true }

// seekdirSetup spreads 300 entries of one directory over the branches.
func seekdirSetup(t *testing.T, e *unionEnv) {
	for i := range 300 {
		br := []string{e.RW, e.WH, e.RO}[i%3]
		w(t, br, testutil.Tree{fmt.Sprintf("d/entry-with-a-longish-name-%03d", i): ""})
	}
}

// seekdirCheck reads the directory in small pieces, then seeks back to the
// offset of several entries and to 0: the listing resumes right after the
// entry (telldir/seekdir) and restarts whole (rewinddir).
func seekdirCheck(t *testing.T, e *unionEnv) {
	fd := openDir(t, e.m("d"))
	all := readDirents(t, fd, 512)
	if len(all) != 302 {
		t.Fatalf("got %d entries, want 302", len(all))
	}
	for _, k := range []int{0, 1, 2, 57, 150, 299, 301} {
		if _, err := unix.Seek(fd, all[k].Off, 0); err != nil {
			t.Fatalf("seekdir to entry %d (off %d): %v", k, all[k].Off, err)
		}
		rest := readDirents(t, fd, 512)
		if !equalDirents(rest, all[k+1:]) {
			t.Errorf("after seekdir to the offset of entry %d: got %d entries starting %v, want %d starting %v",
				k, len(rest), first(rest), len(all[k+1:]), first(all[k+1:]))
		}
	}
	// rewinddir
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	if again := readDirents(t, fd, 4096); !equalDirents(again, all) {
		t.Errorf("after rewinddir: %d entries, want %d", len(again), len(all))
	}
}

// changingSetup spreads 200 entries of one directory over the branches.
func changingSetup(t *testing.T, e *unionEnv) {
	for i := range 200 {
		br := []string{e.RW, e.WH, e.RO}[i%3]
		w(t, br, testutil.Tree{fmt.Sprintf("d/f%03d", i): ""})
	}
}

// changingCheck removes and adds entries half-way through a read.
func changingCheck(t *testing.T, e *unionEnv) {
	fd, got, removed := readPartThenChange(t, e, 7, 50)
	got = append(got, readDirents(t, fd, 1024)...)
	wantStayedOnce(t, got, removed)
}

// twoReadersCheck reads part of a directory through one descriptor, changes
// entries, reads the whole directory through another (a new listing), and
// then the rest through the first: the first reader sees each name that
// stayed exactly once, and the second sees the changes.
func twoReadersCheck(t *testing.T, e *unionEnv) {
	fd, got, removed := readPartThenChange(t, e, 5, 30)
	other := readDirents(t, openDir(t, e.m("d")), 1024)
	if want := 2 + 200 - len(removed) + 30; len(other) != want {
		t.Errorf("second reader: %d entries, want %d", len(other), want)
	}
	got = append(got, readDirents(t, fd, 1024)...)
	wantStayedOnce(t, got, removed)
}

// readPartThenChange opens d (set up by changingSetup), reads its first
// entries, then removes every step-th of its 200 names and adds added new
// ones. It returns the descriptor, the entries read and the names removed.
func readPartThenChange(t *testing.T, e *unionEnv, step, added int) (int, []dirent, map[string]bool) {
	fd := openDir(t, e.m("d"))
	buf := make([]byte, 1024)
	n, err := unix.Getdents(fd, buf)
	if err != nil || n == 0 {
		t.Fatalf("getdents: %d, %v", n, err)
	}
	removed := map[string]bool{}
	for i := 0; i < 200; i += step {
		name := fmt.Sprintf("f%03d", i)
		if err := os.Remove(e.m("d/" + name)); err != nil {
			t.Fatal(err)
		}
		removed[name] = true
	}
	for i := range added {
		writeFile(t, e.m(fmt.Sprintf("d/new%03d", i)), "", 0o644)
	}
	return fd, parseDirents(buf[:n]), removed
}

// wantStayedOnce checks that a listing read while d changed shows no name
// twice and each of the 200 names not removed.
func wantStayedOnce(t *testing.T, got []dirent, removed map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d.Name] {
			t.Errorf("%q listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	for i := range 200 {
		name := fmt.Sprintf("f%03d", i)
		if !removed[name] && !seen[name] {
			t.Errorf("%q stayed but was skipped", name)
		}
	}
}

func equalDirents(a, b []dirent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Ino != b[i].Ino {
			return false
		}
	}
	return true
}

func first(d []dirent) string {
	if len(d) == 0 {
		return "(none)"
	}
	return d[0].Name
}

// TestDirectoryRequests: with udba=none the kernel opens directories
// without asking the daemon (one OPENDIR, answered ENOSYS, for the whole
// mount) and a stat walk of a tree whose listings and attributes the kernel
// holds sends no request at all; with udba=reval every open of a directory
// is an OPENDIR.
func TestDirectoryRequests(t *testing.T) {
	for _, reval := range []bool{false, true} {
		t.Run(fmt.Sprintf("reval=%v", reval), func(t *testing.T) {
			f := newFixture(t)
			for i := range 20 {
				br := []string{f.RW, f.WH, f.RO}[i%3]
				w(t, br, testutil.Tree{fmt.Sprintf("d%d/s/f%d", i%4, i): "x", fmt.Sprintf("top%d", i): "x"})
			}
			mnt, log := mountLogged(t, fusefs.Config{Branches: f.branches(), Reval: reval})
			walk := func() int {
				n := 0
				err := filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
					if err != nil {
						return err
					}
					n++
					_, err = os.Lstat(p)
					return err
				})
				if err != nil {
					t.Fatalf("walk: %v", err)
				}
				return n
			}
			const objects = 1 + 20 + 4 + 4 + 20 // root, top*, d*, d*/s, files
			for range 2 {
				if n := walk(); n != objects {
					t.Fatalf("walk saw %d objects, want %d", n, objects)
				}
			}
			before := len(log.String())
			if n := walk(); n != objects {
				t.Fatalf("walk saw %d objects, want %d", n, objects)
			}
			third := log.String()[before:]
			opendirs := strings.Count(log.String(), ": OPENDIR ")
			if !reval {
				if opendirs != 1 {
					t.Errorf("%d OPENDIR requests, want 1 (answered ENOSYS)", opendirs)
				}
				if strings.Contains(third, "rx ") {
					t.Errorf("a warm walk sent requests:\n%s", third)
				}
				return
			}
			if want := 3 * 9; opendirs < want {
				t.Errorf("%d OPENDIR requests, want one per open (%d)", opendirs, want)
			}
		})
	}
}
