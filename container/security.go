package container

import (
	"bytes"
	"fmt"

	"github.com/urun-dev/urun/capability"
	"github.com/urun-dev/urun/seccomp"
)

// prepareSecurity runs on the locked thread before the switch to the
// container user: capabilities survive the setresuid.
func prepareSecurity() error {
	return capability.Prepare()
}

// applySecurity installs the seccomp filter, the capability sets and
// no_new_privs on the calling (locked) thread, just before execve; the
// order is the one packages capability and seccomp document.
func applySecurity(c *Config, id Identity) error {
	if c.NoNewPrivs {
		if err := seccomp.SetNoNewPrivs(); err != nil {
			return err
		}
	}
	if !c.Unconfined && !c.Privileged {
		profile := seccomp.Default()
		if len(c.SeccompProfile) > 0 {
			p, err := seccomp.Load(bytes.NewReader(c.SeccompProfile))
			if err != nil {
				return fmt.Errorf("seccomp profile: %w", err)
			}
			profile = p
		}
		prog, err := seccomp.Compile(profile, seccomp.Config{Caps: c.Caps})
		if err != nil {
			return fmt.Errorf("seccomp profile: %w", err)
		}
		if err := seccomp.Install(prog, 0); err != nil {
			return err
		}
	}
	sets := capability.ForRoot(c.Caps)
	if id.UID != 0 {
		var err error
		if sets, err = capability.ForUser(c.Caps, c.CapAdd); err != nil {
			return err
		}
	}
	return capability.Apply(sets)
}
