package testutil

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// WaitExit waits up to timeout for process pid (not necessarily our child)
// to exit, on a pidfd, and reports whether it did.
func WaitExit(t testing.TB, pid int, timeout time.Duration) bool {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	// Only the pidfd tells: /proc/PID/stat shows the state of the thread
	// group leader, a zombie while other threads still run and hold the
	// process's descriptors.
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll pidfd %d: %v", pid, err)
		}
		if n > 0 {
			return true
		}
	}
}

// LivePIDs returns the live processes other than this one whose command
// line (program first) match accepts.
func LivePIDs(match func(args []string) bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if !match(strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")) {
			continue
		}
		if st, err := ProcState(pid); err != nil || st == 'Z' || st == 'X' {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// ProcessesMentioning returns the live processes whose command line
// mentions s.
func ProcessesMentioning(s string) []int {
	return LivePIDs(func(args []string) bool {
		for _, a := range args {
			if strings.Contains(a, s) {
				return true
			}
		}
		return false
	})
}

// ProcStat returns the fields of /proc/PID/stat after the command name:
// [0] is the state, [1] the parent pid, [3] the session.
func ProcStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// ProcState returns the state letter of process pid (R, S, Z, ...).
func ProcState(pid int) (byte, error) {
	f, err := ProcStat(pid)
	if err != nil || len(f) == 0 {
		return 0, err
	}
	return f[0][0], nil
}
