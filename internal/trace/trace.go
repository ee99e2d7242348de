// Package trace records how long urun's phases take, for URUN_TRACE.
//
// With URUN_TRACE=FILE in its environment, every urun process of a
// container start (the CLI, the store step, the monitor, the container's
// init) appends one line per phase to FILE:
//
//	phase=NAME ms=DURATION start=UNIX_NS pid=PID
//
// Processes started with reexec.Command inherit the open file (as a
// descriptor named in the environment), so the container's init writes
// to it too, whatever its uid and root directory. A phase that spans two
// processes (a child's start) is measured from a time stamp the parent
// puts in the child's environment (Spawn) to the child's own Started.
// URUN_TRACE_START (nanoseconds since the epoch, set by a caller such as
// the benchmark just before it executes urun) adds the phase "start": the
// time from there to urun's main, that is the exec and Go's start-up
// (runtime and package initialisation).
//
// Writing a line is a single append; an error writing it is ignored: the
// trace never changes what urun does. Without URUN_TRACE nothing is
// recorded and the functions cost a nil check.
package trace

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Environment of the trace.
const (
	// EnvFile names the file the phases are appended to.
	EnvFile = "URUN_TRACE"
	// EnvStart is the caller's time stamp (ns since the epoch) of urun's
	// exec, for the phase "start".
	EnvStart = "URUN_TRACE_START"
	// envFD names the inherited descriptor of the trace file.
	envFD = "_URUN_TRACE_FD"
	// envSpawn is the parent's time stamp of a child's start.
	envSpawn = "_URUN_TRACE_SPAWN"
)

// Set by Open and Main before any other goroutine runs, then only read.
var (
	out  *os.File
	step time.Time // see Step; used only by main's goroutine
)

// Open opens the trace, if any: the descriptor a parent urun passed down,
// else the file named by URUN_TRACE. main calls it first.
func Open() {
	if v := os.Getenv(envFD); v != "" {
		os.Unsetenv(envFD)
		if fd, err := strconv.Atoi(v); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
			out = os.NewFile(uintptr(fd), "trace")
			return
		}
	}
	name := os.Getenv(EnvFile)
	if name == "" {
		return
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(os.Stderr, "urun: %s=%s: %v (no trace)\n", EnvFile, name, err)
		return
	}
	out = f
}

// Enabled reports whether phases are recorded.
func Enabled() bool { return out != nil }

// Phase records the phase name from start until now.
func Phase(name string, start time.Time) {
	if out == nil {
		return
	}
	Span(name, start, time.Now())
}

// Span records the phase name from start to end.
func Span(name string, start, end time.Time) {
	if out == nil {
		return
	}
	line := fmt.Sprintf("phase=%s ms=%.3f start=%d pid=%d\n", name,
		float64(end.Sub(start).Nanoseconds())/1e6, start.UnixNano(), os.Getpid())
	out.WriteString(line)
}

// Main records the phase "start" (URUN_TRACE_START to now), when the
// caller set URUN_TRACE_START, and notes the time main began (see
// Step); main calls it after Open.
func Main() {
	step = time.Now()
	v := os.Getenv(EnvStart)
	if v == "" {
		return
	}
	os.Unsetenv(EnvStart) // for this process only
	if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
		Span("start", time.Unix(0, ns), step)
	}
}

// Step records the phase name from the end of the previous Step (or the
// start of main) until now: the CLI's consecutive phases. A name may
// come twice; its times add up.
func Step(name string) {
	if out == nil || step.IsZero() {
		return
	}
	now := time.Now()
	Span(name, step, now)
	step = now
}

// Pass hands the trace down to cmd (a urun child): its descriptor joins
// cmd.ExtraFiles, named in cmd.Env before the last element (which
// reexec keeps for the entry point's name), with the time of the call as
// the child's spawn time (see Started).
func Pass(cmd *exec.Cmd) {
	if out == nil {
		return
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, out)
	add := []string{
		fmt.Sprintf("%s=%d", envFD, 2+len(cmd.ExtraFiles)),
		fmt.Sprintf("%s=%d", envSpawn, time.Now().UnixNano()),
	}
	if cmd.Env == nil {
		cmd.Env = append(os.Environ(), add...)
		return
	}
	n := len(cmd.Env)
	last := cmd.Env[n-1]
	cmd.Env = append(append(cmd.Env[:n-1:n-1], add...), last)
}

// Started records the phase name from the parent's Pass (the child's
// start: clone, exec, Go's start-up, and whatever the parent did in
// between) until now, and returns now.
func Started(name string) time.Time {
	now := time.Now()
	v := os.Getenv(envSpawn)
	os.Unsetenv(envSpawn)
	if out == nil || v == "" {
		return now
	}
	if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
		Span(name, time.Unix(0, ns), now)
	}
	return now
}

// mark is the time of the last Mark; used only by main's goroutine.
var mark time.Time

// Mark notes the present time for SinceMark (the CLI marks the end of
// the container, and records its own teardown from there).
func Mark() {
	if out != nil {
		mark = time.Now()
	}
}

// SinceMark records the phase name from the last Mark until now, if
// there was one.
func SinceMark(name string) {
	if out == nil || mark.IsZero() {
		return
	}
	Phase(name, mark)
}
