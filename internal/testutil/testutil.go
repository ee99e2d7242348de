// Package testutil gates tests on the capabilities they need and builds
// branch fixtures. Every gate skips with the reason the capability is
// missing; none skips where CI provides it.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Integration skips t under -short: integration tests run in the root and
// rootless phases of make test, unit tests in the -short phase.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs in make test-root / make test-rootless, not under -short")
	}
}

// RequireFUSE skips t when /dev/fuse cannot be opened and fusermount3 is
// not there to open it for us.
func RequireFUSE(t testing.TB) {
	t.Helper()
	Integration(t)
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return
	}
	if _, lerr := exec.LookPath("fusermount3"); lerr == nil && os.Geteuid() != 0 {
		return
	}
	t.Skipf("no FUSE: open /dev/fuse: %v (make test-rootless makes it 0666)", err)
}

// RequireRoot skips t unless it runs as uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	Integration(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs in make test-root")
	}
}

// RequireRootless skips t unless it runs as an unprivileged user: rootless
// tests never assume root.
func RequireRootless(t testing.TB) {
	t.Helper()
	Integration(t)
	if os.Geteuid() == 0 {
		t.Skip("rootless test: runs as the unprivileged user in make test-rootless")
	}
}

// RequireUserNS skips t when unprivileged user namespaces are disabled.
func RequireUserNS(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("user namespaces are Linux only")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && len(b) > 0 && b[0] == '0' {
		t.Skip("kernel.unprivileged_userns_clone=0")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && len(b) > 0 && b[0] == '0' {
		t.Skip("user.max_user_namespaces=0")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
}

// UfsBin returns the ufs binary to test: $UFS_BIN, or one built into a
// temporary directory.
func UfsBin(t testing.TB) string {
	t.Helper()
	return programBin(t, "ufs", os.Getenv("UFS_BIN"))
}

// UrunBin returns the path of a statically linked urun binary: $URUN_BIN
// (make test sets it), or one built into a temporary directory.
func UrunBin(t testing.TB) string {
	t.Helper()
	return programBin(t, "urun", os.Getenv("URUN_BIN"))
}

func programBin(t testing.TB, name, given string) string {
	t.Helper()
	if given != "" {
		if _, err := os.Stat(given); err == nil {
			return given
		}
	}
	out := filepath.Join(t.TempDir(), name)
	root := moduleRoot(t)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	return out
}

func moduleRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// Tree describes files to create: path → content. A path ending in "/" is
// a directory; content "->TARGET" makes a symlink.
type Tree map[string]string

// Write creates the tree under dir.
func Write(t testing.TB, dir string, tree Tree) {
	t.Helper()
	for p, c := range tree {
		full := filepath.Join(dir, p)
		if p[len(p)-1] == '/' {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if len(c) > 2 && c[:2] == "->" {
			if err := os.Symlink(c[2:], full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// OverlayWhiteout makes an overlay-format whiteout (char 0/0) at path,
// skipping t when mknod is not allowed here.
func OverlayWhiteout(t testing.TB, path string) {
	t.Helper()
	if err := unix.Mknod(path, unix.S_IFCHR, 0); err != nil {
		t.Skipf("mknod of a 0/0 whiteout: %v (needs CAP_MKNOD or a user namespace)", err)
	}
}
