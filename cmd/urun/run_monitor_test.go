package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	rt "github.com/urun-dev/urun/internal/registrytest"
)

// TestRunImageSetupFailure: the store step runs in the container's
// monitor; when the container cannot start (no such image, no command),
// its state and store record go, --rm or not, and urun says why with 125.
func TestRunImageSetupFailure(t *testing.T) {
	c, ref, state := pulledImage(t, "test/fail")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pull=never", "localhost/nosuch"}, "nosuch"},
		{[]string{"--entrypoint", "", ref}, "no command given"},
		{[]string{"--rm", "--entrypoint", "", ref}, "no command given"},
		{[]string{"-v", "/nonexistent-urun-test:/x", ref, "true"}, "nonexistent-urun-test"},
	} {
		cmd := c.cmd(t.Context(), append([]string{"--root", state, "run"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 125 || !strings.Contains(string(out), tc.want) {
			t.Errorf("run %v: %v, want exit 125 saying %q:\n%s", tc.args, err, tc.want, out)
		}
		if ents, _ := os.ReadDir(filepath.Join(state, "containers")); len(ents) != 0 {
			t.Errorf("run %v: state left: %v", tc.args, ents)
		}
	}
	// No record is left either: the image goes.
	c.run("rmi", ref)
}

// TestRunImageKeepsRecord: without --rm a container from an image keeps
// its record and state after it ran (as before the store step moved into
// the monitor); the record keeps the image.
func TestRunImageKeepsRecord(t *testing.T) {
	c, ref, state := pulledImage(t, "test/keep")
	if got := c.run("--root", state, "run", "-u", "0", ref, "sh", "-c", "echo kept > /kept; cat /kept"); got != "kept\n" {
		t.Errorf("output %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "containers")); len(ents) != 1 {
		t.Errorf("state dirs %v, want one", ents)
	}
	if out, err := c.try("rmi", ref); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("rmi with a kept container: %v %q", err, out)
	}
}

// pulledImage pulls a busybox image pushed as repo to a test registry and
// returns the CLI, the image's reference and a state directory.
func pulledImage(t *testing.T, repo string) (*imageCLI, string, string) {
	t.Helper()
	requireContainers(t)
	reg := rt.Start(t)
	ref := pushBusybox(t, reg, repo)
	c := newImageCLI(t, reg, "")
	c.run("pull", "--tls-verify=false", "-q", ref)
	return c, ref, t.TempDir()
}
