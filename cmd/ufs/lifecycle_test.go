package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// lowerTree is what the lower branch of the lifecycle tests holds.
var lowerTree = testutil.Tree{"hello": "hello from the lower branch\n", "dir/deep": "deep\n"}

// simpleUnion makes an rw and a ro branch (with lowerTree) and a
// mountpoint, and returns the paths and the mount arguments.
func simpleUnion(t *testing.T) (up, lo, mnt string, args []string) {
	t.Helper()
	d := dirs(t, "up", "lo", "mnt")
	testutil.Write(t, d["lo"], lowerTree)
	return d["up"], d["lo"], d["mnt"], []string{"-o", "br=" + d["up"] + "=rw:" + d["lo"] + "=ro"}
}

// TestMountReturnsWhenReady checks that ufs mount returns only once the
// union serves: right after it returns, a lower file reads through the
// mount, without any wait.
func TestMountReturnsWhenReady(t *testing.T) {
	testutil.RequireFUSE(t)
	_, _, mnt, args := simpleUnion(t)
	for i := range 5 {
		mountUfs(t, mnt, args...)
		b, err := os.ReadFile(filepath.Join(mnt, "hello"))
		if err != nil || string(b) != lowerTree["hello"] {
			t.Fatalf("round %d: right after mount: read = %q, %v; want %q", i, b, err, lowerTree["hello"])
		}
		if n := mountCount(t, mnt); n != 1 {
			t.Fatalf("round %d: %d mounts on %s, want 1", i, n, mnt)
		}
		pid := daemonPID(t, mnt)
		if r := runUfs(t, "unmount", mnt); r.code != 0 {
			t.Fatalf("round %d: %v", i, r)
		}
		if n := mountCount(t, mnt); n != 0 {
			t.Fatalf("round %d: %d mounts on %s after ufs unmount returned", i, n, mnt)
		}
		if !testutil.WaitExit(t, pid, 10*time.Second) {
			t.Fatalf("round %d: daemon %d still runs 10s after ufs unmount", i, pid)
		}
	}
}

