package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/internal/testutil"
	"github.com/urun-dev/urun/userns"
	"golang.org/x/sys/unix"
)

func TestRunEcho(t *testing.T) {
	e := newEnv(t)
	if out := e.ok("--rm", "--", "echo", "hello"); out != "hello\n" {
		t.Errorf("stdout %q, want hello", out)
	}
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("--rm left %v", d)
	}
	// No descriptor of urun's reaches the container: an inherited
	// /dev/fuse would keep the rootfs's FUSE connection alive after
	// urun's death, and a request made then would hang forever.
	// Nor one its caller left open (here: the host's root directory).
	hostRoot, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer hostRoot.Close()
	for _, flags := range [][]string{{"--rm"}, {"--rm", "--init"}} {
		cmd := e.command(context.Background(), append(flags, "--", "sh", "-c", "for f in /proc/self/fd/*; do readlink $f; done; true")...)
		cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, nil, nil, hostRoot} // fd 9
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
		out := string(b)
		if strings.Count(out, "\n") > 4 { // 0, 1, 2 and ls's own directory
			t.Errorf("%v: descriptors beyond stdio reached the container:\n%s", flags, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "fuse") || strings.Contains(l, "lock") || strings.Contains(l, e.root) {
				t.Errorf("%v: the container inherited %s", flags, l)
			}
		}
	}
}

// TestUIDMap checks the user namespace's maps: the caller is root inside,
// its subordinate ranges are 1…N (the identity map for real root).
func TestUIDMap(t *testing.T) {
	e := newEnv(t)
	maps, err := userns.Plan(userns.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		want []userns.Mapping
	}{{"uid_map", maps.UID}, {"gid_map", maps.GID}} {
		out := e.ok("--rm", "--", "cat", "/proc/self/"+tc.file)
		got, err := userns.ParseMap(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s = %v, want %v", tc.file, got, tc.want)
		}
	}
	if os.Getuid() != 0 {
		if got := e.ok("--rm", "--userns=keep-id", "--", "id", "-u"); strings.TrimSpace(got) != strconv.Itoa(os.Getuid()) {
			t.Errorf("--userns=keep-id: id -u = %q, want %d", got, os.Getuid())
		}
	}
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		args    []string
		code    int
		message string
	}{
		{"own status", []string{"--", "sh", "-c", "exit 3"}, 3, ""},
		{"not found", []string{"--", "nosuch"}, 127, "executable file `nosuch` not found in $PATH"},
		{"not found by path", []string{"--", "/bin/nosuch"}, 127, "executable file `/bin/nosuch` not found"},
		{"not executable", []string{"--", "/etc/passwd"}, 126, "permission denied"},
		{"a directory", []string{"--", "/etc"}, 126, "permission denied"},
		{"killed by a signal", []string{"--init", "--", "sh", "-c", "kill -KILL $$"}, 137, ""},
		{"unknown user", []string{"-u", "bob", "--", "true"}, 126, "unable to find user bob"},
		{"unknown group", []string{"-u", "0:nogrp", "--", "true"}, 126, "unable to find group nogrp"},
		{"not executable in PATH", []string{"-e", "PATH=/etc", "--", "passwd"}, 127, "executable file `passwd` not found in $PATH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := e.run(append([]string{"--rm"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errs)
			}
			if !strings.Contains(errs, tc.message) {
				t.Errorf("stderr %q does not say %q", errs, tc.message)
			}
			if tc.message != "" && !strings.HasPrefix(errs, "Error: ") {
				t.Errorf("stderr %q: want podman's \"Error: \" prefix", errs)
			}
		})
	}
}

// TestSignals sends each forwarded signal to urun and expects the
// container's shell, pid 1, to trap it.
func TestSignals(t *testing.T) {
	e := newEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH} {
		for _, init := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v init=%v", sig, init), func(t *testing.T) {
				name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
				args := []string{"--rm"}
				if init {
					args = append(args, "--init")
				}
				script := fmt.Sprintf(`trap 'echo got %s; exit 7' %s; echo ready; while :; do sleep 0.05; done`, name, name)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				cmd := e.command(ctx, append(args, "--", "sh", "-c", script)...)
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				var errb bytes.Buffer
				cmd.Stderr = &errb
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				r := bufio.NewReader(stdout)
				if line, err := r.ReadString('\n'); line != "ready\n" {
					t.Fatalf("first line %q, %v; stderr %s", line, err, errb.String())
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				rest, _ := io.ReadAll(r)
				cmd.Wait()
				if got := string(rest); got != "got "+name+"\n" {
					t.Errorf("after %v: %q, want the trap's output (stderr %s)", sig, got, errb.String())
				}
				if code := cmd.ProcessState.ExitCode(); code != 7 {
					t.Errorf("exit %d, want 7", code)
				}
			})
		}
	}
}

