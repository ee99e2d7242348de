package fusefs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestMain turns the test binary into a helper process when UFS_TEST_HELPER
// names one. Some accesses must not come from the daemon's own process: a
// thread faulting on a mapping of the union cannot stop for the Go
// runtime's stop-the-world, while the fault waits for the daemon's
// goroutines, which that stop-the-world has parked.
func TestMain(m *testing.M) {
	if h := os.Getenv("UFS_TEST_HELPER"); h != "" {
		if err := runHelper(h, os.Getenv("UFS_TEST_HELPER_PATH"), os.Getenv("UFS_TEST_HELPER_ARG")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The daemon runs in this process: as ufs's own, its umask is 0 (the
	// kernel applies the callers' umask before a request reaches it).
	unix.Umask(0)
	os.Exit(m.Run())
}

// runHelper is the helper process's work.
func runHelper(name, path, arg string) error {
	switch name {
	case "mmap-write":
		// Write arg at the start of path through a shared mapping.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := syscall.Mmap(int(f.Fd()), 0, len(arg), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap %s: %w", path, err)
		}
		copy(m, arg)
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			return fmt.Errorf("msync: %w", err)
		}
		return syscall.Munmap(m)
	case "privop":
		// Change path as arg says ("uid:operation").
		return privOpHelper(path, arg)
	case "mmap-read":
		// Read path through a shared mapping; its SHA-256 must be arg.
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		m, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap %s: %w", path, err)
		}
		defer syscall.Munmap(m)
		if sum := fmt.Sprintf("%x", sha256.Sum256(m)); sum != arg {
			return fmt.Errorf("mapping of %s has SHA-256 %s, want %s", path, sum, arg)
		}
		return nil
	case "exec":
		// Run the program at path.
		if out, err := exec.Command(path).CombinedOutput(); err != nil {
			return fmt.Errorf("run %s: %w\n%s", path, err, out)
		}
		return nil
	}
	return fmt.Errorf("unknown helper %q", name)
}

// helper runs the helper process name on path; it is killed if it takes
// more than a minute, or if the test binary dies.
func helper(t testing.TB, name, path, arg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "UFS_TEST_HELPER="+name, "UFS_TEST_HELPER_PATH="+path, "UFS_TEST_HELPER_ARG="+arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper %s %s: %v\n%s", name, path, err, out)
	}
}

// mountUnion mounts a union of branches (topmost first) on a fresh
// directory and returns the mountpoint. The union is unmounted when t ends.
func mountUnion(t testing.TB, branches ...fusefs.Branch) string {
	t.Helper()
	return mountConfig(t, fusefs.Config{Branches: branches})
}

// mountConfig mounts the union cfg describes on a fresh directory and
// returns the mountpoint. The daemon's log goes to t.Log while t runs; the
// union is unmounted and closed when t ends.
func mountConfig(t testing.TB, cfg fusefs.Config) string {
	t.Helper()
	testutil.RequireFUSE(t)
	mnt := t.TempDir()
	if cfg.Logger == nil {
		lw := &testLogWriter{t: t}
		t.Cleanup(lw.stop)
		cfg.Logger = slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, u, err := fusefs.Mount(mnt, cfg, fusefs.MountOptions{})
	if err != nil {
		t.Fatalf("mount %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			// Something still holds the mount: report it, and detach the
			// mount so that the temporary directories can go.
			t.Errorf("unmount %s: %v", mnt, err)
			if err := fusefs.Unmount(context.Background(), mnt, true); err != nil {
				t.Errorf("lazy unmount %s: %v", mnt, err)
			}
		}
		u.Close()
	})
	return mnt
}

// testLogWriter sends the daemon's log to t.Log until the test ends; the
// daemon may still log from its goroutines after that.
type testLogWriter struct {
	t testing.TB
	// mu protects done.
	mu   sync.Mutex
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log("ufs: " + strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// fixture is the standard three-branch stack: an rw branch over a wh branch
// (read-only, whiteouts honoured) over an ro branch (read-only, whiteouts
// ignored).
type fixture struct {
	RW, WH, RO string
}

// newFixture makes three empty branch directories.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	return &fixture{RW: t.TempDir(), WH: t.TempDir(), RO: t.TempDir()}
}

// branches returns the fixture's stack, topmost first.
func (f *fixture) branches() []fusefs.Branch {
	return []fusefs.Branch{
		{Path: f.RW, Perm: fusefs.PermRW},
		{Path: f.WH, Perm: fusefs.PermROWH},
		{Path: f.RO, Perm: fusefs.PermRO},
	}
}

// mount mounts the fixture's stack.
func (f *fixture) mount(t testing.TB) string {
	t.Helper()
	return mountUnion(t, f.branches()...)
}

// --- assertions ----------------------------------------------------------

// writeFile writes content to path, creating parents; mode applies to a new
// file.
func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func wantContent(t testing.TB, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %s: %v", path, err)
		return
	}
	if !bytes.Equal(b, []byte(want)) {
		t.Errorf("%s: got %q, want %q", path, b, want)
	}
}