// TestDaemonServesAfterCLIExits checks that the background daemon is
// detached from the command that started it (own session, no terminal,
// stdio on /dev/null) and serves reads and writes once that command has
// exited.
func TestDaemonServesAfterCLIExits(t *testing.T) {
	testutil.RequireFUSE(t)
	up, _, mnt, args := simpleUnion(t)
	mountUfs(t, mnt, args...) // returns once the command has exited
	pid := daemonPID(t, mnt)
	st, err := testutil.ProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if sid, _ := strconv.Atoi(st[3]); sid != pid {
		t.Errorf("daemon %d is in session %d, want its own session", pid, sid)
	}
	if ppid, _ := strconv.Atoi(st[1]); ppid == os.Getpid() {
		t.Errorf("daemon %d is a child of the test, want it detached", pid)
	}
	for fd := 0; fd <= 2; fd++ {
		target, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
		if err != nil {
			t.Fatal(err)
		}
		if target != os.DevNull {
			t.Errorf("daemon fd %d is %s, want %s", fd, target, os.DevNull)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "dir", "new"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"hello": lowerTree["hello"], "dir/": "", "dir/deep": "deep\n", "dir/new": "new\n"}
	if d := diffMaps(snapshot(t, mnt), want); d != "" {
		t.Errorf("union after the CLI exited:%s", d)
	}
	if b, err := os.ReadFile(filepath.Join(up, "dir", "new")); err != nil || string(b) != "new\n" {
		t.Errorf("rw branch dir/new = %q, %v", b, err)
	}
}

// foreground is a "ufs mount -f" process under test.
type foreground struct {
	cmd    *exec.Cmd
	pidfd  int
	stderr bytes.Buffer
	waited bool
	err    error // of Wait
}

// startForeground starts "ufs mount -f ARGS... MNT" and returns once the
// union is mounted, as seen in /proc/self/mountinfo. The process is
// stopped when t ends, if it has not been waited for.
func startForeground(t *testing.T, mnt string, args ...string) *foreground {
	t.Helper()
	cleanupMount(t, mnt)
	fg := &foreground{pidfd: -1}
	fg.cmd = exec.Command(testutil.UfsBin(t), append(append([]string{"mount", "-f"}, args...), mnt)...)
	fg.cmd.Stderr = &fg.stderr
	fg.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The daemon's readiness pipe (fd 3) says when the mount is complete:
	// the kernel shows the mount, and serves it, before go-fuse has
	// finished its own start-up, which an unmount in that moment fails.
	ready, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer ready.Close()
	fg.cmd.ExtraFiles = []*os.File{readyW}
	fg.cmd.Env = append(os.Environ(), readyEnv+"=3")
	if err := fg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	t.Cleanup(func() {
		if !fg.waited {
			_ = fg.cmd.Process.Signal(syscall.SIGTERM)
			fg.wait(t, 10*time.Second)
		}
	})
	fd, err := unix.PidfdOpen(fg.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open: %v", err)
	}
	fg.pidfd = fd
	t.Cleanup(func() { unix.Close(fd) })
	if err := awaitMounted(t, mnt, true, fd); err != nil {
		fg.wait(t, 10*time.Second)
		t.Fatalf("%v\nufs stderr:\n%s", err, fg.stderr.String())
	}
	if msg, _ := io.ReadAll(ready); string(msg) != "ok\n" {
		fg.wait(t, 10*time.Second)
		t.Fatalf("ufs mount -f: not ready: %q\nufs stderr:\n%s", msg, fg.stderr.String())
	}
	return fg
}

// wait waits up to timeout for the process to exit, kills it past that,
// and reports whether it exited by itself.
func (fg *foreground) wait(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	if fg.waited {
		return true
	}
	exited := testutil.WaitExit(t, fg.cmd.Process.Pid, timeout)
	if !exited {
		_ = fg.cmd.Process.Kill()
	}
	fg.err = fg.cmd.Wait()
	fg.waited = true
	return exited
}

// TestSignalUnmounts checks that SIGTERM (and SIGINT for a foreground
// daemon) unmounts the union and ends the daemon, in both modes, and also
// while a file is open in the union: the union is then detached at once
// and the daemon exits once the file is closed.
func TestSignalUnmounts(t *testing.T) {
	testutil.RequireFUSE(t)
	tests := []struct {
		name       string
		foreground bool
		sig        syscall.Signal
		busy       bool
	}{
		{name: "foreground SIGTERM", foreground: true, sig: syscall.SIGTERM},
		{name: "foreground SIGINT", foreground: true, sig: syscall.SIGINT},
		{name: "background SIGTERM", sig: syscall.SIGTERM},
		{name: "foreground SIGTERM busy", foreground: true, sig: syscall.SIGTERM, busy: true},
		{name: "background SIGTERM busy", sig: syscall.SIGTERM, busy: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, mnt, args := simpleUnion(t)
			var fg *foreground
			var pid int
			if tc.foreground {
				fg = startForeground(t, mnt, args...)
				pid = fg.cmd.Process.Pid
			} else {
				mountUfs(t, mnt, args...)
				pid = daemonPID(t, mnt)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil || string(b) != lowerTree["hello"] {
				t.Fatalf("read through the union: %q, %v", b, err)
			}
			var open *os.File
			if tc.busy {
				f, err := os.Open(filepath.Join(mnt, "hello"))
				if err != nil {
					t.Fatal(err)
				}
				open = f
				defer f.Close()
			}
			if err := unix.Kill(pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			if tc.busy {
				if err := awaitMounted(t, mnt, false, -1); err != nil {
					t.Fatalf("after %v with a file open: %v", tc.sig, err)
				}
				buf := make([]byte, 64)
				n, err := open.ReadAt(buf, 0)
				if string(buf[:n]) != lowerTree["hello"] {
					t.Errorf("read of a file open across the detach: %q, %v", buf[:n], err)
				}
				if st, err := testutil.ProcState(pid); err != nil || st == 'Z' {
					t.Errorf("daemon gone while a file of its union is open (state %c, %v)", st, err)
				}
				open.Close()
			}
			var exited bool
			if fg != nil {
				exited = fg.wait(t, 10*time.Second)
				if exited && fg.err != nil {
					t.Errorf("ufs mount -f after %v: %v\nstderr:\n%s", tc.sig, fg.err, fg.stderr.String())
				}
			} else {
				exited = testutil.WaitExit(t, pid, 10*time.Second)
			}
			if !exited {
				t.Fatalf("daemon %d still runs 10s after %v", pid, tc.sig)
			}
			if n := mountCount(t, mnt); n != 0 {
				t.Errorf("%d mounts left on %s after the daemon exited", n, mnt)
			}
		})
	}
}

// TestUnmountBusy checks that ufs unmount refuses a busy union, leaving it
// working, and that ufs unmount -z detaches it at once while an open file
// stays readable, the daemon exiting once that file is closed.
func TestUnmountBusy(t *testing.T) {
	testutil.RequireFUSE(t)
	_, _, mnt, args := simpleUnion(t)
	mountUfs(t, mnt, args...)
	pid := daemonPID(t, mnt)
	f, err := os.Open(filepath.Join(mnt, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	r := runUfs(t, "unmount", mnt)
	checkOneLineError(t, r, mnt)
	if !strings.Contains(strings.ToLower(r.stderr), "busy") {
		t.Errorf("the error does not say the union is busy: %q", r.stderr)
	}
	if n := mountCount(t, mnt); n != 1 {
		t.Fatalf("%d mounts on %s after a refused unmount, want 1", n, mnt)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "dir", "deep")); err != nil || string(b) != "deep\n" {
		t.Errorf("union after a refused unmount: %q, %v", b, err)
	}

	if r := runUfs(t, "unmount", "-z", mnt); r.code != 0 {
		t.Fatalf("lazy unmount of a busy union: %v", r)
	}
	if n := mountCount(t, mnt); n != 0 {
		t.Errorf("%d mounts on %s right after ufs unmount -z, want 0", n, mnt)
	}
	buf := make([]byte, 64)
	n, err := f.ReadAt(buf, 0)
	if string(buf[:n]) != lowerTree["hello"] {
		t.Errorf("read of a file open across the lazy unmount: %q, %v", buf[:n], err)
	}
	if st, err := testutil.ProcState(pid); err != nil || st == 'Z' {
		t.Errorf("daemon gone while a file of its union is open (state %c, %v)", st, err)
	}
	f.Close()
	if !testutil.WaitExit(t, pid, 10*time.Second) {
		t.Errorf("daemon %d still runs 10s after the last file of its lazily unmounted union was closed", pid)
	}
}

// TestUnmountKilledDaemon checks that a union whose daemon was killed with
// SIGKILL (ENOTCONN on every access) is refused as a mountpoint with a hint,
// cleared by ufs unmount (plain or -z), and can be mounted again.
func TestUnmountKilledDaemon(t *testing.T) {
	testutil.RequireFUSE(t)
	for _, lazy := range []bool{false, true} {
		name := "unmount"
		if lazy {
			name = "unmount -z"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, mnt, args := simpleUnion(t)
			mountUfs(t, mnt, args...)
			pid := daemonPID(t, mnt)
			if err := unix.Kill(pid, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if !testutil.WaitExit(t, pid, 10*time.Second) {
				t.Fatalf("daemon %d survived SIGKILL", pid)
			}
			var stx unix.Statx_t
			err := unix.Statx(unix.AT_FDCWD, mnt, unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &stx)
			if !errors.Is(err, unix.ENOTCONN) {
				t.Errorf("statx of the dead union: %v, want ENOTCONN", err)
			}
			if _, err := os.ReadDir(mnt); !errors.Is(err, unix.ENOTCONN) {
				t.Errorf("readdir of the dead union: %v, want ENOTCONN", err)
			}
			if n := mountCount(t, mnt); n != 1 {
				t.Fatalf("%d mounts on %s after the daemon was killed, want 1 (dead)", n, mnt)
			}

			r := runUfs(t, append(append([]string{"mount"}, args...), mnt)...)
			checkOneLineError(t, r, mnt, "ufs unmount "+mnt)
			if n := mountCount(t, mnt); n != 1 {
				t.Fatalf("%d mounts on %s after mounting over the dead union, want 1", n, mnt)
			}

			uargs := []string{"unmount", mnt}
			if lazy {
				uargs = []string{"unmount", "-z", mnt}
			}
			if r := runUfs(t, uargs...); r.code != 0 {
				t.Fatalf("clearing the dead union: %v", r)
			}
			if n := mountCount(t, mnt); n != 0 {
				t.Fatalf("%d mounts on %s after %s", n, mnt, strings.Join(uargs, " "))
			}

			mountUfs(t, mnt, args...)
			if b, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil || string(b) != lowerTree["hello"] {
				t.Errorf("read through the union mounted again: %q, %v", b, err)
			}
		})
	}
}

// TestBranchForms mounts the same three branches with each way of naming
// them and checks that each gives the expected union: the aufs -o br= list,
// repeated --branch flags, both mixed, several -o, and the permission
// words' synonyms. A form whose middle branch is ro instead of wh must not
// honour that branch's whiteout.
func TestBranchForms(t *testing.T) {
	testutil.RequireFUSE(t)
	d := dirs(t, "up", "mid", "low", "mnt")
	up, mid, low, mnt := d["up"], d["mid"], d["low"], d["mnt"]
	testutil.Write(t, up, testutil.Tree{"a": "up a", ".wh.b": "", "dir/x": "up x"})
	testutil.Write(t, mid, testutil.Tree{"a": "mid a", "b": "mid b", "c": "mid c", ".wh.d": "", "dir/y": "mid y"})
	testutil.Write(t, low, testutil.Tree{"c": "low c", "d": "low d", "e": "low e", "dir/z": "low z"})
	union := map[string]string{"a": "up a", "c": "mid c", "e": "low e", "dir/": "", "dir/x": "up x", "dir/y": "mid y", "dir/z": "low z"}
	midRO := map[string]string{"d": "low d"}
	for k, v := range union {
		midRO[k] = v
	}
	tests := []struct {
		name string
		args []string
		want map[string]string
	}{
		{name: "br", args: []string{"-o", "br=" + up + "=rw:" + mid + "=wh:" + low + "=ro"}, want: union},
		{name: "branch flags", args: []string{"--branch", up + "=rw", "--branch", mid + "=wh", "--branch", low + "=ro"}, want: union},
		{name: "branch then br", args: []string{"--branch", up + "=rw", "-o", "br=" + mid + "=wh:" + low + "=ro"}, want: union},
		{name: "two -o br", args: []string{"-o", "br=" + up + "=rw:" + mid + "=wh", "-o", "br=" + low + "=ro"}, want: union},
		{name: "ro+wh", args: []string{"-o", "br=" + up + "=rw:" + mid + "=ro+wh:" + low + "=ro"}, want: union},
		{name: "br defaults", args: []string{"-o", "br=" + up + ":" + mid + ":" + low}, want: midRO},
		{name: "branch ro", args: []string{"--branch", up + "=rw", "--branch", mid + "=ro", "--branch", low + "=ro"}, want: midRO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mountUfs(t, mnt, tc.args...)
			if diff := diffMaps(snapshot(t, mnt), tc.want); diff != "" {
				t.Errorf("union:%s", diff)
			}
			// The topmost branch is writable in every form.
			if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("new"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(up, "new")); err != nil {
				t.Errorf("file made through the union is not in the rw branch: %v", err)
			}
			if err := os.Remove(filepath.Join(mnt, "new")); err != nil {
				t.Fatal(err)
			}
			if r := runUfs(t, "unmount", mnt); r.code != 0 {
				t.Fatalf("%v", r)
			}
		})
	}
}

// TestForegroundLogsToStderr checks that ufs mount -f with -o debug logs
// the FUSE requests on its stderr, and exits 0 when unmounted from outside.
func TestForegroundLogsToStderr(t *testing.T) {
	testutil.RequireFUSE(t)
	_, _, mnt, args := simpleUnion(t)
	fg := startForeground(t, mnt, append(args, "-o", "debug")...)
	if _, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil {
		t.Fatal(err)
	}
	if r := runUfs(t, "unmount", mnt); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if !fg.wait(t, 10*time.Second) {
		t.Fatal("ufs mount -f still runs 10s after ufs unmount")
	}
	if fg.err != nil {
		t.Errorf("ufs mount -f: %v\n%s", fg.err, tail(fg.stderr.String(), 2000))
	}
	if !strings.Contains(fg.stderr.String(), "hello") {
		t.Errorf("debug log on stderr does not show the lookup of hello:\n%s", fg.stderr.String())
	}
}

// TestDaemonDropsCallerResources checks that the background daemon, which
// lives on after the command that started it, does not pin what belonged
// to that command: its working directory (which would keep the
// filesystem it lies on busy) and descriptors it inherited beyond stdio
// (which would keep, for example, a pipe its caller reads from open).
func TestDaemonDropsCallerResources(t *testing.T) {
	testutil.RequireFUSE(t)
	d := dirs(t, "up", "lo", "mnt", "cwd")
	testutil.Write(t, d["lo"], lowerTree)
	mnt := d["mnt"]
	cleanupMount(t, mnt)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(w.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	pipeLink := "pipe:[" + strconv.FormatUint(st.Ino, 10) + "]"
	cmd := exec.Command(testutil.UfsBin(t), "mount", "-o", "br="+d["up"]+"=rw:"+d["lo"]+"=ro", mnt)
	cmd.Dir = d["cwd"]
	// The caller's descriptors 3 and 4 are the pipe: the daemon gets its
	// own descriptor 3 (the ready pipe), so 4 shows whether it inherits.
	cmd.ExtraFiles = []*os.File{w, w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	w.Close()
	if err != nil {
		t.Fatalf("ufs mount: %v: %s", err, out)
	}
	pid := daemonPID(t, mnt)
	proc := "/proc/" + strconv.Itoa(pid)
	if cwd, err := os.Readlink(proc + "/cwd"); err != nil || cwd != "/" {
		t.Errorf("daemon working directory is %q (%v), want / so that the caller's directory is not kept busy", cwd, err)
	}
	fds, err := os.ReadDir(proc + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(proc + "/fd/" + fd.Name()); target == pipeLink {
			t.Errorf("daemon holds the caller's pipe as descriptor %s", fd.Name())
		}
	}
}

// TestOddPaths mounts branches and a mountpoint whose names hold a space,
// a colon, an equals sign and a comma, and checks
// that the union works, that a second mount is refused as already mounted,
// and that ufs unmount finds it.
func TestOddPaths(t *testing.T) {
	testutil.RequireFUSE(t)
	d := dirs(t, "up,per", "lo w:x=y", "my mnt")
	up, lo, mnt := d["up,per"], d["lo w:x=y"], d["my mnt"]
	testutil.Write(t, lo, lowerTree)
	mountUfs(t, mnt, "--branch", up+"=rw", "--branch", lo+"=ro")
	if b, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil || string(b) != lowerTree["hello"] {
		t.Errorf("read through the union: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(up, "new")); err != nil {
		t.Errorf("new file not in the rw branch: %v", err)
	}
	r := runUfs(t, "mount", "--branch", lo+"=ro", mnt)
	checkOneLineError(t, r, mnt, "already mounted")
	if r := runUfs(t, "unmount", mnt); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if n := mountCount(t, mnt); n != 0 {
		t.Errorf("%d mounts on %q after ufs unmount", n, mnt)
	}
}
