package capability_test

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/urun-dev/urun/capability"
	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/testutil"
	"github.com/urun-dev/urun/userns"
)

// applyEntry is the reexec entry point of the helper that applies
// capabilities in a user namespace and execs cat of its own status.
const applyEntry = "capability-test-apply"

// execMarker separates the helper's own report of its capabilities from the
// output of the program it execs.
const execMarker = "--- exec ---"

var _ = registered()

func registered() bool {
	reexec.Register(applyEntry, func() { os.Exit(runApplyHelper()) })
	return true
}

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}

// applyRequest is what the apply helper is asked to do.
type applyRequest struct {
	Sets    capability.Sets
	Prepare bool
	UID     int // -1: stay
	GID     int
}

func runApplyHelper() int {
	if err := userns.WaitMapped(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var req applyRequest
	if err := testutil.Request(&req); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	if err := helperApply(req); err != nil {
		fmt.Fprintln(os.Stderr, "ERR:", err)
		return 3
	}
	return 0 // not reached: helperApply execs
}

// helperApply follows the container init's order: lock, Prepare, switch
// the uid, Apply, report, execve cat of its own status.
func helperApply(req applyRequest) error {
	runtime.LockOSThread()
	if req.Prepare {
		if err := capability.Prepare(); err != nil {
			return err
		}
	}
	if req.UID >= 0 {
		if err := testutil.SwitchUser(req.UID, req.GID); err != nil {
			return err
		}
	}
	if err := capability.Apply(req.Sets); err != nil {
		return err
	}
	st, err := capability.Current()
	if err != nil {
		return err
	}
	fmt.Printf("CapInh:\t%016x\nCapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t%016x\n%s\n",
		uint64(st.Inheritable), uint64(st.Permitted), uint64(st.Effective), uint64(st.Bounding), uint64(st.Ambient), execMarker)
	return syscall.Exec("/bin/cat", []string{"cat", "/proc/self/status"}, nil)
}
