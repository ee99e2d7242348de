package fusefs_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Behaviour of the fast paths: shared whiteouts, the name index of listed
// directories, and READDIRPLUS only where it pays.

// TestSharedWhiteouts: whiteouts made by unlinks in the overlay format are
// hard links of one character device (as overlayfs makes them), which hide
// their names through the union, after a remount, and through kernel
// overlayfs mounted on the same upper.
func TestSharedWhiteouts(t *testing.T) {
	d := newOverlayDirs(t, 2)
	w(t, d.lowers[0], testutil.Tree{"a": "0", "dir/b": "0"})
	w(t, d.lowers[1], testutil.Tree{"c": "1", "dir/e": "1", "keep": "1"})
	mnt, unmount := mountUfsOverlay(t, d.options())
	gone := []string{"a", "c", "dir/b", "dir/e"}
	for _, p := range gone {
		if err := os.Remove(filepath.Join(mnt, p)); err != nil {
			t.Fatal(err)
		}
	}
	var inos []uint64
	for _, p := range gone {
		st := lstat(t, filepath.Join(d.upper, p))
		if !isChrWhiteout(&st) {
			t.Fatalf("upper %s: mode %o rdev %d, want a 0/0 character device", p, st.Mode, st.Rdev)
		}
		if st.Nlink < 2 {
			t.Errorf("upper %s: %d link(s), want a link of the shared whiteout", p, st.Nlink)
		}
		inos = append(inos, st.Ino)
	}
	for _, ino := range inos[1:] {
		if ino != inos[0] {
			t.Errorf("whiteouts are distinct inodes %v, want one shared inode", inos)
			break
		}
	}
	check := func(root, what string) {
		t.Helper()
		for _, p := range gone {
			if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
				t.Errorf("%s: %s: %v, want ENOENT", what, p, err)
			}
		}
		wantNames(t, root, "dir", "keep")
		wantNames(t, filepath.Join(root, "dir"))
	}
	check(mnt, "ufs")
	unmount()
	mnt, unmount = mountUfsOverlay(t, d.options())
	check(mnt, "ufs after a remount")
	// A name made again over a shared whiteout replaces only that link.
	writeFile(t, filepath.Join(mnt, "a"), "new", 0o644)
	wantContent(t, filepath.Join(mnt, "a"), "new")
	if st := lstat(t, filepath.Join(d.upper, "c")); !isChrWhiteout(&st) {
		t.Errorf("upper c: no longer a whiteout after a file was made at a")
	}
	unmount()
	testutil.RequireRoot(t)
	kmnt, _ := mountKernelOverlay(t, d)
	wantContent(t, filepath.Join(kmnt, "a"), "new")
	for _, p := range gone[1:] {
		if _, err := os.Lstat(filepath.Join(kmnt, p)); !os.IsNotExist(err) {
			t.Errorf("kernel overlayfs: %s: %v, want ENOENT", p, err)
		}
	}
}

func isChrWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// TestListedDirectoryLookups: once a directory has been listed, lookups
// skip the read-only branches that lack a name; they must still find every
// name, follow changes made through the union, and not apply a directory's
// names to the place it was renamed to.
func TestListedDirectoryLookups(t *testing.T) {
	f := newFixture(t)
	w(t, f.WH, testutil.Tree{"d/wh": "wh", "d/both": "wh", "d/.wh.hidden": "", "e/only-e": "wh"})
	w(t, f.RO, testutil.Tree{"d/ro": "ro", "d/both": "ro", "d/hidden": "ro", "e/ro-e": "ro"})
	mnt := f.mount(t)
	d := filepath.Join(mnt, "d")
	wantNames(t, d, "both", "ro", "wh")
	for name, want := range map[string]string{"wh": "wh", "both": "wh", "ro": "ro"} {
		wantContent(t, filepath.Join(d, name), want)
	}
	for _, missing := range []string{"hidden", "nothing", ".wh.hidden"} {
		wantMissing(t, filepath.Join(d, missing))
	}
	// Changes through the union after the listing.
	writeFile(t, filepath.Join(d, "new"), "rw", 0o644)
	wantContent(t, filepath.Join(d, "new"), "rw")
	if err := os.Remove(filepath.Join(d, "both")); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, filepath.Join(d, "both"))
	wantNames(t, d, "new", "ro", "wh")
	// Rename the listed directory over another one's name: the lookups in
	// its new place must not use what was listed at the old one.
	wantNames(t, filepath.Join(mnt, "e"), "only-e", "ro-e")
	if err := os.Rename(filepath.Join(mnt, "e"), filepath.Join(mnt, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d, filepath.Join(mnt, "e")); err != nil {
		t.Fatal(err)
	}
	e := filepath.Join(mnt, "e")
	for _, name := range []string{"new", "ro", "wh"} {
		wantExists(t, filepath.Join(e, name))
	}
	for _, name := range []string{"only-e", "ro-e", "both", "hidden"} {
		wantMissing(t, filepath.Join(e, name))
	}
	wantNames(t, filepath.Join(mnt, "moved"), "only-e", "ro-e")
	wantContent(t, filepath.Join(mnt, "moved", "ro-e"), "ro")
}

// TestBigListingNoLookups: a bare listing of a big directory asks the
// daemon for no attributes past the first batch (READDIRPLUS_AUTO), and a
// stat of every entry after it still gives their attributes.
func TestBigListingNoLookups(t *testing.T) {
	f := newFixture(t)
	tree := testutil.Tree{}
	const n = 2000
	for i := range n {
		tree[filepath.Join("big", "entry-"+strings.Repeat("x", 40)+strconv.Itoa(i))] = "x"
	}
	w(t, f.RO, tree)
	mnt, log := mountLogged(t, fusefs.Config{Branches: f.branches()})
	ents, err := os.ReadDir(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		t.Fatalf("listed %d entries, want %d", len(ents), n)
	}
	if !strings.Contains(log.String(), "READDIR n") {
		t.Errorf("a bare listing of %d entries used only READDIRPLUS", n)
	}
	for _, e := range ents {
		if st := lstat(t, filepath.Join(mnt, "big", e.Name())); st.Size != 1 {
			t.Fatalf("%s: size %d, want 1", e.Name(), st.Size)
		}
	}
}
