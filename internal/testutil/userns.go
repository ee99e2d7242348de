package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The stages of the user-namespace re-exec, in URUN_TEST_USERNS.
const (
	usernsEnv    = "URUN_TEST_USERNS"
	usernsWait   = "wait"   // in the new namespaces, waiting for the id maps
	usernsInside = "inside" // re-executed with the maps: uid 0, full capabilities
	usernsSkip   = "URUN_TEST_USERNS_SKIP"
)

// UserNSMain is called at the top of a TestMain (after flag.Parse) in
// packages whose integration tests must run as root of a user namespace
// that maps the user's subordinate ids, as urun's store operations do. Run
// by an unprivileged user outside -short, it runs the test binary again in
// new user and mount namespaces (uid 0 = the user, 1..N = the /etc/subuid
// range, set with newuidmap/newgidmap) and returns that run's exit code
// with done=true. Inside, as root, or under -short it returns done=false,
// and TestMain goes on with m.Run. When the namespace cannot be made it
// returns done=false and RequireNamespaceRoot skips with the reason.
//
// The re-exec is in two steps because capabilities are computed at
// execve: the first child starts unmapped, waits on fd 3 until its maps
// are written, then execs itself again as uid 0.
//
// This is the test-side stand-in for the userns package's re-exec; it can
// be swapped for it.
func UserNSMain() (code int, done bool) {
	switch os.Getenv(usernsEnv) {
	case usernsWait:
		waitMapsAndExec()
		return 1, true // not reached
	case usernsInside:
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "userns child: make / private: %v\n", err)
			return 1, true
		}
		return 0, false
	}
	if os.Geteuid() == 0 || testing.Short() {
		return 0, false
	}
	code, err := runInUserNS()
	if err != nil {
		os.Setenv(usernsSkip, err.Error())
		return 0, false
	}
	return code, true
}

// RequireNamespaceRoot skips t unless it runs as uid 0: real root, or root
// of the user namespace UserNSMain made.
func RequireNamespaceRoot(t testing.TB) {
	t.Helper()
	Integration(t)
	if os.Geteuid() == 0 {
		return
	}
	reason := os.Getenv(usernsSkip)
	if reason == "" {
		reason = "TestMain did not call testutil.UserNSMain"
	}
	if os.Getenv("UFS_TEST_ROOTLESS") == "1" {
		// make test-rootless sets the user up for this: not a skip.
		t.Fatalf("rootless phase: no user namespace with subordinate ids: %s", reason)
	}
	t.Skipf("needs root of a user namespace with subordinate ids: %s", reason)
}

// InUserNS reports whether the test runs in the namespace UserNSMain made.
func InUserNS() bool { return os.Getenv(usernsEnv) == usernsInside }

// runInUserNS is the parent side: start the child in new namespaces, map
// its ids, let it go, and wait.
func runInUserNS() (int, error) {
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return 0, fmt.Errorf("no user namespaces: %w", err)
	}
	newuidmap, err := exec.LookPath("newuidmap")
	if err != nil {
		return 0, fmt.Errorf("newuidmap not installed (Debian package uidmap): %w", err)
	}
	newgidmap, err := exec.LookPath("newgidmap")
	if err != nil {
		return 0, fmt.Errorf("newgidmap not installed (Debian package uidmap): %w", err)
	}
	u, err := user.Current()
	if err != nil {
		return 0, err
	}
	uidRange, err := subIDRange("/etc/subuid", u.Username, u.Uid)
	if err != nil {
		return 0, err
	}
	gidRange, err := subIDRange("/etc/subgid", u.Username, u.Uid)
	if err != nil {
		return 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer w.Close()
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	cmd.Env = append(os.Environ(), usernsEnv+"="+usernsWait, "URUN_HOST_UID="+u.Uid)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		return 0, fmt.Errorf("start the test binary in a new user namespace: %w", err)
	}
	r.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	mapErr := runMap(newuidmap, pid, u.Uid, uidRange)
	if mapErr == nil {
		mapErr = runMap(newgidmap, pid, strconv.Itoa(os.Getgid()), gidRange)
	}
	if mapErr != nil {
		w.Write([]byte("x"))
		w.Close()
		cmd.Wait()
		return 0, mapErr
	}
	if _, err := w.Write([]byte("k")); err != nil {
		return 0, err
	}
	w.Close()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

// runMap maps 0 to the user's own id and 1..count to the subordinate range.
func runMap(prog, pid, own string, r [2]int) error {
	args := []string{pid, "0", own, "1", "1", strconv.Itoa(r[0]), strconv.Itoa(r[1])}
	if out, err := exec.Command(prog, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, out)
	}
	return nil
}

// waitMapsAndExec is the first child: wait for the maps, then exec again
// so that the new image runs as uid 0 with all capabilities.
func waitMapsAndExec() {
	f := os.NewFile(3, "userns-sync")
	b := make([]byte, 1)
	if _, err := io.ReadFull(f, b); err != nil || b[0] != 'k' {
		os.Exit(1) // the parent reports why
	}
	f.Close()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, usernsEnv+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, usernsEnv+"="+usernsInside)
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	fmt.Fprintf(os.Stderr, "userns child: re-exec: %v\n", err)
	os.Exit(1)
}

// subIDRange finds the first range of user (by name or uid) in a
// subuid/subgid file: start and count.
func subIDRange(path, name, uid string) ([2]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return [2]int{}, fmt.Errorf("subordinate ids: %w", err)
	}
	defer f.Close()
	r, err := ParseSubIDs(f, name, uid)
	if err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// ParseSubIDs returns the first NAME:START:COUNT line of a subuid/subgid
// file whose owner is name or uid.
func ParseSubIDs(r io.Reader, name, uid string) ([2]int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Split(l, ":")
		if len(f) != 3 || (f[0] != name && f[0] != uid) {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || count <= 0 {
			return [2]int{}, fmt.Errorf("bad line %q", l)
		}
		return [2]int{start, count}, nil
	}
	if err := sc.Err(); err != nil {
		return [2]int{}, err
	}
	return [2]int{}, fmt.Errorf("no subordinate id range for %s (uid %s)", name, uid)
}
