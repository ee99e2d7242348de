package fusefs_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mountLogged mounts with FUSE request logging into the returned buffer.
func mountLogged(t *testing.T, cfg fusefs.Config) (string, *syncBuffer) {
	t.Helper()
	testutil.RequireFUSE(t)
	buf := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mnt := t.TempDir()
	srv, u, err := fusefs.Mount(mnt, cfg, fusefs.MountOptions{Debug: true})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		u.Close()
	})
	return mnt, buf
}

// TestPassthrough: as root, reads of a file in the rw branch go straight to
// the branch file (no READ request reaches the daemon); reads of a lower
// file in a writable union go through the daemon (the file may still be
// copied up).
func TestPassthrough(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	data := strings.Repeat("p", 1<<20)
	writeFile(t, filepath.Join(f.RW, "upper"), data, 0o644)
	writeFile(t, filepath.Join(f.RO, "lower"), data, 0o644)
	mnt, log := mountLogged(t, fusefs.Config{Branches: f.branches()})
	wantContent(t, filepath.Join(mnt, "upper"), data)
	if strings.Contains(log.String(), "READ n") {
		t.Fatalf("a READ of the rw-branch file reached the daemon: passthrough is off\n%s", log)
	}
	if !strings.Contains(log.String(), "BACKING_OPEN") {
		t.Errorf("no backing file was registered for the rw-branch file")
	}
	wantContent(t, filepath.Join(mnt, "lower"), data)
	if !strings.Contains(log.String(), "READ n") {
		t.Errorf("the lower file was read by passthrough, though it may be copied up later")
	}
}

// TestPassthroughFallbackLogged: without the privilege, the daemon says
// that reads and writes go through it.
func TestPassthroughFallbackLogged(t *testing.T) {
	testutil.RequireRootless(t)
	f := newFixture(t)
	writeFile(t, filepath.Join(f.RW, "upper"), "x", 0o644)
	mnt, log := mountLogged(t, fusefs.Config{Branches: f.branches()})
	wantContent(t, filepath.Join(mnt, "upper"), "x")
	if !strings.Contains(log.String(), "passthrough needs CAP_SYS_ADMIN") {
		t.Errorf("no log line about the passthrough fallback:\n%s", log)
	}
	if _, err := os.Stat(mnt); err != nil {
		t.Fatal(err)
	}
}

// TestReadaheadMatchesBranches: as root, the union reads ahead as much as
// the block device of its branches, not the 128 KiB a FUSE mount starts
// with.
func TestReadaheadMatchesBranches(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	var st unix.Stat_t
	if err := unix.Stat(f.RO, &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	want := 0
	for _, p := range []string{"/sys/dev/block/" + dev + "/queue/read_ahead_kb", "/sys/dev/block/" + dev + "/../queue/read_ahead_kb"} {
		if b, err := os.ReadFile(p); err == nil {
			want, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
	}
	if want == 0 {
		t.Skipf("the branches' filesystem (device %s) has no block device readahead", dev)
	}
	want = min(want, 16<<10)
	mnt := f.mount(t)
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := strconv.Atoi(strings.TrimSpace(string(b))); got < want {
		t.Errorf("union readahead %d KiB, want at least the branch device's %d KiB", got, want)
	}
}

// TestNoFlushOnLocalBranches: closing a file of a branch on a local
// filesystem sends no FLUSH request (FOPEN_NOFLUSH): the daemon would have
// nothing to flush.
func TestNoFlushOnLocalBranches(t *testing.T) {
	f := newFixture(t)
	var st unix.Statfs_t
	if err := unix.Statfs(f.RO, &st); err != nil {
		t.Fatal(err)
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.F2FS_SUPER_MAGIC:
	default:
		t.Skipf("the test directories are on filesystem type %#x, not one known to have nothing to flush", st.Type)
	}
	writeFile(t, filepath.Join(f.RO, "lower"), "l", 0o644)
	mnt, log := mountLogged(t, fusefs.Config{Branches: f.branches()})
	before := strings.Count(log.String(), "FLUSH n")
	wantContent(t, filepath.Join(mnt, "lower"), "l")
	writeFile(t, filepath.Join(mnt, "new"), "n", 0o644)
	wantContent(t, filepath.Join(mnt, "new"), "n")
	if n := strings.Count(log.String(), "FLUSH n") - before; n != 0 {
		t.Errorf("%d FLUSH request(s) for closes of files of local branches, want none", n)
	}
}
