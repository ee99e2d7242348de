package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
	fd := openDir(t, e.m("d"))
	buf := make([]byte, 1024)
	n, err := unix.Getdents(fd, buf)
	if err != nil || n == 0 {
		t.Fatalf("getdents: %d, %v", n, err)
	}
	got := parseDirents(buf[:n])
	removed := map[string]bool{}
	for i := 0; i < 200; i += 7 {
		name := fmt.Sprintf("f%03d", i)
		if err := os.Remove(e.m("d/" + name)); err != nil {
			t.Fatal(err)
		}
		removed[name] = true
	}
	for i := range 50 {
		writeFile(t, e.m(fmt.Sprintf("d/new%03d", i)), "", 0o644)
	}
	got = append(got, readDirents(t, fd, 1024)...)
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
