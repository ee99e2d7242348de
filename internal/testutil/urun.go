package testutil

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// URunBin returns a urun binary with ufs beside it (where urun looks for
// its mount program): $URUN_BIN when set, else one built into a temporary
// directory.
func URunBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("URUN_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "urun")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/urun")
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build urun: %v\n%s", err, b)
	}
	copyFile(t, UfsBin(t), filepath.Join(dir, "ufs"))
	return out
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