// TestInitReapsZombies: with --init, an orphan that exits is reaped by
// urun's init, and the command's status is urun's.
func TestInitReapsZombies(t *testing.T) {
	e := newEnv(t)
	script := `(sleep 0.1 &); sleep 0.5; for s in /proc/[0-9]*/stat; do read -r pid comm state rest < $s; echo "$pid $comm $state"; done; exit 4`
	out, errs, code := e.run("--rm", "--init", "--", "sh", "-c", script)
	if code != 4 {
		t.Fatalf("exit %d, want 4; stderr %s", code, errs)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "Z" {
			t.Errorf("zombie left: %s\n%s", line, out)
		}
		if len(f) == 3 && f[0] == "1" && f[1] != "(exe)" && !strings.Contains(f[1], "urun") {
			t.Errorf("pid 1 is %s, want urun's init", f[1])
		}
	}
}

func TestTTY(t *testing.T) {
	e := newEnv(t)
	master, slave := testutil.OpenPTY(t, 33, 101)
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := e.command(ctx, "--rm", "-it", "--", "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(master) // EIO once urun and the test close the slave
		out <- string(b)
	}()
	io.WriteString(master, "tty; echo term=$TERM; stty size; exit 3\n")
	err = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	after, terr := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	slave.Close()
	got := <-out
	if code != 3 {
		t.Errorf("exit %d (%v), want 3; output %q", code, err, got)
	}
	for _, want := range []string{"/dev/pts/0", "term=xterm", "33 101"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if terr != nil || *after != *before {
		t.Errorf("terminal not restored: before %+v after %+v (%v)", before, after, terr)
	}
}

func TestStdin(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		flags []string
		want  string
	}{{[]string{"-i"}, "line one\nline two\n"}, {nil, ""}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := e.command(ctx, append(append([]string{"--rm"}, tc.flags...), "--", "cat")...)
		cmd.Stdin = strings.NewReader("line one\nline two\n")
		out, err := cmd.Output()
		cancel()
		if err != nil || string(out) != tc.want {
			t.Errorf("%v cat: %q, %v; want %q (EOF closes stdin inside)", tc.flags, out, err, tc.want)
		}
	}
}

func TestEnvWorkdirUser(t *testing.T) {
	e := newEnv(t)
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# comment\nFROMFILE=yes\nOVER=file\n\n"), 0o644)
	t.Setenv("URUN_TEST_PASS", "passed")
	out := e.ok("--rm", "-e", "A=1", "-e", "URUN_TEST_PASS", "-e", "URUN_TEST_UNSET_X", "--env-file", envFile, "-e", "OVER=flag",
		"-w", "/new/dir", "--", "sh", "-c", `echo "$A $URUN_TEST_PASS $FROMFILE $OVER ${URUN_TEST_UNSET_X-unset} $HOME $PATH"; pwd`)
	want := "1 passed yes flag unset /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/new/dir\n"
	if out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
	tests := []struct{ user, want string }{
		{"alice", "uid=1000(alice) gid=1000(alice) groups=10(wheel),1000(alice) /home/alice"},
		{"1000", "uid=1000(alice) gid=1000(alice) groups=10(wheel),1000(alice) /home/alice"},
		{"alice:wheel", "uid=1000(alice) gid=10(wheel) groups=10(wheel) /home/alice"},
		{"1234:5", "uid=1234 gid=5(tty) groups=5(tty) /"},
		{"nobody", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup) /nonexistent"},
	}
	for _, tc := range tests {
		got := strings.TrimSpace(e.ok("--rm", "-u", tc.user, "--", "sh", "-c", `echo "$(id) $HOME"`))
		if got != tc.want {
			t.Errorf("-u %s: %q, want %q", tc.user, got, tc.want)
		}
	}
}

