package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// helperEnv names the in-process helper the test binary runs instead of
// the tests (see TestMain): a test re-executes itself, for example inside
// a user namespace, to make its checks there.
const helperEnv = "UFS_TEST_HELPER"

// TestMain dispatches to a helper when the test binary was re-executed as
// one, and runs the tests otherwise.
func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name))
	}
	os.Exit(m.Run())
}

// runHelper runs the named helper and returns its exit code.
func runHelper(name string) int {
	switch name {
	case "userns":
		return usernsHelper()
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
	return 2
}

// cmdTimeout bounds every ufs command a test runs, so that a command that
// hangs fails the test instead of blocking it until go test's timeout.
const cmdTimeout = 60 * time.Second

// result is what a finished ufs command left.
type result struct {
	args           []string
	code           int // exit code; -1 when killed
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("ufs %s: exit %d\nstdout: %q\nstderr: %q", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runUfs runs the ufs binary with args and returns how it ended. It uses
// its own context, not t.Context(), so that it also works in cleanups.
func runUfs(t testing.TB, args ...string) result {
	t.Helper()
	return runUfsTimeout(t, cmdTimeout, args...)
}

func runUfsTimeout(t testing.TB, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.UfsBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// A daemon that kept our pipes open must not block us.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run ufs %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Errorf("ufs %s: still running after %v; killed", strings.Join(args, " "), timeout)
	}
	return r
}

// dirs makes a fresh directory for each name under one t.TempDir() and
// returns their paths, with symlinks resolved so that they compare equal
// to what mountinfo shows.
func dirs(t testing.TB, names ...string) map[string]string {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"": root}
	for _, n := range names {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		out[n] = p
	}
	return out
}

// mountUfs runs "ufs mount ARGS... MNT" (background mode), fails t unless
// it succeeds, and makes sure the mount and its daemon are gone when t
// ends.
func mountUfs(t testing.TB, mnt string, args ...string) {
	t.Helper()
	cleanupMount(t, mnt)
	r := runUfs(t, append(append([]string{"mount"}, args...), mnt)...)
	if r.code != 0 {
		t.Fatalf("mount failed: %v", r)
	}
}

// cleanupMount registers a cleanup that unmounts mnt (lazily, so that it
// cannot fail as busy) if anything is still mounted there, and ends the
// daemons serving it.
func cleanupMount(t testing.TB, mnt string) {
	t.Helper()
	t.Cleanup(func() {
		pids := daemonPIDs(mnt)
		if mountCount(t, mnt) > 0 {
			if r := runUfs(t, "unmount", "-z", mnt); r.code != 0 {
				t.Errorf("cleanup: %v", r)
			}
		}
		for _, pid := range pids {
			if !testutil.WaitExit(t, pid, 10*time.Second) {
				t.Errorf("cleanup: daemon %d of %s still runs after the unmount; killing it", pid, mnt)
				_ = unix.Kill(pid, unix.SIGKILL)
				testutil.WaitExit(t, pid, 10*time.Second)
			}
		}
		for mountCount(t, mnt) > 0 {
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: %s still mounted: %v", mnt, err)
				break
			}
		}
	})
}

// mountCount returns how many mounts of this mount namespace are on mnt.
func mountCount(t testing.TB, mnt string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	points, err := fusefs.ParseMountpoints(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range points {
		if p == mnt {
			n++
		}
	}
	return n
}

// mountEntry returns the filesystem type and super options of the topmost
// mount on mnt, from /proc/self/mountinfo.
func mountEntry(t testing.TB, mnt string) (fstype, superOpts string) {
	t.Helper()
	_, fstype, superOpts = mountEntryAll(t, mnt)
	return fstype, superOpts
}

// mountEntryAll returns the per-mount options, filesystem type and super
// options of the topmost mount on mnt, from /proc/self/mountinfo.
func mountEntryAll(t testing.TB, mnt string) (mntOpts, fstype, superOpts string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			continue
		}
		points, _ := fusefs.ParseMountpoints(strings.NewReader(line))
		if len(points) == 1 && points[0] == mnt {
			mntOpts, fstype, superOpts = f[5], g[0], g[2]
		}
	}
	return mntOpts, fstype, superOpts
}

