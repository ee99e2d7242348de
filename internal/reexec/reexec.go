// Package reexec runs named entry points of the current binary in a new
// process: the parent starts /proc/self/exe with the entry's name in the
// environment, and the child's main (or a test binary's TestMain) hands
// control to the registered function before doing anything else.
//
// This is how urun enters namespaces without cgo: the kernel applies the
// clone flags of exec.Cmd's SysProcAttr to a fresh process, which then
// runs Go code from its first instruction in the new namespaces.
package reexec

import (
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/urun-dev/urun/internal/trace"
)

// envName carries the entry point's name to the child.
const envName = "_URUN_REEXEC"

var (
	mu      sync.Mutex
	entries = map[string]func(){} // guarded by mu
)

// Register makes fn the entry point called name. It panics on a duplicate
// name: registrations are static, made from init-time variable setup of the
// packages that own them.
func Register(name string, fn func()) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := entries[name]; dup {
		panic(fmt.Sprintf("reexec: entry %q registered twice", name))
	}
	entries[name] = fn
}

// Init runs the entry point named in the environment, if any, and reports
// whether it did. Entry points normally end the process themselves; if one
// returns, Init exits with status 0. main and TestMain call Init first.
func Init() bool {
	name, ok := os.LookupEnv(envName)
	if !ok {
		return false
	}
	os.Unsetenv(envName)
	mu.Lock()
	fn := entries[name]
	mu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "reexec: no entry point %q in this binary\n", name)
		os.Exit(125)
	}
	fn()
	os.Exit(0)
	return true
}

// Command returns a command that runs entry point name of this binary with
// args (args[0] becomes the child's argv[0], shown by ps). The caller
// adds SysProcAttr, files and I/O. The environment is the parent's plus
// the entry's name; the caller may replace cmd.Env but must keep the
// last element. The trace (URUN_TRACE), if any, is passed down as the
// first of cmd.ExtraFiles.
func Command(name string, args ...string) *exec.Cmd {
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: args,
		Env:  append(os.Environ(), envName+"="+name),
	}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{name}
	}
	trace.Pass(cmd)
	return cmd
}
