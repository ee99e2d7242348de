package capability

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/urun-dev/urun/internal/testutil"
)

// userNS describes the user namespace a helper runs in.
type userNS struct {
	uids, gids []syscall.SysProcIDMap
	setgroups  bool
	ambient    []uintptr // capabilities the helper keeps through its execve
}

// rootNS maps uid/gid 0 inside to the caller: works as root and as an
// unprivileged user.
func rootNS() userNS {
	return userNS{
		uids: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		gids: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
}

// runApply runs the apply helper in ns and returns the capabilities it
// reported before execve and those the exec'd cat saw, or the helper's
// error output when it failed.
func runApply(t *testing.T, ns userNS, req applyRequest) (before, after Sets, failure string) {
	t.Helper()
	testutil.Integration(t)
	testutil.RequireUserNS(t)
	cmd := testutil.HelperCommand(t, helperEnv, "apply", req)
	cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
	cmd.SysProcAttr.UidMappings = ns.uids
	cmd.SysProcAttr.GidMappings = ns.gids
	cmd.SysProcAttr.GidMappingsEnableSetgroups = ns.setgroups
	cmd.SysProcAttr.AmbientCaps = ns.ambient
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "ERR:") {
			return Sets{}, Sets{}, stderr.String()
		}
		t.Fatalf("helper: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	pre, post, ok := strings.Cut(stdout.String(), execMarker+"\n")
	if !ok {
		t.Fatalf("helper output has no exec marker:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	before, err := ParseStatus(strings.NewReader(pre))
	if err != nil {
		t.Fatal(err)
	}
	if after, err = ParseStatus(strings.NewReader(post)); err != nil {
		t.Fatal(err)
	}
	return before, after, ""
}

func mustAll(t *testing.T) Set {
	t.Helper()
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestApplyRootInUserNS(t *testing.T) {
	all := mustAll(t)
	netOnly, err := Resolve(Default(), []string{"NET_ADMIN", "sys_admin"}, []string{"ALL"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  Set
	}{{"default", Default()}, {"drop-all-add-two", netOnly}, {"all", all}, {"none", 0}} {
		set := tc.set
		t.Run(tc.name, func(t *testing.T) {
			want := Sets{Bounding: set, Effective: set, Permitted: set}
			before, after, fail := runApply(t, rootNS(), applyRequest{Sets: ForRoot(set), Prepare: true, UID: -1})
			if fail != "" {
				t.Fatal(fail)
			}
			if before != want {
				t.Errorf("after Apply:\n got %v\nwant %v", before, want)
			}
			if after != want {
				t.Errorf("after execve:\n got %v\nwant %v", after, want)
			}
		})
	}
}

// TestApplyUserInUserNS runs the helper as uid 1000 of its user namespace
// from the start, holding every capability as ambient (so it works without
// subordinate ids): Apply must leave a non-root process with no capability
// but those of --cap-add, and those must survive its execve.
func TestApplyUserInUserNS(t *testing.T) {
	all := mustAll(t)
	var ambient []uintptr
	for _, c := range all.List() {
		ambient = append(ambient, uintptr(c))
	}
	ns := userNS{
		uids:    []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Geteuid(), Size: 1}},
		gids:    []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Getegid(), Size: 1}},
		ambient: ambient,
	}
	for _, add := range [][]string{nil, {"NET_BIND_SERVICE"}, {"CAP_KILL", "net_admin"}} {
		t.Run(strings.Join(add, ","), func(t *testing.T) {
			after := checkUser(t, ns, add, applyRequest{UID: -1})
			if len(add) == 0 && (after.Effective|after.Permitted|after.Ambient|after.Inheritable) != 0 {
				t.Errorf("a non-root user without --cap-add kept capabilities: %v", after)
			}
		})
	}
}

// checkUser applies the sets of a non-root user given --cap-add add (on
// top of the default set) in the helper run as req says, and checks them
// before and after the helper's execve.
func checkUser(t *testing.T, ns userNS, add []string, req applyRequest) (after Sets) {
	t.Helper()
	set, err := Resolve(Default(), add, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Sets, err = ForUser(set, add)
	if err != nil {
		t.Fatal(err)
	}
	before, after, fail := runApply(t, ns, req)
	if fail != "" {
		t.Fatal(fail)
	}
	if before != req.Sets || after != req.Sets {
		t.Errorf("want %v\nafter Apply:  %v\nafter execve: %v", req.Sets, before, after)
	}
	return after
}

// idNS maps 0 to root (so the helper can exec the test binary wherever go
// test put it) and uid/gid 1000 to a subordinate id.
func idNS() userNS {
	return userNS{
		uids:      []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1000, HostID: 101000, Size: 1}},
		gids:      []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1000, HostID: 101000, Size: 1}},
		setgroups: true,
	}
}

// TestApplyAfterSetresuid is the container init's real order for a non-root
// user: root of the user namespace, Prepare, setresuid(1000), Apply.
// Mapping two ids needs root (an unprivileged user needs newuidmap).
func TestApplyAfterSetresuid(t *testing.T) {
	testutil.RequireRoot(t)
	for _, add := range [][]string{nil, {"NET_BIND_SERVICE"}, {"ALL"}} {
		t.Run(strings.Join(add, ","), func(t *testing.T) {
			checkUser(t, idNS(), add, applyRequest{Prepare: true, UID: 1000, GID: 1000})
		})
	}
}

// TestApplyWithoutPrepare shows why Prepare exists: after a setresuid to a
// non-root user the thread has lost CAP_SETPCAP and Apply says so.
func TestApplyWithoutPrepare(t *testing.T) {
	testutil.RequireRoot(t)
	sets, err := ForUser(Default(), []string{"NET_BIND_SERVICE"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, fail := runApply(t, idNS(), applyRequest{Sets: sets, UID: 1000, GID: 1000})
	if !strings.Contains(fail, "permitted set lacks CAP_NET_BIND_SERVICE") || !strings.Contains(fail, "capability.Prepare") {
		t.Errorf("Apply without Prepare: want an error naming the missing capability and Prepare, got %q", fail)
	}
	sets, _ = ForUser(Default(), nil)
	_, _, fail = runApply(t, idNS(), applyRequest{Sets: sets, UID: 1000, GID: 1000})
	if !strings.Contains(fail, "needs CAP_SETPCAP") || !strings.Contains(fail, "operation not permitted") {
		t.Errorf("bounding drop without Prepare: want EPERM naming CAP_SETPCAP, got %q", fail)
	}
}

func TestCurrentAndBounding(t *testing.T) {
	testutil.Integration(t)
	st, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Bounding()
	if err != nil {
		t.Fatal(err)
	}
	if st.Bounding != b {
		t.Errorf("status CapBnd %v, PR_CAPBSET_READ %v", st.Bounding, b)
	}
}
