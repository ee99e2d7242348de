package fusefs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestCopyUpPageCache: the kernel keeps one page cache per union inode, so
// a descriptor opened read-only before a copy-up must read the copy after
// it; otherwise stale lower data enters that cache, is served to new opens
// and is written back into the copy through shared mappings.
func TestCopyUpPageCache(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.RO, "f"), string(bytes.Repeat([]byte("A"), 8192)), 0o644)
	mnt := f.mount(t)
	p := filepath.Join(mnt, "f")
	old, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	rw, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt(bytes.Repeat([]byte("B"), 8192), 0); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	buf := make([]byte, 8192)
	if _, err := old.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte("B"), 8192)) {
		t.Errorf("descriptor opened before the copy-up reads %q..., want the copy", buf[:8])
	}
	wantContent(t, p, string(bytes.Repeat([]byte("B"), 8192)))
	helper(t, "mmap-write", p, "X")
	got, err := os.ReadFile(filepath.Join(f.RW, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("X"), bytes.Repeat([]byte("B"), 8191)...); !bytes.Equal(got, want) {
		t.Errorf("rw branch after a shared-mapping write: %d bytes, %q..., want X then B", len(got), got[:8])
	}
	if b, _ := os.ReadFile(filepath.Join(f.RO, "f")); !bytes.Equal(b, bytes.Repeat([]byte("A"), 8192)) {
		t.Error("the lower file changed")
	}
}

