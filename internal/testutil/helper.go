package testutil

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/urun-dev/urun/internal/reexec"
)

// requestEnv carries a helper's request, as JSON, to a reexec entry point.
const requestEnv = "URUN_TEST_REQUEST"

// EntryCommand returns a command that runs the reexec entry point name of
// the test binary with req (as JSON, read back by Request), killed if the
// test process dies. The caller adds namespaces and output buffers.
func EntryCommand(t testing.TB, name string, req any) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := reexec.Command(name)
	last := cmd.Env[len(cmd.Env)-1] // reexec wants the entry's name last
	cmd.Env = append(cmd.Env[:len(cmd.Env)-1:len(cmd.Env)-1], requestEnv+"="+string(b), last)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Request decodes, in a helper started by EntryCommand, its request into
// req.
func Request(req any) error {
	if err := json.Unmarshal([]byte(os.Getenv(requestEnv)), req); err != nil {
		return fmt.Errorf("helper request %s: %w", requestEnv, err)
	}
	return nil
}

// SwitchUser makes a helper the user uid with group gid and no
// supplementary groups, as a container's init does (setgroups, setresgid,
// setresuid).
func SwitchUser(uid, gid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	return nil
}
