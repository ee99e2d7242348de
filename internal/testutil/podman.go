package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PodmanRuntimeDir makes a short directory for a rootless podman's
// XDG_RUNTIME_DIR and removes it when t ends. Podman 4 refuses a run root
// ($XDG_RUNTIME_DIR/containers) longer than 50 bytes, in the clean-up
// command that conmon runs when a container exits, where nobody sees it:
// podman run then waits 20 s for an exit that is never recorded. Test
// temporary directories are longer than that.
func PodmanRuntimeDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "pod")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// EndPodmanPause ends the pause process that rootless podman run with
// XDG_RUNTIME_DIR=xdg left behind to hold its user namespace, if any, and
// waits for it to exit.
func EndPodmanPause(t testing.TB, xdg string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(xdg, "libpod", "tmp", "pause.pid"))
	if err != nil {
		return // no pause process was started
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Errorf("podman's pause.pid in %s holds %q", xdg, b)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("end podman's pause process %d: %v", pid, err)
	}
	if !WaitExit(t, pid, 10*time.Second) {
		t.Errorf("podman's pause process %d did not exit", pid)
	}
}