func lstat(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st
}

// wantExists fails t unless path exists (as anything).
func wantExists(t testing.TB, path string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Errorf("lstat %s: %v, want it to exist", path, err)
	}
}

// wantMissing fails t unless lstat of path reports ENOENT.
func wantMissing(t testing.TB, path string) {
	t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(path, &st)
	if !errors.Is(err, unix.ENOENT) {
		t.Errorf("lstat %s: got %v (mode %o), want ENOENT", path, err, st.Mode)
	}
}

// wantErrno fails t unless err carries errno.
func wantErrno(t testing.TB, what string, err error, errno unix.Errno) {
	t.Helper()
	if !errors.Is(err, errno) {
		t.Errorf("%s: got %v, want %v", what, err, errno)
	}
}

func wantMode(t testing.TB, path string, want uint32) {
	t.Helper()
	if st := lstat(t, path); st.Mode != want {
		t.Errorf("%s: mode %o, want %o", path, st.Mode, want)
	}
}

// names lists dir, sorted, without "." and "..".
func names(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir: %v", err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// wantNames fails t unless dir lists exactly want.
func wantNames(t testing.TB, dir string, want ...string) {
	t.Helper()
	got := names(t, dir)
	sort.Strings(want)
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("readdir %s:\n got %q\nwant %q", dir, got, want)
	}
}

// dirent is one entry of a raw getdents64 listing.
type dirent struct {
	Name string
	Ino  uint64
	Off  int64
	Type uint8
}

// readDirents reads the whole directory open at fd with getdents64, bufSize
// bytes at a time.
func readDirents(t testing.TB, fd int, bufSize int) []dirent {
	t.Helper()
	var out []dirent
	buf := make([]byte, bufSize)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatalf("getdents: %v", err)
		}
		if n == 0 {
			return out
		}
		out = append(out, parseDirents(buf[:n])...)
	}
}

// parseDirents decodes struct linux_dirent64 records.
func parseDirents(b []byte) []dirent {
	var out []dirent
	le := func(b []byte) uint64 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v
	}
	for len(b) >= 19 {
		reclen := int(le(b[16:18]))
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		out = append(out, dirent{
			Ino:  le(b[0:8]),
			Off:  int64(le(b[8:16])),
			Type: b[18],
			Name: string(name),
		})
		b = b[reclen:]
	}
	return out
}

// xattr returns the value of attr on path (not following a symlink).
func xattr(path, attr string) (string, error) {
	buf := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(path, attr, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// xattrNames lists the attribute names of path (not following a symlink).
func xattrNames(t testing.TB, path string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	var out []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func setxattr(t testing.TB, path, attr, value string) {
	t.Helper()
	if err := unix.Lsetxattr(path, attr, []byte(value), 0); err != nil {
		t.Fatalf("setxattr %s %s: %v", path, attr, err)
	}
}

// TestMountHelper checks the helpers themselves: a mount of the standard
// fixture serves the merged tree and goes away at cleanup.
func TestMountHelper(t *testing.T) {
	testutil.RequireFUSE(t)
	f := newFixture(t)
	writeFile(t, filepath.Join(f.RO, "ro"), "ro", 0o644)
	writeFile(t, filepath.Join(f.WH, "wh"), "wh", 0o644)
	writeFile(t, filepath.Join(f.RW, "rw"), "rw", 0o644)
	var mnt string
	t.Run("mount", func(t *testing.T) {
		mnt = f.mount(t)
		wantNames(t, mnt, "ro", "rw", "wh")
		if ok, err := fusefs.IsMountpoint(mnt); err != nil || !ok {
			t.Errorf("IsMountpoint(%s) = %v, %v; want true", mnt, ok, err)
		}
	})
	if ok, err := fusefs.IsMountpoint(mnt); err != nil || ok {
		t.Errorf("after cleanup: IsMountpoint(%s) = %v, %v; want false", mnt, ok, err)
	}
}