func TestMounts(t *testing.T) {
	e := newEnv(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("from host\n"), 0o666)
	os.Chmod(host, 0o777)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("old\n"), 0o666)
	out := e.ok("--rm", "-v", host+":/mnt/ro:ro", "-v", host+":/mnt/rw", "-v", file+":/etc/bound", "--tmpfs", "/scratch:size=1m",
		"--", "sh", "-c", `cat /mnt/ro/f; touch /mnt/ro/x 2>/dev/null && echo ro-writable; echo new > /mnt/rw/g; echo changed > /etc/bound; grep " /scratch " /proc/mounts | cut -d" " -f3,4`)
	if !strings.Contains(out, "from host\n") || strings.Contains(out, "ro-writable") {
		t.Errorf("read-only bind: %q", out)
	}
	if !strings.Contains(out, "tmpfs rw,nosuid,nodev,relatime") {
		t.Errorf("--tmpfs: %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "g")); string(b) != "new\n" {
		t.Errorf("write through rw bind: %q", b)
	}
	if b, _ := os.ReadFile(file); string(b) != "changed\n" {
		t.Errorf("file bind: %q", b)
	}
}

func TestMaskedAndReadOnlyPaths(t *testing.T) {
	e := newEnv(t)
	script := `for p in /proc/kcore /proc/keys /proc/timer_list; do [ -e $p ] && echo "$p $(wc -c < $p)"; done
ls /sys/firmware | wc -l
echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable
echo urun > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable
touch /sys/x 2>/dev/null && echo sys-writable
echo done`
	out := e.ok("--rm", "--", "sh", "-c", script)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "/proc/") && !strings.HasSuffix(line, " 0") {
			t.Errorf("masked path readable: %s", line)
		}
	}
	for _, bad := range []string{"writable"} {
		if strings.Contains(out, bad) {
			t.Errorf("read-only path written:\n%s", out)
		}
	}
	if !strings.Contains(out, "0\ndone") {
		t.Errorf("/sys/firmware not empty:\n%s", out)
	}
	// --privileged: nothing masked.
	if out := e.ok("--rm", "--privileged", "--", "sh", "-c", "grep -c ' /proc/keys ' /proc/mounts; true"); strings.TrimSpace(out) != "0" {
		t.Errorf("--privileged masks /proc/keys: %q", out)
	}
}

func TestHostname(t *testing.T) {
	e := newEnv(t)
	// A dangling symlink, as systemd-resolved leaves: the file it points
	// to is made inside the rootfs, and the container's file bound there.
	os.Remove(filepath.Join(e.rootfs, "etc/resolv.conf"))
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(e.rootfs, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("--rm", "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver") {
		t.Errorf("resolv.conf through a dangling symlink: %q", out)
	}
	out := e.ok("--rm", "--hostname", "box", "--", "sh", "-c", "hostname; cat /etc/hostname; echo; grep -c box /etc/hosts")
	if out != "box\nbox\n1\n" {
		t.Errorf("got %q", out)
	}
	out = strings.TrimSpace(e.ok("--rm", "--", "hostname"))
	if len(out) != 12 {
		t.Errorf("default hostname %q: want the id's first 12 digits", out)
	}
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		args []string
		want string // CapPrm CapEff CapBnd CapAmb
	}{
		{nil, "00000000800405fb 00000000800405fb 00000000800405fb 0000000000000000"},
		{[]string{"--cap-drop", "ALL"}, "0000000000000000 0000000000000000 0000000000000000 0000000000000000"},
		{[]string{"--cap-drop", "chown", "--cap-add", "NET_ADMIN"}, "00000000800415fa 00000000800415fa 00000000800415fa 0000000000000000"},
		{[]string{"-u", "alice"}, "0000000000000000 0000000000000000 00000000800405fb 0000000000000000"},
		{[]string{"-u", "alice", "--cap-add", "net_admin"}, "0000000000001000 0000000000001000 00000000800415fb 0000000000001000"},
	}
	for _, tc := range tests {
		args := append(append([]string{"--rm"}, tc.args...), "--", "sh", "-c", `while read k v; do case $k in CapPrm:|CapEff:|CapBnd:|CapAmb:) printf "%s " $v;; esac; done < /proc/self/status`)
		if got := strings.TrimSpace(e.ok(args...)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.args, got, tc.want)
		}
	}
	if _, errs, code := e.run("--rm", "--cap-add", "BOGUS", "--", "true"); code != 125 || !strings.Contains(errs, `unknown capability "BOGUS"`) {
		t.Errorf("--cap-add BOGUS: exit %d, %q", code, errs)
	}
}

