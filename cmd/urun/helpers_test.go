package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urun-dev/urun/internal/testutil"
)

// requireContainers skips t unless containers can run here: FUSE, user
// namespaces, and a static busybox for the rootfs.
func requireContainers(t *testing.T) {
	t.Helper()
	testutil.Integration(t)
	testutil.RequireFUSE(t)
	testutil.RequireUserNS(t)
	if _, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("urun serves its rootfs from a user namespace and needs /dev/fuse read-write: %v (make test-rootless makes it 0666)", err)
	}
}

// env is one test's urun: its binary, a private data directory and a
// busybox rootfs.
type env struct {
	t      *testing.T
	bin    string
	root   string
	rootfs string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	requireContainers(t)
	e := &env{t: t, bin: testutil.UrunBin(t), root: t.TempDir(), rootfs: testutil.BusyboxRootfs(t)}
	t.Cleanup(e.checkNoLeftovers)
	return e
}

// command returns `urun --root ROOT run --rootfs ROOTFS FLAGS… -- ARGS…`
// split at "--": flags before, the container's command after.
func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	flags, cmdArgs := args, []string(nil)
	for i, a := range args {
		if a == "--" {
			flags, cmdArgs = args[:i], args[i+1:]
			break
		}
	}
	full := append([]string{"--root", e.root, "run", "--rootfs", e.rootfs}, flags...)
	full = append(full, cmdArgs...)
	cmd := exec.CommandContext(ctx, e.bin, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs urun to its end and returns its stdout, stderr and exit code.
func (e *env) run(args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return capture(e.t, e.command(ctx, args...))
}

// capture runs cmd to its end and returns its stdout, stderr and exit
// code; it fails t if cmd could not run at all.
func capture(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// ok runs urun, fails t unless it exits 0, and returns its stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("urun %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// checkNoLeftovers fails t if a --rm container's state or any mount below
// the data directory is left.
func (e *env) checkNoLeftovers() {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err == nil && strings.Contains(string(b), e.root) {
		e.t.Errorf("mounts left below %s:\n%s", e.root, b)
	}
}

// containerDirs lists the containers' state directories.
func (e *env) containerDirs() []string {
	ents, _ := os.ReadDir(filepath.Join(e.root, "containers"))
	var out []string
	for _, x := range ents {
		out = append(out, x.Name())
	}
	return out
}

// startReady starts cmd, a container whose command prints "ready" once it
// runs, and waits for that line.
func startReady(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("first line %q", line)
	}
}