// bigLower writes a lower file large enough that its copy-up takes a while.
func bigLower(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for range 512 {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// startCopyUp opens path for appending in the background (a copy-up) and
// returns once the copy is being staged in rw's staging directory, with a
// channel that yields the open's result.
func startCopyUp(t *testing.T, rw, path string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.WriteString("!")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		done <- err
	}()
	staging := filepath.Join(rw, ".wh..wh.work")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ents, _ := os.ReadDir(staging); len(ents) > 0 {
			return done
		}
		select {
		case err := <-done:
			t.Skipf("the copy-up finished before it could be raced (%v): the machine copies too fast", err)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no copy-up started")
	return nil
}

// TestUnlinkDuringCopyUp: an unlink that returns success is not undone by
// a copy-up of the same file that was in progress.
func TestUnlinkDuringCopyUp(t *testing.T) {
	testutil.RequireFUSE(t)
	f := newFixture(t)
	bigLower(t, filepath.Join(f.RO, "big"))
	mnt := mountConfig(t, fusefs.Config{Branches: f.branches(), NoPassthrough: true})
	done := startCopyUp(t, f.RW, filepath.Join(mnt, "big"))
	if err := os.Remove(filepath.Join(mnt, "big")); err != nil {
		t.Fatalf("unlink during the copy-up: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("the copy-up's open: %v", err)
	}
	wantMissing(t, filepath.Join(mnt, "big"))
	wantNames(t, mnt)
	if _, err := os.Lstat(filepath.Join(f.RW, "big")); err == nil {
		t.Error("the copy is in the rw branch after the unlink")
	}
}

// TestRenameDuringCopyUp: renaming a directory while a file in it is being
// copied up neither fails nor copies the file twice.
func TestRenameDuringCopyUp(t *testing.T) {
	testutil.RequireFUSE(t)
	f := newFixture(t)
	bigLower(t, filepath.Join(f.RO, "D/big"))
	mnt := mountConfig(t, fusefs.Config{Branches: f.branches(), NoPassthrough: true})
	done := startCopyUp(t, f.RW, filepath.Join(mnt, "D/big"))
	if err := unix.Rename(filepath.Join(mnt, "D"), filepath.Join(mnt, "E")); err != nil {
		t.Fatalf("rename during the copy-up: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("the copy-up's open: %v", err)
	}
	st := lstat(t, filepath.Join(mnt, "E/big"))
	if st.Size != 512<<20+1 {
		t.Errorf("E/big: size %d, want %d (the copy with the appended byte)", st.Size, 512<<20+1)
	}
	wantMissing(t, filepath.Join(mnt, "D"))
}

// TestTdpBelowReadOnly: aufs's tdp create policy where a read-only branch
// sits above the rw one: new objects go to the rw branch of the parent
// directory, a file of the ro branch above cannot be hidden (EROFS).
func TestTdpBelowReadOnly(t *testing.T) {
	top, rw := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(top, "d/topfile"), "top", 0o644)
	writeFile(t, filepath.Join(rw, "d/rwfile"), "rw", 0o644)
	mnt := mountUnion(t, fusefs.Branch{Path: top, Perm: fusefs.PermROWH}, fusefs.Branch{Path: rw, Perm: fusefs.PermRW})
	writeFile(t, filepath.Join(mnt, "new"), "new", 0o644)
	wantContent(t, filepath.Join(rw, "new"), "new")
	if err := os.Mkdir(filepath.Join(mnt, "d/sub"), 0o755); err != nil {
		t.Fatalf("mkdir in a directory merged from wh and rw: %v", err)
	}
	wantExists(t, filepath.Join(rw, "d/sub"))
	if err := os.Remove(filepath.Join(mnt, "d/rwfile")); err != nil {
		t.Errorf("unlink of a file of the rw branch: %v", err)
	}
	err := os.Remove(filepath.Join(mnt, "d/topfile"))
	wantErrno(t, "unlink of a file of the wh branch above the rw one", err, unix.EROFS)
	wantContent(t, filepath.Join(mnt, "d/topfile"), "top")
}

// TestWhiteoutDevicesNeverShow: a 0/0 device is never shown, not even in an
// ro branch, whose whiteouts hide nothing below.
func TestWhiteoutDevicesNeverShow(t *testing.T) {
	rw, ro1, ro2 := t.TempDir(), t.TempDir(), t.TempDir()
	testutil.OverlayWhiteout(t, filepath.Join(ro1, "x"))
	testutil.OverlayWhiteout(t, filepath.Join(ro1, "y"))
	writeFile(t, filepath.Join(ro2, "x"), "below", 0o644)
	mnt := mountUnion(t, fusefs.Branch{Path: rw, Perm: fusefs.PermRW},
		fusefs.Branch{Path: ro1, Perm: fusefs.PermRO}, fusefs.Branch{Path: ro2, Perm: fusefs.PermRO})
	wantNames(t, mnt, "x")
	wantContent(t, filepath.Join(mnt, "x"), "below")
	wantMissing(t, filepath.Join(mnt, "y"))
}

// TestRenameOntoWhiteout: in overlay format, renaming onto a removed name
// (a 0/0 whiteout in the upper) works like a rename to a free name, for
// directories and with RENAME_NOREPLACE too (rm -rf x; mv x.new x).
func TestRenameOntoWhiteout(t *testing.T) {
	d := newOverlayDirs(t, 1)
	testutil.Write(t, d.lowers[0], testutil.Tree{"x/old": "old", "f": "f"})
	mnt, _ := mountUfsOverlay(t, d.options())
	m := func(p string) string { return filepath.Join(mnt, p) }
	if err := os.RemoveAll(m("x")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, m("x.new/new"), "new", 0o644)
	if err := unix.Rename(m("x.new"), m("x")); err != nil {
		t.Fatalf("rename a directory onto a whiteout: %v", err)
	}
	wantNames(t, m("x"), "new")
	if err := os.Remove(m("f")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m("n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, m("n"), unix.AT_FDCWD, m("f"), unix.RENAME_NOREPLACE); err != nil {
		t.Fatalf("RENAME_NOREPLACE onto a whiteout: %v", err)
	}
	wantNames(t, mnt, "f", "x")
	err := unix.Mknod(m("dev"), unix.S_IFCHR, 0)
	wantErrno(t, "mknod of a 0/0 device (a whiteout)", err, unix.EPERM)
}

// TestTarAfterCopyUp: a copy-up changes ctimes; the kernel must not keep
// the old ones, or tar reports "file changed as we read it".
func TestTarAfterCopyUp(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.RO, "d/f"), "f", 0o644)
	writeFile(t, filepath.Join(f.RO, "d/sub/g"), "g", 0o644)
	mnt := f.mount(t)
	script := `ls -lR >/dev/null && echo x >>d/f && tar cf "$0/a.tar" d && find . >/dev/null && mv d e && tar cf "$0/b.tar" e`
	cmd := exec.Command("bash", "-c", script, t.TempDir())
	cmd.Dir = mnt
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("tar after copy-ups: %v\n%s", err, out)
	}
}

// TestNoDescriptorLeak: operations do not leave branch descriptors open in
// the daemon (which serves from this process): renames, copy-ups,
// removals and listings, repeated.
func TestNoDescriptorLeak(t *testing.T) {
	f := newFixture(t)
	writeFile(t, filepath.Join(f.RO, "d/f"), "f", 0o644)
	mnt := mountConfig(t, fusefs.Config{Branches: f.branches(), Reval: true})
	count := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	m := func(p string) string { return filepath.Join(mnt, p) }
	cycle := func() {
		if err := unix.Rename(m("d/f"), m("g")); err != nil {
			t.Fatal(err)
		}
		if err := unix.Rename(m("g"), m("d/f")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, m("d/new"), "n", 0o644)
		names(t, m("d"))
		if err := os.Remove(m("d/new")); err != nil {
			t.Fatal(err)
		}
	}
	cycle()
	before := count()
	for range 200 {
		cycle()
	}
	if after := count(); after > before+20 {
		t.Errorf("descriptors: %d before, %d after 200 rounds of operations", before, after)
	}
}
