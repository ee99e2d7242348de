package seccomp

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads prog into the kernel for every thread of the process:
// seccomp(SECCOMP_SET_MODE_FILTER) with SECCOMP_FILTER_FLAG_TSYNC (a Go
// process has many threads, and the one that execs must not be the only
// one filtered), prog.Flags and flags (SECCOMP_FILTER_FLAG_LOG,
// SECCOMP_FILTER_FLAG_SPEC_ALLOW, ...).
//
// The kernel takes a filter only from a thread with no_new_privs set
// (SetNoNewPrivs) or with CAP_SYS_ADMIN in its user namespace. In the
// container's init, without no_new_privs, Install therefore runs before
// capability.Apply drops CAP_SYS_ADMIN (capability.Prepare keeps it
// effective through the setresuid to the container user). Filters stack:
// a second Install adds a filter, it never removes one.
func Install(prog *Program, flags uint) error {
	if prog == nil || len(prog.Filter) == 0 {
		return errors.New("seccomp: empty filter")
	}
	if len(prog.Filter) > maxInsns {
		return fmt.Errorf("%w: %d instructions", ErrTooLarge, len(prog.Filter))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog.Filter)), Filter: &prog.Filter[0]}
	all := flags | prog.Flags | unix.SECCOMP_FILTER_FLAG_TSYNC
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(all), uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		err := os.NewSyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", errno)
		switch {
		case errors.Is(errno, unix.EACCES):
			return fmt.Errorf("install seccomp filter: %w (set no_new_privs first, or keep CAP_SYS_ADMIN until the filter is in)", err)
		case errors.Is(errno, unix.EINVAL):
			return fmt.Errorf("install seccomp filter: %w (the kernel refused the filter or the flags %#x)", err, all)
		}
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	if r != 0 {
		return fmt.Errorf("install seccomp filter: thread %d cannot take it (its own filter is not an ancestor of this thread's)", r)
	}
	return nil
}

// SetNoNewPrivs sets no_new_privs for the calling thread (and the children
// and programs it execs): execve grants no privileges any more (set-user-ID
// bits and file capabilities are ignored), and Install needs no
// CAP_SYS_ADMIN.
func SetNoNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", err)
	}
	return nil
}
