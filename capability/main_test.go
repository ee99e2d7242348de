package capability

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// helperEnv turns the test binary into the in-namespace child: TestMain
// runs the helper named by it instead of the tests.
const helperEnv = "URUN_CAPABILITY_TEST_HELPER"

// execMarker separates the helper's own report of its capabilities from the
// output of the program it execs.
const execMarker = "--- exec ---"

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name))
	}
	os.Exit(m.Run())
}

// applyRequest is what the "apply" helper is asked to do.
type applyRequest struct {
	Sets    Sets
	Prepare bool
	UID     int // -1: stay
	GID     int
}

func runHelper(name string) int {
	switch name {
	case "apply":
		var req applyRequest
		if err := json.Unmarshal([]byte(os.Getenv(helperEnv+"_REQ")), &req); err != nil {
			fmt.Fprintln(os.Stderr, "helper: bad request:", err)
			return 2
		}
		if err := helperApply(req); err != nil {
			fmt.Fprintln(os.Stderr, "ERR:", err)
			return 3
		}
		return 0 // not reached: helperApply execs
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", name)
		return 2
	}
}

// helperApply follows the container init's order: lock, Prepare, switch
// the uid, Apply, report, execve cat of its own status.
func helperApply(req applyRequest) error {
	runtime.LockOSThread()
	if req.Prepare {
		if err := Prepare(); err != nil {
			return err
		}
	}
	if req.UID >= 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setresgid(req.GID, req.GID, req.GID); err != nil {
			return fmt.Errorf("setresgid: %w", err)
		}
		if err := syscall.Setresuid(req.UID, req.UID, req.UID); err != nil {
			return fmt.Errorf("setresuid: %w", err)
		}
	}
	if err := Apply(req.Sets); err != nil {
		return err
	}
	st, err := Current()
	if err != nil {
		return err
	}
	fmt.Printf("CapInh:\t%016x\nCapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t%016x\n%s\n",
		uint64(st.Inheritable), uint64(st.Permitted), uint64(st.Effective), uint64(st.Bounding), uint64(st.Ambient), execMarker)
	return syscall.Exec("/bin/cat", []string{"cat", "/proc/self/status"}, nil)
}
