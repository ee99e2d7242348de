package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	rt "github.com/urun-dev/urun/internal/registrytest"
)

// TestRunImage runs containers from a pulled image: its config applies
// (command, user, working directory, environment), the flags override it,
// its upper layer's whiteouts hide lower files, the short form works, and
// --rm leaves no container record (rmi of the image then succeeds).
func TestRunImage(t *testing.T) {
	requireContainers(t)
	reg := rt.Start(t)
	top := rt.Layer{rt.Whiteout("bin/vi"), rt.File("etc/motd", "from the top layer\n")}
	ref := pushBusybox(t, reg, "test/run", top)
	c := newImageCLI(t, reg, "")
	state := t.TempDir()
	urun := func(args ...string) string {
		t.Helper()
		return c.run(append([]string{"--root", state}, args...)...)
	}
	c.run("pull", "--tls-verify=false", "-q", ref)

	if got := urun("run", "--rm", ref, "sh", "-c", `echo "$(id -u) $(pwd) $PATH"`); got != "1000 /home/app /bin\n" {
		t.Errorf("image config: %q", got)
	}
	if got := urun("run", "--rm", "-u", "0", "-w", "/", "-e", "PATH=/usr/bin:/bin", ref, "sh", "-c", `echo "$(id -u) $(pwd) $PATH"`); got != "0 / /usr/bin:/bin\n" {
		t.Errorf("flags over the image config: %q", got)
	}
	if got := urun("run", "--rm", "--entrypoint", `["/bin/echo","from"]`, ref, "entrypoint"); got != "from entrypoint\n" {
		t.Errorf("--entrypoint: %q", got)
	}
	if got := urun("run", "--rm", "--pull=never", ref, "sh", "-c", "cat /etc/motd; test -e /bin/vi && echo vi-visible; test -e /bin/ls && echo ls-there"); got != "from the top layer\nls-there\n" {
		t.Errorf("layers: %q", got)
	}
	// The init runs from urun-runtime. So does the monitor of a --rm
	// container, which only leases the image the CLI found; the monitor
	// that makes a store record (no --rm), or pulls (--pull=always), is
	// urun.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	self, _ := filepath.EvalSymlinks(c.bin)
	for _, tc := range []struct {
		flags   []string
		monitor string
	}{
		{[]string{"--rm"}, runtimeBin(t, c.bin)},
		{[]string{"--rm", "--pull=always", "--tls-verify=false"}, self},
		{[]string{"--name", "kept"}, self},
	} {
		args := append(append([]string{"--root", state, "run"}, tc.flags...), "-i", "--init", ref, "sh", "-c", "echo ready; read x || true")
		monitor, init := runningBinaries(t, c.cmd(ctx, args...))
		if monitor != tc.monitor || init != runtimeBin(t, c.bin) {
			t.Errorf("%v: monitor %s, init %s; want %s and %s", tc.flags, monitor, init, tc.monitor, runtimeBin(t, c.bin))
		}
	}
	c.run("--root", state, "rm", "kept")
	// The short form, with the store's global flags before the image.
	if got := urun(ref, "echo", "short"); got != "short\n" {
		t.Errorf("short form: %q", got)
	}
	out, err := c.try(append([]string{"--root", state}, "run", "--rm", "--pull=never", "localhost/nosuch", "true")...)
	if err == nil || !strings.Contains(out, "nosuch") {
		t.Errorf("missing image with --pull=never: %v %q", err, out)
	}
	// The short-form container above kept its record (no --rm): remove
	// its state, then the image goes.
	if out, err := c.try("rmi", ref); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("rmi with a kept container: %v %q", err, out)
	}
}

// TestRunImageKill9: urun killed while an image's --rm container runs.
// While it runs, its lease keeps the image (rmi refuses, --force too);
// once killed, nothing of it is left in the store, and the next urun run
// removes its state; the image can go.
func TestRunImageKill9(t *testing.T) {
	requireContainers(t)
	reg := rt.Start(t)
	ref := pushBusybox(t, reg, "test/kill")
	c := newImageCLI(t, reg, "")
	state := t.TempDir()
	c.run("pull", "--tls-verify=false", "-q", ref)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.cmd(ctx, "--root", state, "run", "--rm", ref, "sh", "-c", "echo ready; exec sleep 1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	startReady(t, cmd)
	for _, rmi := range [][]string{{"rmi", ref}, {"rmi", "--force", ref}} {
		if out, err := c.try(rmi...); err == nil || !strings.Contains(out, "in use") {
			t.Fatalf("%v while a --rm container runs: %v %q", rmi, err, out)
		}
	}
	tree := descendants(cmd.Process.Pid)
	killTree(t, cmd, tree)
	if ents, _ := os.ReadDir(filepath.Join(state, "containers")); len(ents) != 1 {
		t.Errorf("state of the killed container: %v, want one", ents)
	}
	c.run("--root", state, "run", "--rm", ref, "true")
	if ents, _ := os.ReadDir(filepath.Join(state, "containers")); len(ents) != 0 {
		t.Errorf("state left: %v", ents)
	}
	c.run("rmi", ref)
}
