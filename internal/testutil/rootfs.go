package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Busybox is where Debian's busybox-static puts its binary.
const Busybox = "/bin/busybox"

// BusyboxRootfs builds a small root filesystem in a fresh directory: a
// static busybox with a link per applet in /bin, and /etc/passwd and
// /etc/group with root, alice (1000, also in wheel) and nobody. It skips
// t when busybox is missing (make deps installs busybox-static).
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		t.Skipf("no static busybox at %s (apt-get install busybox-static): %v", Busybox, err)
	}
	dir := t.TempDir()
	for _, d := range []string{"bin", "etc", "root", "tmp", "home/alice", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(Busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	Write(t, dir, Tree{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nwheel:x:10:alice\nalice:x:1000:\nnogroup:x:65534:\n",
	})
	return dir
}
