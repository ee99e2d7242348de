package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"

	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/userns"
	"golang.org/x/sys/unix"
)

const (
	// usernsEntry is the test binary's entry point inside the namespace.
	usernsEntry = "testutil-userns"
	// usernsInside marks a test run inside that namespace.
	usernsInside = "URUN_TEST_USERNS"
	// usernsSkip carries why no namespace could be made.
	usernsSkip = "URUN_TEST_USERNS_SKIP"
)

// RunInUserNS runs the tests of m and returns the exit code; TestMain
// calls it (after flag.Parse) in packages whose integration tests must run
// as root of a user namespace that maps the user's subordinate ids, as
// urun's store operations do. Run by an unprivileged user outside -short,
// it runs the test binary again through the userns package (uid 0 = the
// user, 1…N = the /etc/subuid range, newuidmap/newgidmap) in new user and
// mount namespaces, and returns that run's exit code. As root, under
// -short, or when no namespace can be made (RequireNamespaceRoot then
// says why), it runs the tests here.
func RunInUserNS(m *testing.M) int {
	reexec.Register(usernsEntry, func() {
		if err := userns.WaitMapped(); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: %v\n", err)
			os.Exit(2)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "testutil: make / private: %v\n", err)
			os.Exit(2)
		}
		os.Setenv(usernsInside, "1")
		os.Exit(m.Run())
	})
	if reexec.Init() {
		return 0 // not reached: the entry point exits
	}
	if os.Geteuid() == 0 || testing.Short() {
		return m.Run()
	}
	code, err := runInUserNS()
	if err != nil {
		os.Setenv(usernsSkip, err.Error())
		return m.Run()
	}
	return code
}

func runInUserNS() (int, error) {
	plan, err := userns.Plan(userns.Config{})
	if err != nil {
		return 0, err
	}
	if userns.Size(plan.UID) < 65536 || userns.Size(plan.GID) < 65536 {
		return 0, fmt.Errorf("uid %d has no subordinate id range of 65536 ids in /etc/subuid and /etc/subgid (scripts/rootless-setup.sh adds one)", os.Getuid())
	}
	cmd := reexec.Command(usernsEntry, os.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// reexec wants its entry's name last.
	cmd.Env = slices.Insert(cmd.Env, len(cmd.Env)-1, fmt.Sprintf("URUN_HOST_UID=%d", os.Getuid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := userns.Start(cmd, plan); err != nil {
		return 0, err
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// RequireNamespaceRoot skips t unless it runs as uid 0: real root, or root
// of the user namespace RunInUserNS made. In the rootless phase of make
// test, where that namespace is set up for us, its absence is a failure.
func RequireNamespaceRoot(t testing.TB) {
	t.Helper()
	Integration(t)
	if os.Geteuid() == 0 {
		return
	}
	reason := os.Getenv(usernsSkip)
	if reason == "" {
		reason = "TestMain does not call testutil.RunInUserNS"
	}
	if os.Getenv("UFS_TEST_ROOTLESS") == "1" {
		t.Fatalf("rootless phase: no user namespace with subordinate ids: %s", reason)
	}
	t.Skipf("needs root of a user namespace with subordinate ids: %s", reason)
}