// awaitMounted waits until mnt is mounted (want) or not (!want), waking up
// each time the kernel reports a change of this mount namespace's table on
// /proc/self/mountinfo, never on a timer. If pidfd is not -1, it gives up
// as soon as that process has exited with the condition still unmet.
func awaitMounted(t testing.TB, mnt string, want bool, pidfd int) error {
	t.Helper()
	// A raw descriptor, not an *os.File: the runtime would register that
	// with its epoll, whose poll of the file consumes the change event
	// before ours sees it.
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open mountinfo", err)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(cmdTimeout)
	for {
		// fd's poll state dates from its opening: a change between the
		// opening and this check wakes the poll below at once.
		if (mountCount(t, mnt) > 0) == want {
			return nil
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
		if pidfd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(pidfd), Events: unix.POLLIN})
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s: mounted=%v not reached after %v", mnt, want, cmdTimeout)
		}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return os.NewSyscallError("poll", err)
		}
		if pidfd >= 0 && fds[1].Revents&unix.POLLIN != 0 && (mountCount(t, mnt) > 0) != want {
			return fmt.Errorf("%s: the process exited before mounted=%v", mnt, want)
		}
	}
}

// daemonPIDs returns the live ufs processes serving (or mounting) mnt:
// those whose command line is "... mount ... MNT".
func daemonPIDs(mnt string) []int {
	return testutil.LivePIDs(func(args []string) bool {
		return len(args) >= 3 && args[len(args)-1] == mnt && contains(args[1:], "mount") &&
			filepath.Base(args[0]) == "ufs"
	})
}

// daemonPID returns the one daemon serving mnt, failing t unless there is
// exactly one.
func daemonPID(t testing.TB, mnt string) int {
	t.Helper()
	pids := daemonPIDs(mnt)
	if len(pids) != 1 {
		t.Fatalf("want one daemon serving %s, found %v", mnt, pids)
	}
	return pids[0]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkOneLineError checks that a failed command left a non-zero exit and
// exactly one line on stderr, "ufs: ...", containing every want.
func checkOneLineError(t testing.TB, r result, want ...string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("want a non-zero exit: %v", r)
		return
	}
	msg := strings.TrimSuffix(r.stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("want exactly one line on stderr: %v", r)
	}
	if !strings.HasPrefix(msg, "ufs: ") {
		t.Errorf("want the error to start with \"ufs: \": %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("the error %q does not mention %q", msg, w)
		}
	}
}

// snapshot walks dir and returns each entry below it: a directory as
// "dir/", a symlink as "->target", a file as its content.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("readdir %s: %v", filepath.Join(dir, rel), err)
		}
		for _, e := range ents {
			p := filepath.Join(rel, e.Name())
			full := filepath.Join(dir, p)
			switch {
			case e.IsDir():
				out[p+"/"] = ""
				walk(p)
			case e.Type()&os.ModeSymlink != 0:
				target, err := os.Readlink(full)
				if err != nil {
					t.Fatal(err)
				}
				out[p] = "->" + target
			default:
				b, err := os.ReadFile(full)
				if err != nil {
					t.Fatalf("read %s: %v", full, err)
				}
				out[p] = string(b)
			}
		}
	}
	walk("")
	return out
}

// diffMaps describes how got differs from want, or returns "".
func diffMaps(got, want map[string]string) string {
	var b strings.Builder
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			fmt.Fprintf(&b, "\n  missing %q (want %q)", k, w)
		case g != w:
			fmt.Fprintf(&b, "\n  %q = %q, want %q", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "\n  unexpected %q = %q", k, g)
		}
	}
	return b.String()
}

// statIDs returns the owner of path, not following a final symlink.
func statIDs(t testing.TB, path string) (uid, gid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st.Uid, st.Gid
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