// TestSeccomp: the default filter refuses unshare(CLONE_NEWUSER) without
// CAP_SYS_ADMIN; seccomp=unconfined lets it through.
func TestSeccomp(t *testing.T) {
	e := newEnv(t)
	_, errs, code := e.run("--rm", "--", "unshare", "-U", "true")
	if code == 0 || !strings.Contains(errs, "Operation not permitted") {
		t.Errorf("default filter: unshare -U exit %d, %q", code, errs)
	}
	e.ok("--rm", "--security-opt", "seccomp=unconfined", "--", "unshare", "-U", "true")
	out := e.ok("--rm", "--security-opt", "no-new-privileges", "--", "sh", "-c", "grep NoNewPrivs /proc/self/status")
	if !strings.Contains(out, "1") {
		t.Errorf("no-new-privileges: %q", out)
	}
}

// TestHostNetworkSysReadOnly: with the host's network the host's /sys is
// bound, and every mount below it is read-only too.
func TestHostNetworkSysReadOnly(t *testing.T) {
	e := newEnv(t)
	out := e.ok("--rm", "--network", "host", "--", "sh", "-c", `while read -r id parent dev root point opts rest; do case $point in /sys|/sys/*) echo "$point $opts";; esac; done < /proc/self/mountinfo`)
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		n++
		if len(f) != 2 || !strings.HasPrefix(f[1], "ro") {
			t.Errorf("writable under /sys: %s", l)
		}
	}
	if n < 2 {
		t.Errorf("mounts under /sys: %q", out)
	}
}

// TestConcurrentRuns: --rm containers started side by side never remove
// each other's state.
func TestConcurrentRuns(t *testing.T) {
	e := newEnv(t)
	errs := make(chan string, 40)
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; i < 8; i++ {
				out, stderr, code := e.run("--rm", "--", "sh", "-c", "echo ok > /tmp/f; cat /tmp/f")
				if code != 0 || out != "ok\n" {
					errs <- fmt.Sprintf("exit %d %q %s", code, out, stderr)
					continue
				}
				errs <- ""
			}
		}()
	}
	for i := 0; i < 32; i++ {
		if msg := <-errs; msg != "" {
			t.Error(msg)
		}
	}
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("left: %v", d)
	}
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t)
	out := e.ok("--rm", "--read-only", "--", "sh", "-c", "touch /x 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-ok")
	if out != "tmp-ok\n" {
		t.Errorf("--read-only: %q", out)
	}
}

