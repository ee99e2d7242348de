package capability_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/urun-dev/urun/capability"
	"github.com/urun-dev/urun/internal/testutil"
	"github.com/urun-dev/urun/userns"
)

// helperCmd returns the apply helper's command for req; its output goes to
// the buffers returned.
func helperCmd(t *testing.T, req applyRequest) (cmd *exec.Cmd, stdout, stderr *bytes.Buffer) {
	t.Helper()
	testutil.Integration(t)
	testutil.RequireUserNS(t)
	cmd = testutil.EntryCommand(t, applyEntry, req)
	stdout, stderr = new(bytes.Buffer), new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// result parses what the helper reported: the capabilities it had after
// Apply and those the exec'd cat saw, or its error output if Apply failed.
func result(t *testing.T, runErr error, stdout, stderr *bytes.Buffer) (before, after capability.Sets, failure string) {
	t.Helper()
	if runErr != nil {
		if strings.Contains(stderr.String(), "ERR:") {
			return before, after, stderr.String()
		}
		t.Fatalf("helper: %v\nstdout:\n%s\nstderr:\n%s", runErr, stdout, stderr)
	}
	pre, post, ok := strings.Cut(stdout.String(), execMarker+"\n")
	if !ok {
		t.Fatalf("helper output has no exec marker:\n%s\nstderr:\n%s", stdout, stderr)
	}
	before, err := capability.ParseStatus(strings.NewReader(pre))
	if err != nil {
		t.Fatal(err)
	}
	if after, err = capability.ParseStatus(strings.NewReader(post)); err != nil {
		t.Fatal(err)
	}
	return before, after, ""
}

// runMapped runs the helper in a new user namespace with maps m, written by
// userns.Start (newuidmap/newgidmap for an unprivileged caller).
func runMapped(t *testing.T, m userns.Maps, req applyRequest) (before, after capability.Sets, failure string) {
	t.Helper()
	cmd, stdout, stderr := helperCmd(t, req)
	err := userns.Start(cmd, m)
	if err == nil {
		err = cmd.Wait()
	}
	return result(t, err, stdout, stderr)
}

// selfMaps maps uid/gid 0 inside to the caller alone.
func selfMaps() userns.Maps {
	return userns.Maps{
		UID: []userns.Mapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}},
		GID: []userns.Mapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}},
	}
}

// userMaps maps root to the caller and ids from 1 up to the subordinate
// ranges, as urun does; it skips t where uid/gid 1000 cannot be mapped.
func userMaps(t *testing.T) userns.Maps {
	t.Helper()
	m, err := userns.Plan(userns.Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, uok := userns.ToHost(m.UID, 1000)
	_, gok := userns.ToHost(m.GID, 1000)
	if !uok || !gok {
		t.Skip("uid/gid 1000 cannot be mapped: no subordinate ids for this user in /etc/subuid and /etc/subgid (make test-rootless sets them up)")
	}
	return m
}

func mustAll(t *testing.T) capability.Set {
	t.Helper()
	all, err := capability.All()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func TestApplyRootInUserNS(t *testing.T) {
	all := mustAll(t)
	netOnly, err := capability.Resolve(capability.Default(), []string{"NET_ADMIN", "sys_admin"}, []string{"ALL"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  capability.Set
	}{{"default", capability.Default()}, {"drop-all-add-two", netOnly}, {"all", all}, {"none", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			want := capability.Sets{Bounding: tc.set, Effective: tc.set, Permitted: tc.set}
			before, after, fail := runMapped(t, selfMaps(), applyRequest{Sets: capability.ForRoot(tc.set), Prepare: true, UID: -1})
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

// userSets returns the sets of a non-root user given --cap-add add on top
// of the default set.
func userSets(t *testing.T, add []string) capability.Sets {
	t.Helper()
	set, err := capability.Resolve(capability.Default(), add, nil)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := capability.ForUser(set, add)
	if err != nil {
		t.Fatal(err)
	}
	return sets
}

// TestApplyUserInUserNS runs the helper as uid 1000 of its user namespace
// from the start (the caller's only id), holding every capability as
// ambient: Apply must leave a non-root process with no capability but
// those of --cap-add, and those must survive its execve.
func TestApplyUserInUserNS(t *testing.T) {
	var ambient []uintptr
	for _, c := range mustAll(t).List() {
		ambient = append(ambient, uintptr(c))
	}
	for _, add := range [][]string{nil, {"NET_BIND_SERVICE"}, {"CAP_KILL", "net_admin"}} {
		t.Run(strings.Join(add, ","), func(t *testing.T) {
			sets := userSets(t, add)
			cmd, stdout, stderr := helperCmd(t, applyRequest{Sets: sets, UID: -1})
			cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
			cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Geteuid(), Size: 1}}
			cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Getegid(), Size: 1}}
			cmd.SysProcAttr.AmbientCaps = ambient
			before, after, fail := result(t, cmd.Run(), stdout, stderr)
			if fail != "" {
				t.Fatal(fail)
			}
			if before != sets || after != sets {
				t.Errorf("want %v\nafter Apply:  %v\nafter execve: %v", sets, before, after)
			}
			if len(add) == 0 && (after.Effective|after.Permitted|after.Ambient|after.Inheritable) != 0 {
				t.Errorf("a non-root user without --cap-add kept capabilities: %v", after)
			}
		})
	}
}

// TestApplyAfterSetresuid is the container init's real order for a non-root
// user: root of the user namespace, Prepare, setresuid(1000), Apply.
func TestApplyAfterSetresuid(t *testing.T) {
	for _, add := range [][]string{nil, {"NET_BIND_SERVICE"}, {"ALL"}} {
		t.Run(strings.Join(add, ","), func(t *testing.T) {
			sets := userSets(t, add)
			before, after, fail := runMapped(t, userMaps(t), applyRequest{Sets: sets, Prepare: true, UID: 1000, GID: 1000})
			if fail != "" {
				t.Fatal(fail)
			}
			if before != sets || after != sets {
				t.Errorf("want %v\nafter Apply:  %v\nafter execve: %v", sets, before, after)
			}
		})
	}
}

// TestApplyWithoutPrepare shows why Prepare exists: after a setresuid to a
// non-root user the thread has lost CAP_SETPCAP and Apply says so.
func TestApplyWithoutPrepare(t *testing.T) {
	_, _, fail := runMapped(t, userMaps(t), applyRequest{Sets: userSets(t, []string{"NET_BIND_SERVICE"}), UID: 1000, GID: 1000})
	if !strings.Contains(fail, "permitted set lacks CAP_NET_BIND_SERVICE") || !strings.Contains(fail, "capability.Prepare") {
		t.Errorf("Apply without Prepare: want an error naming the missing capability and Prepare, got %q", fail)
	}
	_, _, fail = runMapped(t, userMaps(t), applyRequest{Sets: userSets(t, nil), UID: 1000, GID: 1000})
	if !strings.Contains(fail, "needs CAP_SETPCAP") || !strings.Contains(fail, "operation not permitted") {
		t.Errorf("bounding drop without Prepare: want EPERM naming CAP_SETPCAP, got %q", fail)
	}
}

func TestCurrentAndBounding(t *testing.T) {
	testutil.Integration(t)
	st, err := capability.Current()
	if err != nil {
		t.Fatal(err)
	}
	b, err := capability.Bounding()
	if err != nil {
		t.Fatal(err)
	}
	if st.Bounding != b {
		t.Errorf("status CapBnd %v, PR_CAPBSET_READ %v", st.Bounding, b)
	}
}
