package seccomp_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/urun-dev/urun/capability"
	"github.com/urun-dev/urun/internal/testutil"
	"github.com/urun-dev/urun/userns"
)

// runHelper runs the probe helper with req, in a new user namespace with
// maps m when m is not nil (written by userns.Start).
func runHelper(t *testing.T, req probeRequest, m *userns.Maps) probeResult {
	t.Helper()
	testutil.Integration(t)
	cmd := testutil.EntryCommand(t, probeEntry, req)
	var err error
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if m != nil {
		testutil.RequireUserNS(t)
		err = userns.Start(cmd, *m)
	} else {
		err = cmd.Start()
	}
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		t.Fatalf("helper: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var res probeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("helper output %q: %v", stdout.String(), err)
	}
	return res
}

func checkProbes(t *testing.T, res probeResult, want map[string]string) {
	t.Helper()
	if res.InstallErr != "" {
		t.Fatalf("Install: %s", res.InstallErr)
	}
	for name, w := range want {
		if got := res.Probes[name]; got != w {
			t.Errorf("%s: %s, want %s", name, got, w)
		}
	}
	if !strings.Contains(res.Probes["status"], "Seccomp:\t2") {
		t.Errorf("a program run under the filter is not filtered:\n%s", res.Probes["status"])
	}
}

// underDefault is what the default filter answers for a container with the
// default capabilities.
var underDefault = map[string]string{
	"getpid":            "ok",
	"keyctl":            "EPERM",
	"add_key":           "EPERM",
	"unshare_newuser":   "EPERM",
	"mount":             "EPERM",
	"clone3":            "ENOSYS",
	"socket_vsock":      "EPERM",
	"socket_inet":       "ok",
	"personality_query": "ok",
	"personality_rie":   "EPERM",
	"syscall_1000":      "ENOSYS",
	"exec_true":         "ok",
	"exec_sh":           "ok",
}

// TestInstallDefaultWithNoNewPrivs installs the default filter the way an
// unprivileged process can: no_new_privs first. Runs as root and as an
// unprivileged user, without a namespace.
func TestInstallDefaultWithNoNewPrivs(t *testing.T) {
	base := runHelper(t, probeRequest{UID: -1}, nil)
	// Without a filter these fail differently (or not at all): the
	// filter is what makes them EPERM/ENOSYS below.
	for _, name := range []string{"unshare_newuser", "clone3", "personality_rie"} {
		if got := base.Probes[name]; got == underDefault[name] {
			t.Fatalf("without a filter %s already gives %s: the probe proves nothing", name, got)
		}
	}
	res := runHelper(t, probeRequest{Install: true, NoNewPriv: true, Caps: capability.Default(), UID: -1}, nil)
	checkProbes(t, res, underDefault)
	if !strings.Contains(res.Probes["status"], "NoNewPrivs:\t1") {
		t.Errorf("no_new_privs not inherited:\n%s", res.Probes["status"])
	}
}

// TestInstallWithSysAdmin: with CAP_SYS_ADMIN in the container's set the
// namespace calls pass the filter and reach the kernel, which refuses
// unshare(CLONE_NEWUSER) in a multithreaded process with EINVAL.
func TestInstallWithSysAdmin(t *testing.T) {
	res := runHelper(t, probeRequest{Install: true, NoNewPriv: true, Caps: capability.Default().Add(capability.SYS_ADMIN), UID: -1}, nil)
	checkProbes(t, res, map[string]string{"unshare_newuser": "EINVAL", "clone3": "EINVAL", "keyctl": "EPERM", "getpid": "ok"})
}

// TestInstallWithoutNoNewPrivs: without no_new_privs the kernel wants
// CAP_SYS_ADMIN: root has it, an unprivileged user gets EACCES and an
// error that says how to get on.
func TestInstallWithoutNoNewPrivs(t *testing.T) {
	res := runHelper(t, probeRequest{Install: true, Caps: capability.Default(), UID: -1}, nil)
	if os.Geteuid() == 0 {
		checkProbes(t, res, underDefault)
		return
	}
	if !strings.Contains(res.InstallErr, "permission denied") || !strings.Contains(res.InstallErr, "no_new_privs") {
		t.Errorf("Install without no_new_privs or CAP_SYS_ADMIN: %q, want EACCES naming no_new_privs", res.InstallErr)
	}
}

// TestInitOrderRoot is the container init's order for a root container
// user, in a user namespace, without no_new_privs: Prepare, Install (with
// the namespace's CAP_SYS_ADMIN), Apply; then the probes run with the
// default capabilities under the filter.
func TestInitOrderRoot(t *testing.T) {
	self := userns.Maps{
		UID: []userns.Mapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}},
		GID: []userns.Mapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}},
	}
	res := runHelper(t, probeRequest{Install: true, Caps: capability.Default(), Prepare: true, UID: -1, Apply: true}, &self)
	checkProbes(t, res, underDefault)
	if want := fmt.Sprintf("CapEff:\t%016x", uint64(capability.Default())); !strings.Contains(res.Probes["status"], want) {
		t.Errorf("want the default capabilities effective after execve:\n%s", res.Probes["status"])
	}
}

// TestInitOrderUser: the same for a non-root container user, where the
// filter goes in after setresuid(1000) and still needs no no_new_privs
// because Prepare kept CAP_SYS_ADMIN effective; Apply then leaves the user
// without capabilities.
func TestInitOrderUser(t *testing.T) {
	testutil.Integration(t)
	m, err := userns.Plan(userns.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := userns.ToHost(m.UID, 1000); !ok {
		t.Skip("uid 1000 cannot be mapped: no subordinate ids for this user in /etc/subuid (make test-rootless sets them up)")
	}
	res := runHelper(t, probeRequest{Install: true, Caps: capability.Default(), Prepare: true, UID: 1000, Apply: true}, &m)
	checkProbes(t, res, underDefault)
	if !strings.Contains(res.Probes["status"], "CapEff:\t0000000000000000") {
		t.Errorf("a non-root user without --cap-add should run without capabilities:\n%s", res.Probes["status"])
	}
}