// TestKeepState: without --rm the container's upper keeps its changes and
// its name stays taken.
func TestKeepState(t *testing.T) {
	e := newEnv(t)
	e.ok("--name", "keeper", "--", "sh", "-c", "echo kept > /root/file")
	dirs := e.containerDirs()
	if len(dirs) != 1 {
		t.Fatalf("containers: %v", dirs)
	}
	if b, err := os.ReadFile(filepath.Join(e.root, "containers", dirs[0], "upper", "root", "file")); string(b) != "kept\n" {
		t.Errorf("upper: %q, %v", b, err)
	}
	if _, errs, code := e.run("--name", "keeper", "--", "true"); code != 125 || !strings.Contains(errs, `the container name "keeper" is already in use`) {
		t.Errorf("second --name keeper: exit %d, %q", code, errs)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing rootfs", []string{"--rootfs", "/nonexistent/rootfs", "--", "true"}, "/nonexistent/rootfs: no such file or directory"},
		{"named volume", []string{"-v", "data:/data", "--", "true"}, "named volumes are not supported"},
		{"missing host path", []string{"-v", "/nonexistent/x:/x", "--", "true"}, "host path"},
		{"relative container path", []string{"-v", "/tmp:data", "--", "true"}, "must be absolute"},
		{"bad volume option", []string{"-v", "/tmp:/x:rx", "--", "true"}, `unknown option "rx"`},
		{"bad tmpfs", []string{"--tmpfs", "rel", "--", "true"}, "must be absolute"},
		{"bad network", []string{"--network", "bridge", "--", "true"}, "only none and host"},
		{"bad security opt", []string{"--security-opt", "apparmor", "--", "true"}, "supported: no-new-privileges"},
		{"no command", []string{}, "no command given"},
		{"unknown flag", []string{"--bogus", "--", "true"}, "unknown flag: --bogus"},
		{"bad name", []string{"--name", "a\n1.2.3.4 evil", "--", "true"}, "names must match"},
		{"bad hostname", []string{"--hostname", strings.Repeat("h", 65), "--", "true"}, "at most 64 characters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := e.run(tc.args...)
			if code != 125 || !strings.Contains(errs, tc.want) || !strings.HasPrefix(errs, "Error: ") {
				t.Errorf("exit %d, stderr %q, want 125 and %q; stdout %q", code, errs, tc.want, out)
			}
			if strings.Count(strings.TrimSpace(errs), "\n") > 0 && !strings.Contains(errs, "Usage") {
				t.Errorf("not a one-line error: %q", errs)
			}
		})
	}
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("bad input left containers: %v", d)
	}
}

// TestSetupError: a mount that fails inside the container ends urun with
// 125 and podman's prefix, and --rm still removes everything.
func TestSetupError(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	_, errs, code := e.run("--rm", "-v", file+":/etc/passwd/x", "--", "true")
	if code != 125 || !strings.HasPrefix(errs, "Error: ") || !strings.Contains(errs, "/etc/passwd/x") {
		t.Errorf("exit %d, stderr %q; want 125 and an error naming the mount point", code, errs)
	}
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("failed container left %v", d)
	}
}

// TestKill9 kills urun itself: the monitor and the container die with it,
// nothing stays mounted, and the next urun removes the --rm state.
func TestKill9(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := e.command(ctx, "--rm", "--", "sh", "-c", "echo ready; exec sleep 1000")
	startReady(t, cmd)
	tree := descendants(cmd.Process.Pid)
	if len(tree) < 2 {
		t.Fatalf("urun %d has descendants %v, want the monitor and the container", cmd.Process.Pid, tree)
	}
	killTree(t, cmd, tree)
	if len(e.containerDirs()) != 1 {
		t.Fatalf("state of the killed container: %v, want it left for the next start", e.containerDirs())
	}
	e.ok("--rm", "--", "true")
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("the next urun left the killed --rm container's state: %v", d)
	}
}

// descendants lists the processes below pid (children first).
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := testutil.ProcStat(p)
		if err == nil && len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// killTree SIGKILLs urun (cmd) and fails t unless every process of tree
// (its descendants, taken before) then exits.
func killTree(t *testing.T, cmd *exec.Cmd, tree []int) {
	t.Helper()
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range tree {
		if !testutil.WaitExit(t, pid, 20*time.Second) {
			t.Fatalf("process %d outlived urun's SIGKILL", pid)
		}
	}
}

// TestRunTrace: URUN_TRACE=FILE gets the phases of every urun process of
// a container's start, the container's init included.
func TestRunTrace(t *testing.T) {
	e := newEnv(t)
	name := filepath.Join(t.TempDir(), "trace")
	for _, flags := range [][]string{{"--rm"}, {"--rm", "--init"}, {"--rm", "--userns=keep-id"}} {
		if os.Getuid() == 0 && flags[len(flags)-1] == "--userns=keep-id" {
			continue // keep-id needs subordinate ids of an ordinary user
		}
		os.Remove(name)
		cmd := e.command(context.Background(), append(flags, "--", "true")...)
		cmd.Env = append(os.Environ(), "URUN_TRACE="+name, fmt.Sprintf("URUN_TRACE_START=%d", time.Now().UnixNano()))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", flags, err, out)
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for l := range strings.Lines(string(b)) {
			var phase string
			var ms float64
			if _, err := fmt.Sscanf(l, "phase=%s ms=%f", &phase, &ms); err != nil || ms < 0 {
				t.Fatalf("%v: bad trace line %q: %v", flags, l, err)
			}
			got[phase] = true
		}
		want := []string{"start", "cli", "userns", "mount", "init-start", "init-wait", "init-setup", "exec-setup", "container", "monitor-exit", "teardown"}
		if flags[len(flags)-1] == "--init" {
			want = append(want, "exec-start")
		}
		for _, w := range want {
			if !got[w] {
				t.Errorf("%v: no phase %s in the trace:\n%s", flags, w, b)
			}
		}
	}
}

