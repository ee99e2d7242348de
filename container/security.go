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

// seccompFilter is c's seccomp program, compiled on a goroutine of its
// own: the init builds the root filesystem meanwhile (compiling moby's
// profile takes most of a millisecond).
type seccompFilter struct {
	done chan struct{}
	prog *seccomp.Program // nil: no filter (unconfined, privileged); set before done closes
	err  error            // set before done closes
}

// compileSeccomp starts compiling c's filter.
func compileSeccomp(c *Config) *seccompFilter {
	f := &seccompFilter{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		if c.Unconfined || c.Privileged {
			return
		}
		profile := seccomp.Default()
		if len(c.SeccompProfile) > 0 {
			p, err := seccomp.Load(bytes.NewReader(c.SeccompProfile))
			if err != nil {
				f.err = fmt.Errorf("seccomp profile: %w", err)
				return
			}
			profile = p
		}
		if f.prog, f.err = seccomp.Compile(profile, seccomp.Config{Caps: c.Caps}); f.err != nil {
			f.err = fmt.Errorf("seccomp profile: %w", f.err)
		}
	}()
	return f
}

// wait returns the compiled program (nil: none).
func (f *seccompFilter) wait() (*seccomp.Program, error) {
	<-f.done
	return f.prog, f.err
}

// applySecurity installs the seccomp filter, the capability sets and
// no_new_privs on the calling (locked) thread, just before execve; the
// order is the one packages capability and seccomp document.
func applySecurity(c *Config, id Identity, filter *seccompFilter) error {
	if c.NoNewPrivs {
		if err := seccomp.SetNoNewPrivs(); err != nil {
			return err
		}
	}
	prog, err := filter.wait()
	if err != nil {
		return err
	}
	if prog != nil {
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