// TestPsRm: a container kept without --rm is listed by ps -a and removed
// by rm, files of subordinate ids included; a running one is listed by ps
// and refused by rm.
func TestPsRm(t *testing.T) {
	e := newEnv(t)
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return capture(t, exec.Command(e.bin, append([]string{"--root", e.root}, args...)...))
	}
	e.ok("--name", "kept", "--", "sh", "-c", "mkdir -p /x/y && chown 1000:1000 /x/y && touch /x/y/f && chmod 000 /x")
	if out, _, _ := cli("ps", "-a"); !strings.Contains(out, "kept") || !strings.Contains(out, "Exited") {
		t.Errorf("ps -a:\n%s", out)
	}
	if out, _, _ := cli("ps"); strings.Contains(out, "kept") {
		t.Errorf("ps lists an ended container:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := e.command(ctx, "--rm", "--name", "live", "--", "sh", "-c", `trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done`)
	startReady(t, run)
	if out, _, _ := cli("ps"); !strings.Contains(out, "live") || !strings.Contains(out, "Running") {
		t.Errorf("ps while live runs:\n%s", out)
	}
	if _, errs, code := cli("rm", "live"); code != 125 || !strings.Contains(errs, "is running") {
		t.Errorf("rm of a running container: exit %d, %q", code, errs)
	}
	run.Process.Signal(syscall.SIGTERM)
	run.Wait()

	if out, errs, code := cli("rm", "kept"); code != 0 || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("rm kept: exit %d, %q %q", code, out, errs)
	}
	if d := e.containerDirs(); len(d) != 0 {
		t.Errorf("rm left %v", d)
	}
	if _, errs, code := cli("rm", "kept"); code != 125 || !strings.Contains(errs, "no such container: kept") {
		t.Errorf("second rm: exit %d, %q", code, errs)
	}
}

// TestRuntimeBinary: with urun-runtime beside urun (make build), the
// monitor of a --rootfs container and its init run from it; without it
// urun runs itself, and containers still run.
func TestRuntimeBinary(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	monitor, init := runningBinaries(t, e.command(ctx, "--rm", "-i", "--init", "--", "sh", "-c", "echo ready; read x || true"))
	runtime := runtimeBin(t, e.bin)
	if monitor != runtime || init != runtime {
		t.Errorf("monitor %s, init %s; want both %s", monitor, init, runtime)
	}

	// urun alone: it runs its own monitor and init.
	alone := filepath.Join(t.TempDir(), "urun")
	b, err := os.ReadFile(e.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	e.bin = alone
	if out := e.ok("--rm", "--", "echo", "alone"); out != "alone\n" {
		t.Errorf("urun without %s: %q", container.RuntimeName, out)
	}
}

// runtimeBin is urun-runtime beside the urun binary bin.
func runtimeBin(t *testing.T, bin string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(filepath.Join(filepath.Dir(bin), container.RuntimeName))
	if err != nil {
		t.Fatalf("%v: build it beside urun (make build)", err)
	}
	return p
}

// runningBinaries runs cmd, a container with --init and -i whose command
// prints "ready" and then reads stdin, and returns the binaries its
// monitor and its init run; then it ends the container.
func runningBinaries(t *testing.T, cmd *exec.Cmd) (monitor, init string) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	startReady(t, cmd)
	tree := descendants(cmd.Process.Pid) // monitor, init, command
	var exes []string
	for _, pid := range tree[:min(2, len(tree))] {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			t.Error(err)
		}
		exes = append(exes, exe)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("urun: %v", err)
	}
	if len(exes) != 2 {
		t.Fatalf("urun %d has descendants %v, want the monitor, the init and the command", cmd.Process.Pid, tree)
	}
	return exes[0], exes[1]
}
